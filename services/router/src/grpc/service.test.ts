import { failedEntry, KvError } from '@shardkv/common';
import type { KvOperations } from '../operations';
import { loadKvDefinition, SERVICE_NAME } from './proto';
import { kvHandlers } from './service';

/** Operations that record what they were given and answer canned results. */
function fakeOps() {
  const calls: Array<[string, unknown, unknown]> = [];
  const ops = {
    get: async (key: unknown, opts: unknown) => (calls.push(['get', key, opts]), { key, value: 'v', version: 4 }),
    put: async (input: unknown, opts: unknown) => (calls.push(['put', input, opts]), { key: 'k', seq: 7 }),
    delete: async (key: unknown, opts: unknown) => (calls.push(['delete', key, opts]), { key, deleted: true, seq: 8 }),
    incr: async (input: unknown, opts: unknown) => (calls.push(['incr', input, opts]), { key: 'k', value: '3', seq: 9, version: 9 }),
    mget: async (input: unknown) => (calls.push(['mget', input, undefined]), { ok: 1, failed: 1, results: [{ key: 'a', ok: true, value: 'A' }, failedEntry('b', new KvError('key_not_found', 'key not found'))] }),
    mput: async (input: unknown) => (calls.push(['mput', input, undefined]), { ok: 0, failed: 1, results: [failedEntry('a', new KvError('replication_timeout', 'slow'))] }),
  };
  return { calls, ops: ops as unknown as KvOperations };
}

describe('gRPC handlers', () => {
  test('cover exactly the rpcs of the .proto (the server refuses to start otherwise)', () => {
    const methods = Object.keys(loadKvDefinition()[SERVICE_NAME] as object).sort();
    expect(Object.keys(kvHandlers(fakeOps().ops)).sort()).toEqual(methods);
  });

  test('pass each field on by name, the deadline and the consistency included, and nothing else', async () => {
    const { calls, ops } = fakeOps();
    const h = kvHandlers(ops);
    const opts = { deadlineAtMs: 123 };
    await h.Get({ key: 'k', consistency: 'CONSISTENCY_STALE' }, opts);
    await h.Put({ key: 'k', value: 'v', ttlMs: 5, ifVersion: 0, extra: 1 } as never, opts);
    await h.Incr({ key: 'k', by: 0 }, opts);
    await h.MPut({ entries: [{ key: 'a', value: 'A', extra: 1 } as never] }, opts);
    expect(calls).toEqual([
      ['get', 'k', { deadlineAtMs: 123, consistency: 'stale' }],
      // proto3's 0 is "not given": no ifVersion condition, and an increment by 1.
      ['put', { key: 'k', value: 'v', ttlMs: 5 }, { ...opts, header: expect.any(Function) }],
      ['incr', { key: 'k', by: 1 }, { ...opts, header: expect.any(Function) }],
      ['mput', { entries: [{ key: 'a', value: 'A' }] }, undefined],
    ]);
  });

  test('answer batches entry by entry, failures with their code and outcome', async () => {
    const h = kvHandlers(fakeOps().ops);
    expect(await h.MGet({ keys: ['a', 'b'] }, {})).toEqual({
      ok: 1,
      failed: 1,
      results: [{ key: 'a', ok: true, value: 'A' }, { key: 'b', ok: false, error: { code: 'key_not_found', message: 'key not found', outcome: 'OUTCOME_DEFINITE' } }],
    });
    expect((await h.MPut({ entries: [{ key: 'a', value: 'A' }] }, {})).results[0]).toEqual({ key: 'a', ok: false, error: { code: 'replication_timeout', message: 'slow', outcome: 'OUTCOME_INDETERMINATE' } });
  });
});
