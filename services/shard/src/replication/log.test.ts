import { KvError } from '@shardkv/common';
import { LeaderLog, needsCatchUp, planApply, type Entry, type LogLimits } from './log';

const limits: LogLimits = { queueEntriesMax: 5, queueBytesMax: 10_000, batchEntriesMax: 3, batchBytesMax: 10_000 };
const put = (seq: number, key = 'k', value = 'v'): Entry => ({ seq, op: 'put', key, value });

describe('LeaderLog', () => {
  test('assigns consecutive sequence numbers after the applied one', () => {
    const log = new LeaderLog(10, limits);
    expect(log.append({ op: 'put', key: 'a', value: '1' }).entry.seq).toBe(11);
    expect(log.append({ op: 'del', key: 'a' }).entry.seq).toBe(12);
    expect(log.lastSeq).toBe(12);
    expect(log.startSeq).toBe(11);
  });

  test('batches respect the entry limit, start where asked, and are contiguous', () => {
    const log = new LeaderLog(0, limits);
    for (let i = 0; i < 5; i += 1) log.append({ op: 'put', key: `k${i}`, value: 'v' });
    expect(log.batchFrom(1).map((r) => r.entry.seq)).toEqual([1, 2, 3]);
    expect(log.batchFrom(4).map((r) => r.entry.seq)).toEqual([4, 5]);
    expect(log.batchFrom(6)).toEqual([]);
  });

  test('a batch always carries at least one entry, even one above the byte limit', () => {
    const log = new LeaderLog(0, { ...limits, batchBytesMax: 10 });
    log.append({ op: 'put', key: 'k', value: 'a long value' });
    log.append({ op: 'put', key: 'k', value: 'another' });
    expect(log.batchFrom(1).map((r) => r.entry.seq)).toEqual([1]);
  });

  test('a full queue refuses the write and sequences nothing', () => {
    const log = new LeaderLog(0, limits);
    for (let i = 0; i < 5; i += 1) log.append({ op: 'put', key: 'k', value: 'v' });
    expect(() => log.append({ op: 'put', key: 'k', value: 'v' })).toThrow(KvError);
    expect(log.lastSeq).toBe(5);
    const bytes = new LeaderLog(0, { ...limits, queueBytesMax: 60 });
    bytes.append({ op: 'put', key: 'k', value: 'v' });
    expect(() => bytes.append({ op: 'put', key: 'k', value: 'x'.repeat(50) })).toThrow(/queue is full/);
  });

  test('a batch of writes is sequenced whole or not at all', () => {
    const log = new LeaderLog(0, limits);
    expect(log.appendAll([{ op: 'put', key: 'a', value: '1' }, { op: 'del', key: 'a' }])).toBe(1);
    expect(() => log.appendAll([1, 2, 3, 4].map((i) => ({ op: 'put' as const, key: `k${i}`, value: 'v' })))).toThrow(/queue is full/);
    expect(log.lastSeq).toBe(2);
  });

  test('committed entries are dropped in order and cannot be sent again', () => {
    const log = new LeaderLog(0, limits);
    for (let i = 0; i < 4; i += 1) log.append({ op: 'put', key: `k${i}`, value: 'v' });
    expect(log.slice(2, 3).map((r) => r.entry.seq)).toEqual([2, 3]);
    expect(() => log.commitThrough(5)).toThrow(/beyond last/);
    log.commitThrough(2);
    log.commitThrough(1);
    expect(log.appliedSeq).toBe(2);
    expect(log.queuedEntries).toBe(2);
    expect(() => log.batchFrom(1)).toThrow(/already committed/);
    expect(() => log.slice(1, 3)).toThrow(/not in 3..4/);
    expect(log.batchFrom(3).map((r) => r.entry.seq)).toEqual([3, 4]);
    log.commitThrough(4);
    expect(log.queuedBytes).toBe(0);
  });
});

describe('planApply (follower)', () => {
  test('applies the entries that follow lastApplied', () => {
    expect(planApply(3, [put(4), put(5)])).toEqual({ apply: [put(4), put(5)], gap: false });
  });

  test('ignores duplicates from a resend and applies only what is new', () => {
    expect(planApply(5, [put(3), put(4), put(5), put(6)])).toEqual({ apply: [put(6)], gap: false });
    expect(planApply(5, [put(4), put(5)])).toEqual({ apply: [], gap: false });
  });

  test('a batch starting beyond lastApplied + 1 is a gap: nothing is applied', () => {
    expect(planApply(3, [put(5), put(6)])).toEqual({ apply: [], gap: true });
  });

  test('rejects a batch that is not contiguous as a protocol error', () => {
    expect(() => planApply(0, [put(1), put(3)])).toThrow(/not contiguous/);
    expect(() => planApply(0, [put(2), put(1)])).toThrow(/not contiguous/);
  });

  test('an empty batch (heartbeat) changes nothing', () => {
    expect(planApply(7, [])).toEqual({ apply: [], gap: false });
  });

  test('needs a catch-up only when the leader no longer holds the next entry in memory', () => {
    expect(needsCatchUp(0, 1)).toBe(false);
    expect(needsCatchUp(9, 10)).toBe(false);
    expect(needsCatchUp(8, 10)).toBe(true);
  });
});
