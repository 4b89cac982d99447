import { KvGrpcClient, KvGrpcError, status } from '@shardkv/router/dist/grpc/client';
import { get, http, keysOn, put, startCluster, waitFor, type TestCluster } from './helpers';

/**
 * The router's gRPC service against the real 7-process cluster, through a grpc-js client that
 * loads the router's own .proto: the same operations as HTTP, the same data, the error table's
 * codes as gRPC statuses with the code and outcome in the trailers, and the call's deadline kept.
 */
let cluster: TestCluster;
let R: string;
let grpc: KvGrpcClient;

beforeAll(async () => {
  // A long drain, so that the shutdown test's call (at most the leader's 2 s replication timeout) fits in it on a busy machine.
  cluster = await startCluster({ env: { GRPC_SHUTDOWN_GRACE_MS: '8000' } });
  R = cluster.router.url;
  grpc = new KvGrpcClient(cluster.router.grpcAddress!);
});
afterAll(async () => {
  grpc?.close();
  await cluster?.stop();
});

/** The error a call failed with (the test fails if it succeeded). */
async function failure(call: Promise<unknown>): Promise<{ grpcCode: string; code: string | undefined; outcome: string | undefined; message: string }> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof KvGrpcError)) throw new Error(`expected a KvGrpcError, got ${String(err)}`);
  return { grpcCode: status[err.grpcCode], code: err.code, outcome: err.outcome, message: err.message };
}

/** A sample of the router's /metrics, 0 when the series is absent. */
async function metric(name: string, labels: string): Promise<number> {
  const text = (await http('GET', `${R}/metrics`)).body as string;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

const AWKWARD_KEYS = ['plain', 'with space', 'a&b=c', 'slash/and?query', '100%', '😀 emoji', ' ', '\t\n', 'k'.repeat(1024)];

describe('gRPC service', () => {
  test('Put, Get and Delete round-trip awkward keys exactly; Delete says whether the key existed', async () => {
    for (const key of AWKWARD_KEYS) {
      const seq = await grpc.put(key, `value of ${key}`);
      expect(seq).toBeGreaterThan(0);
      expect(await grpc.call('Get', { key })).toEqual({ key, value: `value of ${key}`, version: expect.any(Number), ttlMs: 0 });
    }
    for (const key of AWKWARD_KEYS) {
      expect(await grpc.call('Delete', { key })).toEqual({ key, deleted: true, seq: expect.any(Number) });
      expect(await grpc.delete(key)).toBe(false);
    }
    expect(await grpc.put('empty', '')).toBeGreaterThan(0);
    expect(await grpc.get('empty')).toBe('');
  });

  test('MPut and MGet answer one result per entry, in order, a missing key as a failed entry', async () => {
    const entries = Array.from({ length: 50 }, (_, i) => ({ key: `m-${i}`, value: `v-${i}` }));
    const w = await grpc.mput(entries);
    expect({ ok: w.ok, failed: w.failed }).toEqual({ ok: 50, failed: 0 });
    expect(w.results.map((r) => [r.key, r.ok, r.seq! > 0])).toEqual(entries.map((e) => [e.key, true, true]));
    const r = await grpc.mget([...entries.map((e) => e.key), 'never-written']);
    expect({ ok: r.ok, failed: r.failed }).toEqual({ ok: 50, failed: 1 });
    expect(r.results.slice(0, 50).map((x) => [x.key, x.value])).toEqual(entries.map((e) => [e.key, e.value]));
    expect(r.results[50]).toMatchObject({ key: 'never-written', ok: false, error: { code: 'key_not_found', outcome: 'OUTCOME_DEFINITE' } });
  });

  test('a value put over gRPC is read over HTTP, and one put over HTTP is read over gRPC, stale reads included', async () => {
    await grpc.put('via-grpc', 'from gRPC');
    expect((await get(R, 'via-grpc')).body).toEqual({ key: 'via-grpc', value: 'from gRPC', version: expect.any(Number) });
    expect((await put(R, 'via-http', 'from HTTP')).status).toBe(200);
    expect(await grpc.get('via-http')).toBe('from HTTP');
    const staleRead = async () => (await grpc.get('via-http', { stale: true })) === 'from HTTP';
    await waitFor('a stale gRPC read of the follower', cluster, staleRead, 5000);
    const mixed = await http('POST', `${R}/mget`, { keys: ['via-grpc', 'via-http'] });
    expect(mixed.body.results.map((x: { value: string }) => x.value)).toEqual(['from gRPC', 'from HTTP']);
  });

  test('errors are the error table\'s, as gRPC statuses with the code and outcome in the trailers', async () => {
    expect(await failure(grpc.get('never-written'))).toEqual({ grpcCode: 'NOT_FOUND', code: 'key_not_found', outcome: 'definite', message: 'key not found' });
    expect(await failure(grpc.put('', 'x'))).toMatchObject({ grpcCode: 'INVALID_ARGUMENT', code: 'invalid_key', outcome: 'definite' });
    expect(await failure(grpc.get('k'.repeat(1025)))).toMatchObject({ grpcCode: 'INVALID_ARGUMENT', code: 'invalid_key' });
    expect(await failure(grpc.put('big', 'é'.repeat(512 * 1024) + 'x'))).toMatchObject({ grpcCode: 'INVALID_ARGUMENT', code: 'value_too_large' });
    expect(await failure(grpc.mget([]))).toMatchObject({ grpcCode: 'INVALID_ARGUMENT', code: 'invalid_body' });
    expect(await failure(grpc.mget(Array.from({ length: 1001 }, (_, i) => `k${i}`)))).toMatchObject({ grpcCode: 'INVALID_ARGUMENT', code: 'batch_too_large' });
    // consistency = 7, a value the enum does not have (field 2, varint): refused, not read as the default.
    const unknownConsistency = Buffer.concat([grpc.encode('Get', { key: 'x' }), Buffer.from([0x10, 0x07])]);
    expect(await failure(grpc.callRaw('Get', unknownConsistency))).toMatchObject({ grpcCode: 'INVALID_ARGUMENT', code: 'bad_request' });
  });

  test('strings that are not UTF-8 are refused, never stored as U+FFFD', async () => {
    const bytes = grpc.encode('Put', { key: 'kk', value: 'vv' });
    const badKey = Buffer.from(bytes);
    badKey.set([0xff, 0xfe], bytes.indexOf('kk'));
    expect(await failure(grpc.callRaw('Put', badKey))).toMatchObject({ grpcCode: 'INVALID_ARGUMENT', code: 'invalid_key', message: 'key is not valid UTF-8' });
    const badValue = Buffer.from(bytes);
    badValue.set([0xc3, 0x28], bytes.indexOf('vv'));
    expect(await failure(grpc.callRaw('Put', badValue))).toMatchObject({ code: 'invalid_value' });
    expect((await get(R, '\uFFFD\uFFFD')).status).toBe(404);
  });

  test('a request over the HTTP body limit is refused by grpc-js before it is decoded', async () => {
    const entries = Array.from({ length: 3 }, (_, i) => ({ key: `huge-${i}`, value: 'v'.repeat(1024 * 1024) }));
    expect(await failure(grpc.mput(entries))).toMatchObject({ grpcCode: 'RESOURCE_EXHAUSTED', code: undefined });
  });

  test('calls are counted by method and status', async () => {
    const before = await metric('shardkv_router_grpc_requests_total', 'method="Get",code="NOT_FOUND"');
    await failure(grpc.get('never-written-either'));
    expect(await metric('shardkv_router_grpc_requests_total', 'method="Get",code="NOT_FOUND"')).toBe(before + 1);
    expect(await metric('shardkv_router_grpc_requests_total', 'method="Put",code="OK"')).toBeGreaterThan(0);
  });

  // Last: it pauses a follower.
  test('the call\'s deadline is the request\'s: a write stuck behind a paused follower ends at the client\'s deadline, in the router too', async () => {
    const [key] = await keysOn(cluster, 'shard-0', 1, 'deadline');
    const timedOut = () => metric('shardkv_router_errors_total', 'code="upstream_timeout"');
    const before = await timedOut();
    const follower = cluster.process(cluster.shards[0]!.follower.name);
    follower.signal('SIGSTOP');
    try {
      const started = Date.now();
      // The leader would answer replication_timeout after 2 s, the router's own deadline is 5 s:
      // only the client's 300 ms make the router give up on its upstream call this early.
      expect(await failure(grpc.put(key!, 'late', { deadlineMs: 300 }))).toMatchObject({ grpcCode: 'DEADLINE_EXCEEDED' });
      expect(Date.now() - started).toBeLessThan(1000);
      await waitFor('the router to end its upstream call at the deadline', cluster, async () => (await timedOut()) === before + 1, 1500);
      expect(Date.now() - started).toBeLessThan(1800);
    } finally {
      follower.signal('SIGCONT');
    }
    await waitFor('shard-0 replicating again', cluster, async () => {
      const s = (await http('GET', `${R}/status`)).body.shards.find((x: { id: string }) => x.id === 'shard-0');
      return s.inSync === true && s.leader.state === 'serving';
    }, 20_000);
  });

  // Last: it stops the router (the supervisor starts it again).
  test('on SIGTERM the router answers the gRPC calls in flight, those still queued for their shard too, before it exits', async () => {
    const [first, queued] = await keysOn(cluster, 'shard-1', 2, 'drain');
    const follower = cluster.process(cluster.shards[1]!.follower.name);
    const router = cluster.process(cluster.router.name);
    const answered = (key: string) =>
      grpc.put(key, 'v', { deadlineMs: 15_000 }).then(
        () => ({ at: Date.now(), code: 'ok' as string | undefined }),
        (e: KvGrpcError) => ({ at: Date.now(), code: e.code }),
      );
    follower.signal('SIGSTOP');
    try {
      const inFlight = answered(first!);
      await new Promise((r) => setTimeout(r, 100));
      // The shard's one batch in flight holds `first`: this one waits in the router's queue.
      const waiting = answered(queued!);
      await new Promise((r) => setTimeout(r, 200));
      const stoppedAt = Date.now();
      router.signal('SIGTERM');
      // The cluster's own answers (committed once the coordinator dropped the paused follower,
      // the leader's replication_timeout, or its no_replica after it), each with its code: a
      // call cut by the exit would have none.
      for (const answer of await Promise.all([inFlight, waiting])) {
        expect(answer.at).toBeGreaterThan(stoppedAt);
        expect(answer.code).toMatch(/^(ok|replication_timeout|no_replica)$/);
      }
    } finally {
      follower.signal('SIGCONT');
    }
    await cluster.waitHealthy(20_000, [cluster.router]);
  });
});

describe('counters, versions and idempotency over gRPC', () => {
  test('Incr, a compare-and-set Put, a ttl and an idempotency key, with the same codes as HTTP', async () => {
    // The SIGTERM test before this one stops the router; its supervisor starts it again.
    await waitFor('the router to serve gRPC again', cluster, async () => (await grpc.incr('g-warmup').then(() => true, () => false)));
    expect(await grpc.incr('g-counter', 5)).toMatchObject({ key: 'g-counter', value: '5' });
    expect((await grpc.incr('g-counter', -2)).value).toBe('3');
    const first = await grpc.putWith({ key: 'g-doc', value: 'a', ttlMs: 60_000 });
    expect(first.version).toBe(first.seq);
    const read = await grpc.getEntry('g-doc');
    expect(read).toMatchObject({ value: 'a', version: first.version });
    expect(read.ttlMs).toBeGreaterThan(0);
    expect(await failure(grpc.putWith({ key: 'g-doc', value: 'b', ifVersion: first.version + 1000 }))).toMatchObject({ grpcCode: 'ABORTED', code: 'version_mismatch', outcome: 'definite' });
    expect((await grpc.putWith({ key: 'g-doc', value: 'b', ifVersion: first.version })).version).toBeGreaterThan(first.version);
    expect(await failure(grpc.putWith({ key: 'g-doc', value: 'c', ifAbsent: true }))).toMatchObject({ grpcCode: 'ABORTED', code: 'version_mismatch' });
    await grpc.putWith({ key: 'g-word', value: 'abc' });
    expect(await failure(grpc.incr('g-word'))).toMatchObject({ grpcCode: 'FAILED_PRECONDITION', code: 'not_an_integer' });
    // The same idempotency key twice: applied once, the same answer.
    const once = await grpc.incr('g-counter', 1, { idempotencyKey: 'g-1' });
    expect(await grpc.incr('g-counter', 1, { idempotencyKey: 'g-1' })).toEqual(once);
    expect((await get(R, 'g-counter')).body.value).toBe('4');
  });

  test('Delete with a version and MPut entries with a ttl and conditions, retried with an idempotency key', async () => {
    const v = (await grpc.putWith({ key: 'g-del', value: 'a' })).version;
    expect(await failure(grpc.delete('g-del', { ifVersion: v + 1000 }))).toMatchObject({ grpcCode: 'ABORTED', code: 'version_mismatch' });
    expect(await grpc.delete('g-del', { ifVersion: v, idempotencyKey: 'g-del-1' })).toBe(true);
    // Its retry gets the first answer (deleted), though the key is gone now.
    expect(await grpc.delete('g-del', { ifVersion: v, idempotencyKey: 'g-del-1' })).toBe(true);
    const entries = [{ key: 'g-m1', value: 'x', ttlMs: 60_000 }, { key: 'g-m2', value: 'y', ifAbsent: true }, { key: 'g-doc', value: 'z', ifAbsent: true }];
    const first = await grpc.mput(entries, { idempotencyKey: 'g-batch' });
    expect(first.results.map((r) => (r.ok ? 'ok' : r.error!.code))).toEqual(['ok', 'ok', 'version_mismatch']);
    expect((await grpc.getEntry('g-m1')).ttlMs).toBeGreaterThan(0);
    const again = await grpc.mput(entries, { idempotencyKey: 'g-batch' });
    expect(again.results.map((r) => r.seq ?? r.error!.code)).toEqual(first.results.map((r) => r.seq ?? r.error!.code));
  });
});
