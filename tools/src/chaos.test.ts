import { classifyResponse, classifyTransportError, pickKind, resolveOptions, rng, writeOutage } from './chaos';
import type { Operation } from './linearizability';

describe('classifyResponse: the API contract as outcomes', () => {
  test('200 took effect: a get returns its value, a delete whether the key existed', () => {
    expect(classifyResponse('get', 200, { key: 'k', value: 'v' })).toEqual({ outcome: 'ok', result: 'v' });
    expect(classifyResponse('get', 200, { key: 'k', value: '' })).toEqual({ outcome: 'ok', result: '' });
    expect(classifyResponse('put', 200, { key: 'k', seq: 7 })).toEqual({ outcome: 'ok' });
    expect(classifyResponse('del', 200, { key: 'k', deleted: true, seq: 8 })).toEqual({ outcome: 'ok', existed: true });
    expect(classifyResponse('del', 200, { key: 'k', deleted: false, seq: 8 })).toEqual({ outcome: 'ok', existed: false });
  });

  test('404 key_not_found on a get is a successful read of "absent"', () => {
    expect(classifyResponse('get', 404, { error: { code: 'key_not_found', message: 'x' } })).toEqual({ outcome: 'ok', result: null });
  });

  test('503 is a definite failure, 504 indeterminate, with the error code as the reason', () => {
    expect(classifyResponse('put', 503, { error: { code: 'no_replica', message: 'x' } })).toEqual({ outcome: 'fail', reason: '503 no_replica' });
    expect(classifyResponse('get', 503, { error: { code: 'shard_unavailable', message: 'x' } })).toEqual({ outcome: 'fail', reason: '503 shard_unavailable' });
    expect(classifyResponse('del', 504, { error: { code: 'replication_timeout', message: 'x' } })).toEqual({ outcome: 'info', reason: '504 replication_timeout' });
    expect(classifyResponse('put', 504, 'not json')).toEqual({ outcome: 'info', reason: '504 ?' });
  });

  test('anything else is unexpected: other 4xx, 500, a 404 that is not key_not_found, a malformed 200', () => {
    expect(classifyResponse('put', 400, { error: { code: 'invalid_body' } })).toEqual({ unexpected: 'HTTP 400 invalid_body' });
    expect(classifyResponse('put', 409, { error: { code: 'not_leader' } })).toEqual({ unexpected: 'HTTP 409 not_leader' });
    expect(classifyResponse('get', 500, { error: { code: 'internal' } })).toEqual({ unexpected: 'HTTP 500 internal' });
    expect(classifyResponse('get', 404, { error: { code: 'route_not_found' } })).toEqual({ unexpected: 'HTTP 404 route_not_found' });
    expect(classifyResponse('del', 404, { error: { code: 'key_not_found' } })).toEqual({ unexpected: 'HTTP 404 key_not_found' });
    expect(classifyResponse('get', 200, { key: 'k' })).toHaveProperty('unexpected');
    expect(classifyResponse('del', 200, { key: 'k', seq: 1 })).toHaveProperty('unexpected');
    expect(classifyResponse('put', 200, 'ok')).toHaveProperty('unexpected');
  });

  test('no answer at all is indeterminate', () => {
    const timeout = Object.assign(new Error('t'), { name: 'TimeoutError' });
    expect(classifyTransportError(timeout)).toEqual({ outcome: 'info', reason: 'client timeout' });
    expect(classifyTransportError(Object.assign(new Error('r'), { code: 'ECONNRESET' }))).toEqual({ outcome: 'info', reason: 'transport ECONNRESET' });
    expect(classifyTransportError(Object.assign(new Error('r'), { code: 'ECONNREFUSED' })).outcome).toBe('info');
  });
});

describe('writeOutage', () => {
  const shardOf = (key: string) => (key.startsWith('a') ? 'shard-a' : 'shard-b');
  let id = 0;
  const op = (key: string, kind: Operation['kind'], invokeMs: number, completeMs: number, outcome: Operation['outcome'] = 'ok'): Operation => ({
    id: (id += 1),
    client: 0,
    key,
    kind,
    invokeMs,
    completeMs,
    outcome,
    ...(kind === 'put' ? { value: `v${id}` } : {}),
  });

  test('from the fault start to the first successful write on the shard invoked after it', () => {
    const history = [
      op('a1', 'put', 90, 120), // in flight at the fault: does not count
      op('a1', 'put', 101, 5101, 'info'),
      op('a2', 'del', 200, 300, 'fail'),
      op('a1', 'get', 400, 410), // a read is not a write
      op('b1', 'put', 500, 510), // another shard
      op('a2', 'put', 2900, 3200), // completes after the next one
      op('a2', 'del', 3000, 3050),
    ];
    expect(writeOutage({ shard: 'shard-a', startMs: 100 }, history, shardOf, 10_000)).toEqual({ outageMs: 2950, recovered: true, firstWriteOkMs: 3050 });
    expect(writeOutage({ shard: 'shard-b', startMs: 100 }, history, shardOf, 10_000)).toEqual({ outageMs: 410, recovered: true, firstWriteOkMs: 510 });
  });

  test('no successful write before the end: capped at the end, not recovered', () => {
    const history = [op('a1', 'put', 100, 6100, 'info'), op('a1', 'put', 200, 300, 'fail'), op('a1', 'put', 9000, 9500)];
    expect(writeOutage({ shard: 'shard-a', startMs: 1000 }, history, shardOf, 9000)).toEqual({ outageMs: 8000, recovered: false, firstWriteOkMs: null });
    expect(writeOutage({ shard: 'shard-b', startMs: 1000 }, history, shardOf, 9000)).toEqual({ outageMs: 8000, recovered: false, firstWriteOkMs: null });
  });
});

describe('randomness and options', () => {
  test('the seeded generator repeats and the mix is honoured', () => {
    const a = rng(42);
    const b = rng(42);
    const xs = Array.from({ length: 5 }, () => a());
    expect(Array.from({ length: 5 }, () => b())).toEqual(xs);
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
    const mix = { get: 50, put: 40, del: 10 };
    expect([0, 0.49, 0.5, 0.89, 0.9, 0.999].map((r) => pickKind(mix, r))).toEqual(['get', 'get', 'put', 'put', 'del', 'del']);
    const r = rng(7);
    const counts = { get: 0, put: 0, del: 0 };
    for (let i = 0; i < 10_000; i += 1) counts[pickKind(mix, r())] += 1;
    expect(counts.get / 10_000).toBeCloseTo(0.5, 1);
    expect(counts.del / 10_000).toBeCloseTo(0.1, 1);
  });

  test('options merge over the defaults and are validated', () => {
    const o = resolveOptions({ durationMs: 1000, nemesis: { settleMs: 10 }, mix: { del: 0 } });
    expect(o.nemesis.settleMs).toBe(10);
    expect(o.nemesis.pauseMaxMs).toBe(4000);
    expect(o.mix).toEqual({ get: 50, put: 40, del: 0 });
    expect(o.requestTimeoutMs).toBeGreaterThan(5000);
    expect(() => resolveOptions({ clients: 0 })).toThrow(/clients/);
    expect(() => resolveOptions({ nemesis: { pauseMinMs: 5000, pauseMaxMs: 1000 } })).toThrow(/pauseMinMs/);
  });
});
