// Direct routing against real HTTP servers on free ports: one plays the router (serving
// /cluster/map and, as a fallback, the key API), two play shard leaders. Proves one hop to the
// owner, a re-read map after wrong_shard / migrating, one map fetch per wave, the deadline
// bounding retries, and that indeterminate failures are never retried.
import { slotOf, type ClusterMap } from '@shardkv/common';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KvClient, KvClientError } from '.';

type Handler = (req: IncomingMessage, body: string) => { status: number; body: unknown };

interface Fake {
  url: string;
  server: Server;
  /** Paths requested, in order. */
  seen: string[];
  /** The Idempotency-Key of each request ('' when none), in order. */
  idems: string[];
  handler: Handler;
}

async function fake(handler: Handler): Promise<Fake> {
  const f: Fake = { url: '', server: createServer(), seen: [], idems: [], handler };
  f.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      f.seen.push(`${req.method} ${req.url}`);
      f.idems.push(String(req.headers['idempotency-key'] ?? ''));
      const answer = f.handler(req, body);
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => f.server.listen(0, '127.0.0.1', resolve));
  f.url = `http://127.0.0.1:${(f.server.address() as AddressInfo).port}`;
  return f;
}

const error = (status: number, code: string) => ({ status, body: { error: { code, message: code } } });

/** A leader that stores what it is sent, answering like services/shard/src/app.ts. */
function leaderHandler(name: string, data = new Map<string, string>()): Handler {
  return (req, raw) => {
    const url = new URL(req.url!, 'http://x');
    const body = raw === '' ? {} : (JSON.parse(raw) as { key?: string; value?: string; entries?: Array<{ key: string; value: string }>; keys?: string[] });
    if (url.pathname === '/put') return data.set(body.key!, body.value!), { status: 200, body: { key: body.key, seq: 1, by: name } };
    if (url.pathname === '/get') {
      const value = data.get(url.searchParams.get('key')!);
      return value === undefined ? error(404, 'key_not_found') : { status: 200, body: { key: url.searchParams.get('key'), value } };
    }
    if (url.pathname === '/mput') return { status: 200, body: { results: body.entries!.map((e) => (data.set(e.key, e.value), { key: e.key, ok: true, seq: 1 })) } };
    if (url.pathname === '/mget') return { status: 200, body: { results: body.keys!.map((k) => ({ key: k, ok: true, value: `${name}:${k}` })) } };
    return error(404, 'route_not_found');
  };
}

/** A key whose slot is below (low) or at/above (high) the middle. */
function keyIn(half: 'low' | 'high', n = 0): string {
  let found = -1;
  for (let i = 0; ; i += 1) {
    const k = `k${i}`;
    if ((slotOf(k) < 2048) === (half === 'low') && ++found === n) return k;
  }
}

let router: Fake;
let a: Fake;
let b: Fake;
let map: ClusterMap;
const clients: KvClient[] = [];

function mapOf(version: number, slots: ClusterMap['slots']): ClusterMap {
  return {
    version,
    slotCount: 4096,
    slotHash: 'md5-le32-top12',
    shards: [
      { id: 'shard-a', leader: a.url, follower: 'http://127.0.0.1:1', epoch: 1 },
      { id: 'shard-b', leader: b.url, follower: 'http://127.0.0.1:1', epoch: 1 },
    ],
    slots,
    migration: null,
  };
}
const split = (): ClusterMap['slots'] => [
  [0, 2048, 'shard-a'],
  [2048, 4096, 'shard-b'],
];
const allOnB: ClusterMap['slots'] = [[0, 4096, 'shard-b']];

function client(timeoutMs = 2_000): KvClient {
  const c = new KvClient(router.url, { routing: 'direct', timeoutMs });
  clients.push(c);
  return c;
}
const mapFetches = () => router.seen.filter((s) => s === 'GET /cluster/map').length;

beforeEach(async () => {
  [a, b] = [await fake(leaderHandler('a')), await fake(leaderHandler('b'))];
  map = mapOf(1, split());
  router = await fake((req) => (req.url === '/cluster/map' ? { status: 200, body: map } : { status: 200, body: { key: 'via-router', value: 'router', seq: 9, deleted: true } }));
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const f of [router, a, b]) f.server.closeAllConnections(), f.server.close();
});

test('sends each key to the leader owning its slot, in one hop, fetching the map once', async () => {
  const c = client();
  await c.put(keyIn('low'), 'x');
  await c.put(keyIn('high'), 'y');
  expect(await c.get(keyIn('low'))).toBe('x');
  expect(await c.get(keyIn('high', 1))).toBeUndefined();
  expect(a.seen).toEqual(['POST /put', `GET /get?key=${keyIn('low')}`]);
  expect(b.seen).toEqual(['POST /put', `GET /get?key=${keyIn('high', 1)}`]);
  expect(router.seen).toEqual(['GET /cluster/map']);
});

test('wrong_shard makes the client re-read the map and go to the other leader', async () => {
  const c = client();
  await c.get(keyIn('high')); // loads the map
  a.handler = () => error(409, 'wrong_shard');
  map = mapOf(2, allOnB); // the slot moved to shard-b
  expect((await c.put(keyIn('low'), 'moved')).seq).toBe(1);
  expect(a.seen.at(-1)).toBe('POST /put');
  expect(b.seen.at(-1)).toBe('POST /put');
  expect(mapFetches()).toBe(2);
});

test('migrating is retried after a backoff and then succeeds', async () => {
  const c = client();
  let refusals = 1;
  a.handler = (req, body) => (refusals-- > 0 ? error(503, 'migrating') : leaderHandler('a')(req, body));
  const started = Date.now();
  await c.put(keyIn('low'), 'after-cutover');
  expect(Date.now() - started).toBeGreaterThanOrEqual(20);
  expect(a.seen).toEqual(['POST /put', 'POST /put']);
  expect(mapFetches()).toBe(2);
});

test('the deadline ends retries: a slot frozen for longer than timeoutMs fails definite, in time', async () => {
  const c = client(300);
  a.handler = () => error(503, 'migrating');
  const started = Date.now();
  const err = (await c.put(keyIn('low'), 'never').catch((e: unknown) => e)) as KvClientError;
  expect(err).toBeInstanceOf(KvClientError);
  expect({ code: err.code, outcome: err.outcome }).toEqual({ code: 'migrating', outcome: 'definite' });
  expect(Date.now() - started).toBeLessThan(600);
  expect(a.seen.length).toBeGreaterThan(1);
});

test('an indeterminate write is sent again with the same Idempotency-Key, at most writeRetries times, then reported', async () => {
  const c = client();
  a.handler = () => error(504, 'replication_timeout');
  const err = (await c.put(keyIn('low'), 'maybe').catch((e: unknown) => e)) as KvClientError;
  expect({ code: err.code, outcome: err.outcome }).toEqual({ code: 'replication_timeout', outcome: 'indeterminate' });
  expect(a.seen).toEqual(['POST /put', 'POST /put', 'POST /put']);
  expect(new Set(a.idems).size).toBe(1);
  expect(a.idems[0]).toMatch(/^[0-9a-f-]{36}$/);
  expect(mapFetches()).toBe(1);
  // A second write is another key; with writeRetries 0 nothing is resent.
  const once = new KvClient(router.url, { routing: 'direct', writeRetries: 0 });
  clients.push(once);
  await once.put(keyIn('low'), 'maybe').catch(() => undefined);
  expect(a.seen).toHaveLength(4);
  expect(a.idems[3]).not.toBe(a.idems[0]);
});

test('a resend refused definitely after an attempt without an answer is still indeterminate: the first may commit', async () => {
  const c = client();
  let n = 0;
  a.handler = () => ((n += 1) === 1 ? error(504, 'replication_timeout') : error(503, 'no_replica'));
  const err = (await c.incr(keyIn('low')).catch((e: unknown) => e)) as KvClientError;
  expect({ code: err.code, outcome: err.outcome }).toEqual({ code: 'replication_timeout', outcome: 'indeterminate' });
  expect(a.seen).toEqual(['POST /incr', 'POST /incr', 'POST /incr']);
});

test('a wave of refusals on one map costs one map fetch', async () => {
  const c = client();
  await c.get(keyIn('high'));
  a.handler = () => error(409, 'not_leader');
  map = mapOf(2, allOnB);
  await Promise.all(Array.from({ length: 20 }, (_, i) => c.put(keyIn('low', i), 'v')));
  expect(mapFetches()).toBe(2);
  expect(b.seen.filter((s) => s === 'POST /put').length).toBe(20);
});

test('a map without slots, or with an unknown slot hash, routes everything through the router', async () => {
  map = { ...mapOf(1, null) };
  expect(await client().get(keyIn('low'))).toBe('router');
  map = { ...mapOf(1, split()), slotHash: 'crc16' as 'md5-le32-top12' };
  expect(await client().get(keyIn('high'))).toBe('router');
  expect(a.seen.length + b.seen.length).toBe(0);
});

test('a router without /cluster/map (404) is used for everything', async () => {
  router.handler = (req) => (req.url === '/cluster/map' ? error(404, 'route_not_found') : { status: 200, body: { value: 'router' } });
  expect(await client().get(keyIn('low'))).toBe('router');
});

test('a leader that refuses connections: the call goes through the router (it was never sent)', async () => {
  const c = client();
  map = { ...mapOf(1, split()), shards: [{ ...map.shards[0]!, leader: 'http://127.0.0.1:1' }, map.shards[1]!] };
  expect(await c.get(keyIn('low'))).toBe('router');
});

test('mput and mget split per leader, keep the order, and re-send the entries refused by wrong_shard', async () => {
  const c = client();
  const keys = [keyIn('low', 0), keyIn('high', 0), keyIn('low', 1), keyIn('high', 1)];
  const got = await c.mget(keys);
  expect(got.results.map((r) => (r.ok ? r.value : r.error.code))).toEqual(['a:' + keys[0], 'b:' + keys[1], 'a:' + keys[2], 'b:' + keys[3]]);
  a.handler = (req, raw) => ({ status: 200, body: { results: (JSON.parse(raw) as { entries: Array<{ key: string }> }).entries.map((e) => ({ key: e.key, ok: false, error: { code: 'wrong_shard', message: 'moved' }, outcome: 'definite' })) } });
  map = mapOf(2, allOnB);
  const put = await c.mput(keys.map((key, i) => ({ key, value: `v${i}` })));
  expect({ ok: put.ok, failed: put.failed, keys: put.results.map((r) => r.key) }).toEqual({ ok: 4, failed: 0, keys });
  expect(b.seen.filter((s) => s === 'POST /mput').length).toBe(2);
});

test('a batch with a bad entry is refused whole before anything is sent', async () => {
  const err = (await client().mput([{ key: keyIn('low'), value: 'x' }, { key: '', value: 'y' }]).catch((e: unknown) => e)) as KvClientError;
  expect({ status: err.status, code: err.code, outcome: err.outcome }).toEqual({ status: 400, code: 'invalid_body', outcome: 'definite' });
  expect(a.seen.length + b.seen.length).toBe(0);
});
