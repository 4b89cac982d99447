import { freshPlacement } from '@shardkv/router/dist/placement';
import { del, get, http, put, startCluster, status, type TestCluster } from './helpers';

/** The public API through the router, against the real 7-process cluster. */
let cluster: TestCluster;
let R: string;

beforeAll(async () => {
  cluster = await startCluster();
  R = cluster.router.url;
});
afterAll(async () => {
  await cluster?.stop();
});

const AWKWARD_KEYS = ['plain', 'with space', 'a&b=c', 'slash/and?query', '100%', '#hash', 'plus+sign', '😀 emoji', 'é', ' ', '\t\n', 'k'.repeat(1024)];

describe('public API', () => {
  test('put, get and delete round-trip awkward keys exactly', async () => {
    for (const key of AWKWARD_KEYS) {
      const p = await put(R, key, `value of ${key}`);
      expect(p.status).toBe(200);
      expect(p.body).toEqual({ key, seq: expect.any(Number), version: p.body.seq });
      expect((await get(R, key)).body).toEqual({ key, value: `value of ${key}`, version: p.body.version });
    }
    for (const key of AWKWARD_KEYS) {
      expect((await del(R, key)).body).toEqual({ key, deleted: true, seq: expect.any(Number) });
      expect((await get(R, key)).status).toBe(404);
    }
  });

  test('an absent key is a 404 error; deleting it answers deleted:false', async () => {
    const g = await get(R, 'never-written');
    expect(g.status).toBe(404);
    expect(g.body.error.code).toBe('key_not_found');
    const d = await del(R, 'never-written');
    expect(d.status).toBe(200);
    expect(d.body).toMatchObject({ key: 'never-written', deleted: false });
  });

  test('the empty string and a 1 MiB value are values like any other', async () => {
    expect((await put(R, 'empty', '')).status).toBe(200);
    expect((await get(R, 'empty')).body).toEqual({ key: 'empty', value: '', version: expect.any(Number) });
    const big = 'é'.repeat(512 * 1024); // exactly 1 MiB of UTF-8
    expect((await put(R, 'big', big)).status).toBe(200);
    expect((await get(R, 'big')).body.value).toBe(big);
  });

  test('a later write to a key wins', async () => {
    await put(R, 'counter', '1');
    await put(R, 'counter', '2');
    expect((await get(R, 'counter')).body.value).toBe('2');
  });

  test('concurrent requests, coalesced by the router into per-shard batches, each get their own answer', async () => {
    // 300 at once: the router sends them to the leaders in batches (puts and deletes mixed in one
    // write batch, reads in another), and must hand every client exactly its own result.
    const keys = Array.from({ length: 300 }, (_, i) => `co-${i}`);
    const puts = await Promise.all(keys.map((k) => put(R, k, `v-${k}`)));
    expect(puts.map((r) => [r.status, r.body.key])).toEqual(keys.map((k) => [200, k]));
    const mixed = await Promise.all(keys.map((k, i) => (i % 3 === 0 ? del(R, k) : i % 3 === 1 ? get(R, k) : del(R, `never-${k}`))));
    mixed.forEach((r, i) => {
      const k = keys[i]!;
      if (i % 3 === 0) expect(r.body).toEqual({ key: k, deleted: true, seq: expect.any(Number) });
      if (i % 3 === 1) expect(r.body).toEqual({ key: k, value: `v-${k}`, version: expect.any(Number) });
      if (i % 3 === 2) expect(r.body).toEqual({ key: `never-${k}`, deleted: false, seq: expect.any(Number) });
    });
    const after = await Promise.all(keys.map((k) => get(R, k)));
    after.forEach((r, i) => expect(r.status).toBe(i % 3 === 0 ? 404 : 200));
    expect(after[0]!.body.error).toMatchObject({ code: 'key_not_found', key: 'co-0' });
    // Sequence numbers of one shard are never handed out twice, however the writes were grouped.
    const ring = freshPlacement(cluster.shards.map((x) => x.id));
    for (const shard of cluster.shards) {
      const seqs = puts.filter((_, i) => ring.shardFor(keys[i]!) === shard.id).map((r) => r.body.seq as number);
      expect(seqs.length).toBeGreaterThan(0);
      expect(new Set(seqs).size).toBe(seqs.length);
    }
  });

  test('health and status answer JSON for the router and every shard', async () => {
    expect((await http('GET', `${R}/health`)).body).toMatchObject({ status: 'ok' });
    const s = await status(R);
    expect(s.shards.map((x: { id: string }) => x.id)).toEqual(['shard-0', 'shard-1', 'shard-2']);
    for (const shard of s.shards) {
      expect(shard.leader).toMatchObject({ reachable: true, role: 'leader', state: 'serving' });
      expect(shard.follower).toMatchObject({ reachable: true, role: 'follower' });
      // XXH3-128 sum (digest.ts): 32 hex digits.
      expect(shard.leader.digest).toMatch(/^[0-9a-f]{32}$/);
    }
  });
});

describe('bad input gets a clear 4xx JSON error and changes nothing', () => {
  const json = { 'content-type': 'application/json' };
  const cases: Array<[string, () => Promise<{ status: number; body: any }>, number, string]> = [
    ['malformed JSON', () => http('POST', `${R}/put`, '{"key": "a",', json), 400, 'invalid_json'],
    ['a body that is an array', () => http('POST', `${R}/put`, '[1,2]', json), 400, 'invalid_body'],
    ['a body that is a string', () => http('POST', `${R}/put`, '"key"', json), 400, 'invalid_body'],
    ['an empty body', () => http('POST', `${R}/put`, '', json), 400, 'invalid_json'],
    ['a body that is not UTF-8', () => http('POST', `${R}/put`, Buffer.from('{"key":"bad\xff\xfe","value":"v"}', 'latin1'), json), 400, 'invalid_json'],
    ['a compressed body', () => http('POST', `${R}/put`, '{"key":"k","value":"v"}', { ...json, 'content-encoding': 'gzip' }), 415, 'unsupported_media_type'],
    ['a URL over the header limit', () => http('GET', `${R}/get?key=${'k'.repeat(20_000)}`), 431, 'headers_too_large'],
    ['a missing key', () => http('POST', `${R}/put`, { value: 'v' }), 400, 'invalid_key'],
    ['an empty key', () => http('POST', `${R}/put`, { key: '', value: 'v' }), 400, 'invalid_key'],
    ['a non-string key', () => http('POST', `${R}/put`, { key: 7, value: 'v' }), 400, 'invalid_key'],
    ['a non-string value', () => http('POST', `${R}/put`, { key: 'k', value: { a: 1 } }), 400, 'invalid_value'],
    ['a missing value', () => http('POST', `${R}/put`, { key: 'k' }), 400, 'invalid_value'],
    ['a key over 1024 bytes', () => http('POST', `${R}/put`, { key: 'k'.repeat(1025), value: 'v' }), 400, 'invalid_key'],
    ['a value over 1 MiB', () => http('POST', `${R}/put`, { key: 'k', value: 'v'.repeat(1024 * 1024 + 1) }), 413, 'value_too_large'],
    ['a body over 2 MiB', () => http('POST', `${R}/put`, { key: 'k', value: 'v'.repeat(2 * 1024 * 1024 + 10) }), 413, 'body_too_large'],
    ['a non-JSON content type', () => http('POST', `${R}/put`, 'key=k&value=v', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type'],
    ['no key parameter on get', () => http('GET', `${R}/get`), 400, 'invalid_key'],
    ['an invalid percent-encoding', () => http('GET', `${R}/get?key=%E0%A4%A`), 400, 'invalid_key'],
    ['a key given twice', () => http('DELETE', `${R}/delete?key=a&key=b`), 400, 'invalid_key'],
    ['an unknown path', () => http('GET', `${R}/nope`), 404, 'route_not_found'],
    ['a wrong method on a known path', () => http('PUT', `${R}/put`, { key: 'k', value: 'v' }), 405, 'method_not_allowed'],
    ['GET on /delete', () => http('GET', `${R}/delete?key=k`), 405, 'method_not_allowed'],
    ['an unusual method', () => http('PATCH', `${R}/get?key=k`), 405, 'method_not_allowed'],
  ];

  test.each(cases)('%s', async (_name, call, statusCode, code) => {
    const res = await call();
    expect(res.status).toBe(statusCode);
    expect(res.body).toEqual({ error: { code, message: expect.any(String) } });
  });

  test('after all of it the cluster is untouched: key "k" was never written, replicas agree', async () => {
    expect((await get(R, 'k')).status).toBe(404);
    const s = await status(R);
    for (const shard of s.shards) expect(shard.follower.digest).toBe(shard.leader.digest);
    expect((await put(R, 'still-works', 'yes')).status).toBe(200);
  });
});
