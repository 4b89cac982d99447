import { KvError } from '@shardkv/common';
import { Batcher, type BatcherLimits } from './batcher';

const LIMITS: BatcherLimits = { entriesMax: 100, bytesMax: 1000, inFlightMax: 1, queueMax: 1000, timeoutMs: 5000 };

/** A send whose batches are recorded and answered by hand. */
function manualSend() {
  const calls: Array<{ items: string[]; timeoutMs: number; answer: (r: string[]) => void; fail: (e: unknown) => void }> = [];
  const send = (items: string[], timeoutMs: number) =>
    new Promise<string[]>((resolve, reject) => calls.push({ items, timeoutMs, answer: resolve, fail: reject }));
  return { calls, send };
}

const turn = () => new Promise((r) => setImmediate(r));

describe('Batcher', () => {
  test('a request keeps its deadline (a resent one its first, a gRPC one the caller\'s): it leaves with what is left, or not at all', async () => {
    const { calls, send } = manualSend();
    const now = Date.now();
    const b = new Batcher(send, LIMITS, () => 0, () => now);
    const resent = b.submit('a', now + 2000);
    const expired = expect(b.submit('b', now - 1000)).rejects.toMatchObject({ code: 'shard_unavailable', outcome: 'definite' });
    await turn();
    expect(calls.map((c) => [c.items, c.timeoutMs])).toEqual([[['a'], 2000]]);
    calls[0]!.answer(['A']);
    await expect(resent).resolves.toBe('A');
    await expired;
  });

  test('a lone request leaves in the next event-loop turn, alone', async () => {
    const { calls, send } = manualSend();
    const b = new Batcher(send, LIMITS);
    const p = b.submit('a');
    await turn();
    expect(calls.map((c) => c.items)).toEqual([['a']]);
    calls[0]!.answer(['A']);
    await expect(p).resolves.toBe('A');
  });

  test('requests of one turn travel together; those arriving while the batch is out leave together when it returns', async () => {
    const { calls, send } = manualSend();
    const b = new Batcher(send, LIMITS);
    const first = ['a', 'b', 'c'].map((x) => b.submit(x));
    await turn();
    const second = ['d', 'e'].map((x) => b.submit(x));
    await turn();
    expect(calls.map((c) => c.items)).toEqual([['a', 'b', 'c']]);
    expect(b.queued).toBe(2);
    calls[0]!.answer(['A', 'B', 'C']);
    await expect(Promise.all(first)).resolves.toEqual(['A', 'B', 'C']);
    await turn();
    expect(calls.map((c) => c.items)).toEqual([['a', 'b', 'c'], ['d', 'e']]);
    calls[1]!.answer(['D', 'E']);
    await expect(Promise.all(second)).resolves.toEqual(['D', 'E']);
  });

  test('batches are cut at the entry and byte limits; an item over the byte limit travels alone', async () => {
    const { calls, send } = manualSend();
    const b = new Batcher(send, { ...LIMITS, entriesMax: 2, bytesMax: 10, inFlightMax: 10 }, (s) => s.length);
    for (const x of ['a', 'b', 'c', 'dddddddd', 'eeeeeeeeeeeeeeee', 'f']) void b.submit(x).catch(() => {});
    await turn();
    expect(calls.map((c) => c.items)).toEqual([['a', 'b'], ['c', 'dddddddd'], ['eeeeeeeeeeeeeeee'], ['f']]);
  });

  test('no more than inFlightMax batches are out at once', async () => {
    const { calls, send } = manualSend();
    const b = new Batcher(send, { ...LIMITS, entriesMax: 1, inFlightMax: 2 });
    for (const x of ['a', 'b', 'c']) void b.submit(x);
    await turn();
    expect(calls).toHaveLength(2);
    expect(b.batchesInFlight).toBe(2);
    calls[0]!.answer(['A']);
    await turn();
    await turn();
    expect(calls).toHaveLength(3);
  });

  test('a full queue refuses at once with a definite 503 router_busy', async () => {
    const { send } = manualSend();
    const b = new Batcher(send, { ...LIMITS, queueMax: 2 });
    void b.submit('a');
    void b.submit('b');
    const err = await b.submit('c').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvError);
    expect(err).toMatchObject({ code: 'router_busy', status: 503, outcome: 'definite' });
  });

  test('a failed batch fails each of its requests; so does an answer with the wrong number of results', async () => {
    const { calls, send } = manualSend();
    const b = new Batcher(send, LIMITS);
    const ps = ['a', 'b'].map((x) => b.submit(x));
    await turn();
    calls[0]!.fail(new KvError('upstream_timeout', 'slow'));
    for (const p of ps) await expect(p).rejects.toMatchObject({ code: 'upstream_timeout' });
    const qs = ['c', 'd'].map((x) => b.submit(x));
    await turn();
    calls[1]!.answer(['C']);
    for (const q of qs) await expect(q).rejects.toThrow('batch of 2 answered with 1 results');
  });

  test('a batch gets what is left of its oldest request\'s time; a request that used it all waiting is refused unsent', async () => {
    const { calls, send } = manualSend();
    let now = 0;
    const b = new Batcher(send, { ...LIMITS, timeoutMs: 1000 }, () => 0, () => now);
    const first = b.submit('a');
    await turn();
    const late = b.submit('b');
    now = 1500; // the first batch took longer than 'b' may wait in total
    calls[0]!.answer(['A']);
    await expect(first).resolves.toBe('A');
    await expect(late).rejects.toMatchObject({ code: 'shard_unavailable', outcome: 'definite' });
    expect(calls).toHaveLength(1);

    const c = b.submit('c');
    now = 1800;
    await turn();
    expect(calls[1]).toMatchObject({ items: ['c'], timeoutMs: 700 });
    calls[1]!.answer(['C']);
    await expect(c).resolves.toBe('C');
  });
});
