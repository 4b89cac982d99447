import { classifyResponse, classifyRmwAnswer, classifyTransportError, pickKind, resolveOptions, rng, writeOutage } from './chaos';
import { rmwStep, type ClientIo, type Exchange, type HttpRequest } from './chaos-workloads';
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

describe('classifyRmwAnswer: versions, refusals, the error table', () => {
  const cas = { kind: 'put' as const, ifVersion: 4 };
  const answer = (status: number, body: unknown): Exchange => ({ status, body });

  test('200 carries the version read or made; an increment its new value; a delete its seq', () => {
    expect(classifyRmwAnswer({ kind: 'get' }, answer(200, { key: 'k', value: 'v', version: 7 }))).toEqual({ outcome: 'ok', result: 'v', version: 7 });
    expect(classifyRmwAnswer(cas, answer(200, { key: 'k', seq: 9, version: 9 }))).toEqual({ outcome: 'ok', version: 9 });
    expect(classifyRmwAnswer({ kind: 'incr' }, answer(200, { key: 'k', value: '12', seq: 10, version: 10 }))).toEqual({ outcome: 'ok', result: '12', version: 10 });
    expect(classifyRmwAnswer({ kind: 'del', ifVersion: 3 }, answer(200, { key: 'k', deleted: true, seq: 11 }))).toEqual({ outcome: 'ok', existed: true, version: 11 });
    expect(classifyRmwAnswer({ kind: 'get' }, answer(404, { error: { code: 'key_not_found' } }))).toEqual({ outcome: 'ok', result: null });
  });

  test('a 412 on a conditional write is a refusal with the current version (null: absent)', () => {
    const mismatch = (version: unknown) => answer(412, { error: { code: 'version_mismatch', message: 'x', version } });
    expect(classifyRmwAnswer(cas, mismatch(5))).toEqual({ outcome: 'fail', mismatchVersion: 5, reason: '412 version_mismatch' });
    expect(classifyRmwAnswer({ kind: 'put', ifAbsent: true }, mismatch(2))).toEqual({ outcome: 'fail', mismatchVersion: 2, reason: '412 version_mismatch' });
    expect(classifyRmwAnswer({ kind: 'del', ifVersion: 1 }, mismatch(null))).toEqual({ outcome: 'fail', mismatchVersion: null, reason: '412 version_mismatch' });
    expect(classifyRmwAnswer(cas, mismatch('5'))).toHaveProperty('unexpected');
    expect(classifyRmwAnswer({ kind: 'put' }, mismatch(5))).toHaveProperty('unexpected');
  });

  test('503 and 504 by the error table; 409 not_an_integer, other 4xx and malformed 200s are unexpected', () => {
    expect(classifyRmwAnswer({ kind: 'incr' }, answer(503, { error: { code: 'no_replica' } }))).toEqual({ outcome: 'fail', reason: '503 no_replica' });
    expect(classifyRmwAnswer({ kind: 'incr' }, answer(504, { error: { code: 'leader_changed' } }))).toEqual({ outcome: 'info', reason: '504 leader_changed' });
    expect(classifyRmwAnswer({ kind: 'incr' }, answer(504, 'not json'))).toEqual({ outcome: 'info', reason: '504 ?' });
    expect(classifyRmwAnswer({ kind: 'incr' }, answer(409, { error: { code: 'not_an_integer' } }))).toEqual({ unexpected: 'HTTP 409 not_an_integer' });
    expect(classifyRmwAnswer({ kind: 'incr' }, answer(409, { error: { code: 'out_of_range' } }))).toEqual({ unexpected: 'HTTP 409 out_of_range' });
    expect(classifyRmwAnswer({ kind: 'get' }, answer(200, { key: 'k', value: 'v' }))).toHaveProperty('unexpected');
    expect(classifyRmwAnswer({ kind: 'incr' }, answer(200, { key: 'k', value: 3, version: 1 }))).toHaveProperty('unexpected');
    expect(classifyRmwAnswer({ kind: 'incr' }, { error: Object.assign(new Error('t'), { name: 'TimeoutError' }) })).toEqual({ outcome: 'info', reason: 'client timeout' });
  });
});

/** A client whose router answers from a script: each request gets the next answer; what was sent is kept. */
function scriptedIo(answers: Exchange[], randoms: number[]): { io: ClientIo; sent: HttpRequest[]; recorded: Operation[] } {
  const sent: HttpRequest[] = [];
  const recorded: Operation[] = [];
  let clockMs = 0;
  let n = 0;
  const io: ClientIo = {
    random: () => randoms.shift() ?? 0,
    send: async (req) => {
      sent.push(req);
      clockMs += 1;
      return answers.shift() ?? { error: new Error('script ran out') };
    },
    sleep: async () => {},
    stopped: () => false,
    start: (kind, key, fields = {}) => ({ id: n, client: 0, key, kind, ...fields, invokeMs: clockMs, completeMs: 0, outcome: 'info' }),
    finish: (op, answer) => {
      if (!('unexpected' in answer)) Object.assign(op, Object.fromEntries(Object.entries(answer).filter(([k, v]) => k !== 'reason' && v !== undefined)));
      op.completeMs = clockMs;
      recorded.push(op);
    },
    uniqueValue: () => `v${(n += 1)}`,
    noteResend: () => {},
  };
  return { io, sent, recorded };
}

describe('rmwStep: what the rmw workload sends and records', () => {
  const rmw = { incrBy: [1, 2, 5], writeRetries: 2, retryBackoffMs: 0 };
  const timeout: Exchange = { error: Object.assign(new Error('t'), { name: 'TimeoutError' }) };

  test('a compare-and-set is sent at the version read, with the value read as its expectation', async () => {
    // randoms: 0.1 picks the read-modify-write, 0.9 a put (not a delete)
    const { io, sent, recorded } = scriptedIo([{ status: 200, body: { key: 'k', value: 'old', version: 4 } }, { status: 200, body: { key: 'k', seq: 6, version: 6 } }], [0.1, 0.9]);
    await rmwStep(io, rmw, 'k', false);
    expect(JSON.parse(sent[1]!.body!)).toEqual({ key: 'k', value: 'v1', ifVersion: 4 });
    expect(recorded.map((op) => [op.kind, op.outcome, op.ifVersion, op.expectedValue, op.version])).toEqual([['get', 'ok', undefined, undefined, 4], ['put', 'ok', 4, 'old', 6]]);
  });

  test('an absent key gets a put if absent; a delete at the version read goes in the query string', async () => {
    const absent = scriptedIo([{ status: 404, body: { error: { code: 'key_not_found' } } }, { status: 412, body: { error: { code: 'version_mismatch', version: 8 } } }], [0.1]);
    await rmwStep(absent.io, rmw, 'k', false);
    expect(JSON.parse(absent.sent[1]!.body!)).toEqual({ key: 'k', value: 'v1', ifAbsent: true });
    expect(absent.recorded[1]).toMatchObject({ outcome: 'fail', ifAbsent: true, mismatchVersion: 8 });

    const del = scriptedIo([{ status: 200, body: { key: 'k', value: 'x', version: 3 } }, { status: 200, body: { key: 'k', deleted: true, seq: 5 } }], [0.1, 0.1]);
    await rmwStep(del.io, rmw, 'a b', false);
    expect(del.sent[1]).toMatchObject({ method: 'DELETE', path: '/delete?key=a%20b&ifVersion=3' });
    expect(del.recorded[1]).toMatchObject({ kind: 'del', outcome: 'ok', existed: true, version: 5, expectedValue: 'x' });
  });

  test('an indeterminate write is resent with the same Idempotency-Key and takes the answer that comes', async () => {
    const { io, sent, recorded } = scriptedIo([timeout, { status: 200, body: { key: 'c', value: '7', seq: 9, version: 9 } }], [0.1, 0.5]);
    await rmwStep(io, rmw, 'c', true);
    expect(sent.map((r) => r.path)).toEqual(['/incr', '/incr']);
    expect(sent[0]!.headers!['idempotency-key']).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent[1]!.headers!['idempotency-key']).toBe(sent[0]!.headers!['idempotency-key']);
    expect(JSON.parse(sent[0]!.body!)).toEqual({ key: 'c', by: 2 });
    expect(recorded).toEqual([expect.objectContaining({ kind: 'incr', by: 2, outcome: 'ok', result: '7', version: 9 })]);
  });

  test('after an unanswered attempt, a definite refusal leaves the write indeterminate (the first may still commit)', async () => {
    const refused: Exchange = { status: 503, body: { error: { code: 'no_replica' } } };
    const { io, sent, recorded } = scriptedIo([timeout, refused, refused], [0.1, 0]);
    await rmwStep(io, rmw, 'c', true);
    expect(sent).toHaveLength(3);
    expect(recorded.map((op) => op.outcome)).toEqual(['info']);
    // A first definite refusal is final: no resend.
    const first = scriptedIo([refused], [0.1, 0]);
    await rmwStep(first.io, rmw, 'c', true);
    expect(first.sent).toHaveLength(1);
    expect(first.recorded.map((op) => op.outcome)).toEqual(['fail']);
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
    expect(resolveOptions({}).workload).toBe('register');
    expect(resolveOptions({ workload: 'rmw', rmw: { writeRetries: 0 } }).rmw).toEqual({ incrBy: [1, 2, 5], writeRetries: 0, retryBackoffMs: 100 });
    expect(() => resolveOptions({ workload: 'rmw', rmw: { incrBy: [0] } })).toThrow(/incrBy/);
    expect(() => resolveOptions({ workload: 'rmw', keys: 1 })).toThrow(/at least 2 keys/);
  });
});
