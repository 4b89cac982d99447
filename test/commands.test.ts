// Counters, versions with compare-and-set, and expiry through the router, against the real
// 7-process cluster: every one decided by the leader and replicated as a plain put or delete, so
// the follower holds the same values and versions, and a failover keeps every guarantee.
import { KvClient, KvClientError } from '@shardkv/client';
import { attempt, http, kv, shardView, startCluster, waitFor, type TestCluster } from './helpers';

let cluster: TestCluster;
let R: string;

beforeAll(async () => {
  cluster = await startCluster({ env: { EXPIRY_SWEEP_INTERVAL_MS: '50' } });
  R = cluster.router.url;
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});

const incr = (key: string, by?: number) => http('POST', `${R}/incr`, by === undefined ? { key } : { key, by });
const put = (body: Record<string, unknown>, headers: Record<string, string> = {}) => http('POST', `${R}/put`, body, headers);
const get = (base: string, key: string) => http('GET', `${base}/get?key=${encodeURIComponent(key)}`);
const nodesOf = async (key: string) => {
  const map = (await http('GET', `${R}/cluster/map`)).body;
  const shards: Array<{ id: string; leader: string; follower: string }> = map.shards;
  // The key's shard is where a direct read of the leader does not say wrong_shard.
  for (const s of shards) {
    const r = await http('GET', `${s.leader}/get?key=${encodeURIComponent(key)}`);
    if (r.status !== 409) return s;
  }
  throw new Error(`no shard serves ${key}`);
};

describe('counters', () => {
  test('1,000 concurrent increments by 1 of one key end at exactly 1,000, on both nodes', async () => {
    const answers = await Promise.all(Array.from({ length: 1000 }, () => incr('hits')));
    expect(answers.filter((a) => a.status !== 200).map((a) => a.body)).toEqual([]);
    // Every answer is a distinct value 1..1000: no two increments saw the same "before".
    expect(new Set(answers.map((a) => a.body.value)).size).toBe(1000);
    expect((await get(R, 'hits')).body).toMatchObject({ key: 'hits', value: '1000' });
    const s = await nodesOf('hits');
    await waitFor('the follower to have every increment', cluster, async () => (await get(s.follower, 'hits')).body.value === '1000');
    expect((await get(s.follower, 'hits')).body.version).toBe((await get(s.leader, 'hits')).body.version);
  }, 60_000);

  test('by may be negative; a value that is not an integer, an overflow, a bad by are refused and change nothing', async () => {
    expect((await incr('c1', 5)).body).toMatchObject({ key: 'c1', value: '5' });
    expect((await incr('c1', -7)).body).toMatchObject({ key: 'c1', value: '-2' });
    await put({ key: 'word', value: 'twelve' });
    const nai = await incr('word');
    expect([nai.status, nai.body.error.code]).toEqual([409, 'not_an_integer']);
    await put({ key: 'max', value: String(Number.MAX_SAFE_INTEGER) });
    const oor = await incr('max');
    expect([oor.status, oor.body.error.code]).toEqual([409, 'out_of_range']);
    expect((await get(R, 'max')).body.value).toBe(String(Number.MAX_SAFE_INTEGER));
    for (const by of [1.5, '1', Number.MAX_SAFE_INTEGER + 2]) {
      const bad = await incr('c1', by as number);
      expect([bad.status, bad.body.error.code]).toEqual([400, 'invalid_body']);
    }
    expect((await get(R, 'c1')).body.value).toBe('-2');
  });
});

describe('versions and compare-and-set', () => {
  test('a read shows the version and its ETag; If-Match writes only at that version, else 412 with the current one', async () => {
    const first = await put({ key: 'doc', value: 'v1' });
    expect(first.body).toEqual({ key: 'doc', seq: expect.any(Number), version: first.body.seq });
    const read = await get(R, 'doc');
    expect(read.body).toEqual({ key: 'doc', value: 'v1', version: first.body.version });
    expect(read.headers?.['etag']).toBe(`"${first.body.version}"`);
    const second = await put({ key: 'doc', value: 'v2' }, { 'if-match': `"${first.body.version}"` });
    expect(second.status).toBe(200);
    const stale = await put({ key: 'doc', value: 'v3' }, { 'if-match': String(first.body.version) });
    expect(stale.status).toBe(412);
    expect(stale.body.error).toMatchObject({ code: 'version_mismatch', version: second.body.version });
    const byBody = await put({ key: 'doc', value: 'v3', ifVersion: second.body.version });
    expect(byBody.status).toBe(200);
    expect((await get(R, 'doc')).body.value).toBe('v3');
  });

  test('two concurrent PUTs with the same If-Match: exactly one 200 and one 412', async () => {
    for (let round = 0; round < 10; round += 1) {
      const { version } = (await put({ key: `race${round}`, value: 'base' })).body;
      const both = await Promise.all(['a', 'b'].map((v) => put({ key: `race${round}`, value: v }, { 'if-match': `"${version}"` })));
      expect(both.map((r) => r.status).sort()).toEqual([200, 412]);
      const winner = both.find((r) => r.status === 200)!;
      expect((await get(R, `race${round}`)).body.version).toBe(winner.body.version);
    }
  });

  test('If-None-Match: * creates only an absent key; a delete takes If-Match; bad conditions are 400', async () => {
    const created = await put({ key: 'once', value: '1' }, { 'if-none-match': '*' });
    expect(created.status).toBe(200);
    const again = await put({ key: 'once', value: '2' }, { 'if-none-match': '*' });
    expect([again.status, again.body.error.code, again.body.error.version]).toEqual([412, 'version_mismatch', created.body.version]);
    const wrongDel = await http('DELETE', `${R}/delete?key=once`, undefined, { 'if-match': '"1"' });
    expect(wrongDel.status).toBe(412);
    const del = await http('DELETE', `${R}/delete?key=once&ifVersion=${created.body.version}`);
    expect(del.body).toMatchObject({ key: 'once', deleted: true });
    const absent = await put({ key: 'once', value: '3' }, { 'if-match': `"${created.body.version}"` });
    expect([absent.status, absent.body.error.version]).toEqual([412, null]);
    for (const headers of [{ 'if-match': 'abc' }, { 'if-none-match': '"3"' }, { 'if-match': '"1"', 'if-none-match': '*' }] as Array<Record<string, string>>) {
      const bad = await put({ key: 'once', value: '4' }, headers);
      expect([bad.status, bad.body.error.code]).toEqual([400, 'bad_request']);
    }
  });
});

describe('conditions and idempotency in a batch', () => {
  test('mput entries take ifVersion and ifAbsent, each checked on its own', async () => {
    const v = (await put({ key: 'b-cas', value: 'a' })).body.version;
    await put({ key: 'b-taken', value: 'x' });
    const r = await http('POST', `${R}/mput`, { entries: [{ key: 'b-cas', value: 'b', ifVersion: v }, { key: 'b-taken', value: 'y', ifAbsent: true }, { key: 'b-new', value: 'z', ifAbsent: true }, { key: 'b-cas', value: 'c', ifVersion: v }] });
    expect(r.status).toBe(200);
    expect(r.body.results.map((e: { ok: boolean; error?: { code: string } }) => (e.ok ? 'ok' : e.error!.code))).toEqual(['ok', 'version_mismatch', 'ok', 'version_mismatch']);
    // The second condition on b-cas saw the first entry's write: entries of a shard run in order.
    expect(r.body.results[3].error.version).toBe(r.body.results[0].seq);
    expect((await http('POST', `${R}/mget`, { keys: ['b-cas', 'b-taken', 'b-new'] })).body.results.map((e: { value: string }) => e.value)).toEqual(['b', 'x', 'z']);
    const both = await http('POST', `${R}/mput`, { entries: [{ key: 'b-cas', value: 'd', ifVersion: 1, ifAbsent: true }] });
    expect([both.status, both.body.error.code]).toEqual([400, 'invalid_body']);
  });

  test('an mput retried with its Idempotency-Key gets each entry\'s first answer and applies nothing again', async () => {
    const entries = Array.from({ length: 30 }, (_, i) => ({ key: `b-idem-${i}`, value: `first-${i}` }));
    const first = await http('POST', `${R}/mput`, { entries }, { 'idempotency-key': 'batch-1' });
    expect(first.body.ok).toBe(30);
    await put({ key: 'b-idem-7', value: 'later' });
    const retry = await http('POST', `${R}/mput`, { entries }, { 'idempotency-key': 'batch-1' });
    expect(retry.body.results.map((e: { seq: number }) => e.seq)).toEqual(first.body.results.map((e: { seq: number }) => e.seq));
    expect((await get(R, 'b-idem-7')).body.value).toBe('later');
    const dup = await http('POST', `${R}/mput`, { entries: [{ key: 'k', value: '1' }, { key: 'k', value: '2' }] }, { 'idempotency-key': 'batch-2' });
    expect([dup.status, dup.body.error.code]).toEqual([400, 'bad_request']);
    // Without a key, duplicates stay allowed: the later one wins.
    expect((await http('POST', `${R}/mput`, { entries: [{ key: 'b-dup', value: '1' }, { key: 'b-dup', value: '2' }] })).body.ok).toBe(2);
    expect((await get(R, 'b-dup')).body.value).toBe('2');
  });
});

describe('expiry', () => {
  test('a key is not returned after it expires, on the leader or the follower, and its deletion is replicated', async () => {
    const p = await put({ key: 'ephemeral', value: 'x', ttlMs: 1500 });
    expect(p.status).toBe(200);
    const read = (await get(R, 'ephemeral')).body;
    expect(read).toMatchObject({ value: 'x' });
    expect(read.ttlMs).toBeGreaterThan(0);
    expect(read.ttlMs).toBeLessThanOrEqual(1500);
    const s = await nodesOf('ephemeral');
    await waitFor('the follower to have it', cluster, async () => (await get(s.follower, 'ephemeral')).status === 200);
    const keysBefore = (await http('GET', `${s.leader}/status`)).body.keys;
    await new Promise((r) => setTimeout(r, 1600));
    for (const url of [R, s.leader, s.follower]) expect((await get(url, 'ephemeral')).status).toBe(404);
    // The leader's sweep deleted it, as a replicated delete: both nodes end at the same seq.
    await waitFor('the expiry to be replicated', cluster, async () => {
      const [l, f] = await Promise.all([http('GET', `${s.leader}/status`), http('GET', `${s.follower}/status`)]);
      return l.body.keys === keysBefore - 1 && f.body.keys === keysBefore - 1 && f.body.digest === l.body.digest;
    });
  }, 30_000);

  test('a value with a ttl survives a failover with its expiry, and mput takes ttlMs per entry', async () => {
    const m = await http('POST', `${R}/mput`, { entries: [{ key: 'm1', value: 'a', ttlMs: 2500 }, { key: 'm2', value: 'b' }] });
    expect(m.body.results.map((r: { ok: boolean }) => r.ok)).toEqual([true, true]);
    const s = await nodesOf('m1');
    const before = (await shardView(cluster, s.id)).epoch;
    const fo = await http('POST', `${R}/admin/failover?shard=${s.id}`, undefined, { authorization: `Bearer ${cluster.token}` });
    expect(fo.status).toBe(200);
    await waitFor('the new leader to serve m1', cluster, async () => (await get(R, 'm1')).status === 200);
    expect((await shardView(cluster, s.id)).epoch).toBeGreaterThan(before);
    const mget = await http('POST', `${R}/mget`, { keys: ['m1', 'm2'] });
    expect(mget.body.results[0]).toMatchObject({ ok: true, value: 'a', ttlMs: expect.any(Number) });
    expect(mget.body.results[1]).toMatchObject({ ok: true, value: 'b', version: expect.any(Number) });
    expect(mget.body.results[1].ttlMs).toBeUndefined();
    await new Promise((r) => setTimeout(r, 2600));
    expect((await get(R, 'm1')).status).toBe(404);
    expect((await get(R, 'm2')).status).toBe(200);
  }, 30_000);

  test('a bad ttlMs is a 400 and writes nothing', async () => {
    for (const ttlMs of [0, -1, 1.5, '100', 10 * 366 * 24 * 3600 * 1000]) {
      const r = await put({ key: 'badttl', value: 'v', ttlMs });
      expect([r.status, r.body.error.code]).toEqual([400, 'invalid_body']);
    }
    expect((await get(R, 'badttl')).status).toBe(404);
  });
});

describe('the typed client and the kv CLI', () => {
  test('incr, conditional put and delete, versions and ttl', async () => {
    const c = new KvClient(R);
    try {
      expect(await c.incr('cli-counter', 4)).toMatchObject({ value: 4 });
      const { version } = await c.put('cli-doc', 'a', { ttlMs: 60_000 });
      expect(await c.getEntry('cli-doc')).toMatchObject({ value: 'a', version, ttlMs: expect.any(Number) });
      const err = await c.put('cli-doc', 'b', { ifVersion: version + 1000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KvClientError);
      expect(err).toMatchObject({ code: 'version_mismatch', status: 412, outcome: 'definite', details: { version } });
      expect(await c.delete('cli-doc', { ifVersion: version })).toBe(true);
    } finally {
      await c.close();
    }
    expect((await kv(R, ['incr', 'cli-counter', '-6'])).stdout).toBe('-2\n');
    expect((await kv(R, ['put', 'cli-once', 'x', '--if-absent'])).code).toBe(0);
    const again = await kv(R, ['put', 'cli-once', 'y', '--if-absent']);
    expect([again.code, again.stderr]).toEqual([3, expect.stringMatching(/version_mismatch.*current version: \d+/)]);
    const shown = JSON.parse((await kv(R, ['version', 'cli-once'])).stdout);
    expect(shown).toMatchObject({ key: 'cli-once', value: 'x', version: expect.any(Number) });
    expect((await kv(R, ['put', 'cli-once', 'z', '--if-version', String(shown.version)])).code).toBe(0);
  }, 60_000);
});

describe('exactly-once retries (Idempotency-Key)', () => {
  const incrWith = (key: string, idem: string, timeoutMs = 10_000) => http('POST', `${R}/incr`, { key, by: 1 }, { 'idempotency-key': idem }, timeoutMs);
  const nodeNamed = (url: string) => {
    for (const s of cluster.shards) for (const n of [s.leader, s.follower]) if (n.url === url) return n.name;
    throw new Error(`no node at ${url}`);
  };

  test('an increment whose answer was lost (a paused follower) retried with its key changes the counter once, also after a failover', async () => {
    expect((await incr('once-counter')).body.value).toBe('1');
    const s = await nodesOf('once-counter');
    const follower = cluster.process(nodeNamed(s.follower));
    follower.signal('SIGSTOP');
    let lost;
    try {
      // The leader cannot commit it at once with its follower paused; the client gives up after
      // 300 ms: its answer is lost, the write may or may not be applied (it is, later).
      lost = await attempt(() => incrWith('once-counter', 'retry-1', 300));
    } finally {
      follower.signal('SIGCONT');
    }
    expect(lost.status).toBe(0);
    // Sent again with the same key until it is answered: whatever happened to the first attempt,
    // the counter moves once, and every answer is the first one's.
    let retried;
    await waitFor('the retry to be answered', cluster, async () => (retried = await incrWith('once-counter', 'retry-1')).status === 200, 20_000);
    expect(retried!.body.value).toBe('2');
    expect((await get(R, 'once-counter')).body.value).toBe('2');
    // The record travelled with the write: the other node, promoted, still knows the key.
    await waitFor('the shard to be in sync', cluster, async () => (await shardView(cluster, s.id)).inSync === true, 20_000);
    const fo = await http('POST', `${R}/admin/failover?shard=${s.id}`, undefined, { authorization: `Bearer ${cluster.token}` });
    expect(fo.status).toBe(200);
    let afterFailover;
    await waitFor('the new leader to answer', cluster, async () => (afterFailover = await incrWith('once-counter', 'retry-1')).status === 200, 20_000);
    expect(afterFailover!.body).toEqual(retried!.body);
    expect((await get(R, 'once-counter')).body.value).toBe('2');
    // Another key is another write.
    let next;
    await waitFor('a new key to be applied', cluster, async () => (next = await incrWith('once-counter', 'retry-2')).status === 200, 20_000);
    expect(next!.body.value).toBe('3');
  }, 90_000);

  test('the same key on another data key, and a bad key', async () => {
    expect((await incrWith('other-counter', 'retry-1')).body.value).toBe('1');
    const bad = await http('POST', `${R}/put`, { key: 'x', value: 'v' }, { 'idempotency-key': 'has space' });
    expect([bad.status, bad.body.error.code]).toEqual([400, 'bad_request']);
    const reserved = await http('POST', `${R}/put`, { key: '\u0000idem\u0000x', value: 'v' });
    expect([reserved.status, reserved.body.error.code]).toEqual([400, 'invalid_key']);
  });
});
