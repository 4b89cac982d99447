// The client against routers that rate-limit it, played by real HTTP servers on free ports: a 429
// is a definite `rate_limited` error with its wait, a call one router refuses goes to the next
// (each router enforces only its share), and the token names the client on data calls only.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KvClient, KvClientError } from '.';

interface FakeRouter {
  url: string;
  server: Server;
  /** `METHOD path authorization` of every request, in order. */
  seen: string[];
  /** Answer 429 (with this body's retryAfterMs and header) or serve. */
  limited: boolean;
}

async function fakeRouter(limited: boolean, retryAfter = { ms: 1234, header: '2' }): Promise<FakeRouter> {
  const f: FakeRouter = { url: '', server: createServer(), seen: [], limited };
  f.server.on('request', (req: IncomingMessage, res) => {
    req.resume();
    req.on('end', () => {
      f.seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? '-'}`);
      if (f.limited) {
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': retryAfter.header });
        res.end(JSON.stringify({ error: { code: 'rate_limited', message: 'over the rate limit', retryAfterMs: retryAfter.ms } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ key: 'k', seq: 7, value: 'v', shard: 'x' }));
    });
  });
  await new Promise<void>((r) => f.server.listen(0, '127.0.0.1', r));
  f.url = `http://127.0.0.1:${(f.server.address() as AddressInfo).port}`;
  return f;
}

const routers: FakeRouter[] = [];
const clients: KvClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(routers.splice(0).map((r) => new Promise((done) => r.server.close(done))));
});

async function setUp(limited: boolean[], opts = {}): Promise<{ client: KvClient; rs: FakeRouter[] }> {
  const rs = await Promise.all(limited.map((l) => fakeRouter(l)));
  routers.push(...rs);
  const client = new KvClient(rs.map((r) => r.url), { timeoutMs: 2000, ...opts });
  clients.push(client);
  return { client, rs };
}

async function failure(p: Promise<unknown>): Promise<KvClientError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(KvClientError);
  return err as KvClientError;
}

test('a 429 is a definite rate_limited error that says how long to wait', async () => {
  const { client } = await setUp([true]);
  const err = await failure(client.put('k', 'v'));
  expect(err).toMatchObject({ status: 429, code: 'rate_limited', outcome: 'definite', retryAfterMs: 1234 });
});

test('without retryAfterMs in the body, the wait is Retry-After (seconds); a 429 without a code is still rate_limited', async () => {
  const f = await fakeRouter(true);
  routers.push(f);
  f.server.removeAllListeners('request');
  f.server.on('request', (req: IncomingMessage, res) => {
    req.resume();
    res.writeHead(429, { 'retry-after': '3' }).end();
  });
  const client = new KvClient(f.url, { timeoutMs: 2000 });
  clients.push(client);
  expect(await failure(client.get('k'))).toMatchObject({ status: 429, code: 'rate_limited', outcome: 'definite', retryAfterMs: 3000 });
});

test('a call one router refuses with 429 goes to the next, which later calls start at', async () => {
  const { client, rs } = await setUp([true, false]);
  expect(await client.put('k', 'v')).toMatchObject({ seq: 7 });
  expect(rs[0]!.seen).toHaveLength(1);
  expect(rs[1]!.seen).toHaveLength(1);
  expect(await client.get('k')).toBe('v');
  expect(rs[0]!.seen).toHaveLength(1);
  expect(rs[1]!.seen).toHaveLength(2);
});

test('when every router refuses, each is asked once and the error is rate_limited', async () => {
  const { client, rs } = await setUp([true, true, true]);
  expect(await failure(client.mput([{ key: 'a', value: '1' }]))).toMatchObject({ code: 'rate_limited', outcome: 'definite' });
  expect(rs.map((r) => r.seen.length)).toEqual([1, 1, 1]);
});

test('the token goes with data calls, the admin token with /admin/* calls', async () => {
  const { client, rs } = await setUp([false], { token: 'client-t', adminToken: 'admin-t' });
  await client.put('k', 'v');
  await client.get('k');
  await client.failover('0').catch(() => undefined);
  expect(rs[0]!.seen).toEqual(['POST /put Bearer client-t', 'GET /get?key=k Bearer client-t', 'POST /admin/failover?shard=0 Bearer admin-t']);
});
