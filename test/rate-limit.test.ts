import { KvClient, KvClientError } from '@shardkv/client';
import { request } from 'undici';
import { kv, startCluster, type TestCluster } from './helpers';

/**
 * Per-client rate limits through a real router (one shard, so it starts fast): over its limit a
 * client gets 429 `rate_limited` with Retry-After and nothing of that request is applied; other
 * clients, and the cluster's own and the operators' routes, are not limited; after the window the
 * client is served again; the typed client and `kv` report it as a definite error.
 */
const REQUESTS = 3;
const WINDOW_MS = 2000;
let cluster: TestCluster;
let R: string;

beforeAll(async () => {
  cluster = await startCluster({ shardCount: 1, env: { RATE_LIMIT_REQUESTS: String(REQUESTS), RATE_LIMIT_WINDOW_MS: String(WINDOW_MS) } });
  R = cluster.router.url;
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});

interface Answer {
  status: number;
  body: any;
  retryAfter: string | undefined;
}

async function call(method: 'GET' | 'POST' | 'DELETE', path: string, token?: string, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(`${R}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(5000) });
  const text = await res.body.text();
  const retryAfter = res.headers['retry-after'];
  return { status: res.statusCode, body: text.startsWith('{') ? JSON.parse(text) : text, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter };
}

const put = (token: string | undefined, key: string, value: string) => call('POST', '/put', token, { key, value });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('over its limit a client gets 429 rate_limited with Retry-After; the refused write is not applied; after the window it is served again', async () => {
  for (let i = 0; i < REQUESTS; i += 1) expect((await put('token-a', `a-${i}`, 'v')).status).toBe(200);
  const refused = await put('token-a', 'a-refused', 'never');
  expect(refused.status).toBe(429);
  expect(refused.body.error.code).toBe('rate_limited');
  expect(refused.body.error.message).toMatch(/rate limit/);
  expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
  expect(Number(refused.retryAfter)).toBeLessThanOrEqual(Math.ceil(WINDOW_MS / 1000));
  expect(refused.body.error.retryAfterMs).toBeLessThanOrEqual(WINDOW_MS);
  // Every data route counts against the same allowance.
  expect((await call('GET', '/get?key=a-0', 'token-a')).status).toBe(429);
  expect((await call('POST', '/mget', 'token-a', { keys: ['a-0'] })).status).toBe(429);

  // Not counted: liveness, status, metrics, the map the cluster and direct clients read, the console.
  for (const path of ['/health', '/status', '/metrics', '/cluster/map', '/']) expect([path, (await call('GET', path, 'token-a')).status]).toEqual([path, 200]);
  // Another token, and a client without one (named by its address), have their own allowances.
  expect((await put('token-b', 'b-0', 'v')).status).toBe(200);
  expect((await put(undefined, 'addr-0', 'v')).status).toBe(200);

  await sleep(refused.body.error.retryAfterMs + 100);
  const after = await call('GET', '/get?key=a-refused', 'token-a');
  expect(after.status).toBe(404); // served again, and the write refused with 429 was never applied
  expect(after.body.error.code).toBe('key_not_found');
  expect((await call('GET', '/get?key=a-0', 'token-a')).body).toEqual({ key: 'a-0', value: 'v', version: expect.any(Number) });
});

test('an mput counts as one request whatever it holds', async () => {
  const entries = Array.from({ length: 200 }, (_, i) => ({ key: `m-${i}`, value: 'v' }));
  for (let i = 0; i < REQUESTS; i += 1) {
    const r = await call('POST', '/mput', 'token-batch', { entries });
    expect([r.status, r.body.ok]).toEqual([200, 200]);
  }
  expect((await call('POST', '/mput', 'token-batch', { entries })).status).toBe(429);
});

test('the metrics count limited requests by operation and kind of client, never naming the client', async () => {
  const secret = 'token-metrics-secret';
  for (let i = 0; i <= REQUESTS; i += 1) await call('DELETE', '/delete?key=x', secret);
  const text = (await call('GET', '/metrics')).body as string;
  expect(text).toMatch(/shardkv_router_rate_limited_total\{op="delete",client="token"\} [1-9]/);
  expect(text).toMatch(/shardkv_router_errors_total\{code="rate_limited"\} [1-9]/);
  expect(text).not.toContain(secret);
});

test('the typed client and kv report rate_limited as a definite error', async () => {
  const client = new KvClient(R, { token: 'token-client' });
  try {
    for (let i = 0; i < REQUESTS; i += 1) await client.put(`c-${i}`, 'v');
    const err = await client.put('c-refused', 'v').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(KvClientError);
    expect(err).toMatchObject({ status: 429, code: 'rate_limited', outcome: 'definite' });
    expect((err as KvClientError).retryAfterMs).toBeGreaterThan(0);
  } finally {
    await client.close();
  }

  for (let i = 0; i < REQUESTS; i += 1) expect((await put('token-cli', `cli-${i}`, 'v')).status).toBe(200);
  const r = await kv(R, ['put', 'cli-refused', 'v'], 20_000, { KV_TOKEN: 'token-cli' });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/^kv: rate_limited: .*retry in \d+ s/);
  expect(r.stderr).not.toMatch(/may or may not have been applied/);
});
