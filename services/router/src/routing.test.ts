import { KvError, failedEntry, type EntryResult } from '@shardkv/common';
import type { ShardTable } from './control/shard-table';
import type { Placement } from './placement';
import { Routing } from './routing';

/** A table whose placement the test sets, counting re-reads (a re-read may bring a new placement). */
function table(first: string, afterRefresh: string = first) {
  let owner = first;
  const t = {
    refreshes: 0,
    get placement(): Placement {
      return { shardFor: () => owner, pointOf: () => 0, shardAt: () => owner };
    },
    async refresh() {
      t.refreshes += 1;
      owner = afterRefresh;
    },
  };
  return t;
}
const asTable = (t: ReturnType<typeof table>) => t as unknown as ShardTable;
const ok = (key: string): EntryResult => ({ key, ok: true, seq: 1 });
const refused = (key: string, code: 'wrong_shard' | 'migrating' | 'no_replica') => failedEntry(key, new KvError(code, code));

describe('Routing (entries whose slot moved)', () => {
  test('a wrong_shard answer makes the router re-read the map and send the key to its new owner', async () => {
    const t = table('shard-0', 'shard-3');
    const sent: string[] = [];
    const r = await new Routing(asTable(t), 1000, 5000).one('k', async (shard) => {
      sent.push(shard);
      return shard === 'shard-0' ? refused('k', 'wrong_shard') : ok('k');
    });
    expect({ ok: r.ok, sent, refreshes: t.refreshes }).toEqual({ ok: true, sent: ['shard-0', 'shard-3'], refreshes: 1 });
  });

  test('a migrating answer is waited out on the same shard, without re-reading the map; every resend keeps the first deadline', async () => {
    const t = table('shard-1');
    const sinces: number[] = [];
    const r = await new Routing(asTable(t), 1000, 5000).one('k', async (_shard, since) => (sinces.push(since) < 4 ? refused('k', 'migrating') : ok('k')));
    expect({ ok: r.ok, calls: sinces.length, refreshes: t.refreshes, oneDeadline: new Set(sinces).size }).toEqual({ ok: true, calls: 4, refreshes: 0, oneDeadline: 1 });
  });

  test('gives up at its deadline with the definite refusal, and never resends other failures', async () => {
    const t = table('shard-1');
    const started = Date.now();
    const r = await new Routing(asTable(t), 150, 5000).one('k', async () => refused('k', 'migrating'));
    expect({ ok: r.ok, code: r.ok ? null : r.error.code, outcome: r.ok ? null : r.outcome }).toEqual({ ok: false, code: 'migrating', outcome: 'definite' });
    expect(Date.now() - started).toBeLessThan(150 + 200);
    let calls = 0;
    const other = await new Routing(asTable(t), 1000, 5000).one('k', async () => ((calls += 1), refused('k', 'no_replica')));
    expect({ ok: other.ok, calls }).toEqual({ ok: false, calls: 1 });
  });

  test('a caller\'s deadline earlier than the router\'s (a gRPC deadline) is what every send gets, and ends the resends', async () => {
    const t = table('shard-1');
    const deadlines: number[] = [];
    const callerDeadline = Date.now() + 120;
    const r = await new Routing(asTable(t), 1000, 5000).one('k', async (_shard, deadline) => (deadlines.push(deadline), refused('k', 'migrating')), callerDeadline);
    expect({ ok: r.ok, deadlines: [...new Set(deadlines)] }).toEqual({ ok: false, deadlines: [callerDeadline] });
    expect(Date.now()).toBeLessThan(callerDeadline + 100);
    const timeouts: number[] = [];
    await new Routing(asTable(t), 1000, 5000).many(['k1'], (k) => k, async (_shard, group, ms) => (timeouts.push(ms), group.map(ok)), Date.now() + 300);
    expect(timeouts[0]).toBeGreaterThan(200);
    expect(timeouts[0]).toBeLessThanOrEqual(300);
  });

  test('a batch resends only its moved entries, to the new owner, and keeps the others’ results in order', async () => {
    const t = table('a', 'b');
    const calls: Array<[string, string[]]> = [];
    const out = await new Routing(asTable(t), 1000, 5000).many(['k1', 'k2', 'k3'], (k) => k, async (shard, group) => {
      calls.push([shard, group]);
      return group.map((k) => (shard === 'a' && k === 'k2' ? refused(k, 'wrong_shard') : ok(k)));
    });
    expect(out.results.map((r) => [r.key, r.ok])).toEqual([['k1', true], ['k2', true], ['k3', true]]);
    expect(calls).toEqual([['a', ['k1', 'k2', 'k3']], ['b', ['k2']]]);
    expect({ ok: out.ok, failed: out.failed }).toEqual({ ok: 3, failed: 0 });
  });
});
