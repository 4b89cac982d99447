// The per-client rate limit without a cluster: how a client is named (a token only ever as its
// hash), the fixed window on an injected clock, and the middleware's 429 through a real Koa server.
import { errorMiddleware, type Logger } from '@shardkv/common';
import Koa from 'koa';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { ClientLimiter, clientOf, limitClients, retryAfterSeconds, type ClientKind } from './rate-limit';

describe('clientOf', () => {
  test('names a client by the hash of its bearer token, never the token itself', () => {
    const token = 'secret-token-123';
    const c = clientOf(`Bearer ${token}`, '10.0.0.1');
    expect(c.kind).toBe('token');
    expect(c.key).toMatch(/^t:[A-Za-z0-9_-]{22}$/);
    expect(c.key).not.toContain(token);
    expect(clientOf(`bearer ${token}`, '10.0.0.2')).toEqual(c); // the scheme in any case, any address
    expect(clientOf('Bearer another-token', '10.0.0.1').key).not.toBe(c.key);
  });

  test('without a bearer token, names the client by its remote address', () => {
    expect(clientOf('', '127.0.0.1')).toEqual({ kind: 'address', key: 'a:127.0.0.1' });
    expect(clientOf('Basic dXNlcjpwYXNz', '::1')).toEqual({ kind: 'address', key: 'a:::1' });
    expect(clientOf('Bearer ', '::1')).toEqual({ kind: 'address', key: 'a:::1' });
    expect(clientOf('Bearer a b', '::1').kind).toBe('address');
    expect(clientOf('', undefined).key).toBe('a:unknown');
  });
});

test('Retry-After is whole seconds rounded up, never 0', () => {
  expect([0, 1, 999, 1000, 1001, 59_001].map(retryAfterSeconds)).toEqual([1, 1, 1, 1, 2, 60]);
});

describe('ClientLimiter', () => {
  beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => jest.useRealTimers());

  test('allows requestsPerWindow per client per window, then refuses until the window ends', async () => {
    const l = new ClientLimiter({ requestsPerWindow: 3, windowMs: 2000 });
    for (let i = 0; i < 3; i += 1) expect(await l.take('a')).toEqual({ ok: true });
    jest.advanceTimersByTime(500);
    expect(await l.take('a')).toEqual({ ok: false, retryAfterMs: 1500 });
    expect(await l.take('a')).toEqual({ ok: false, retryAfterMs: 1500 }); // a refused request does not stretch the window
    jest.advanceTimersByTime(1500);
    expect(await l.take('a')).toEqual({ ok: true });
  });

  test('clients are counted apart', async () => {
    const l = new ClientLimiter({ requestsPerWindow: 1, windowMs: 1000 });
    expect(await l.take('t:one')).toEqual({ ok: true });
    expect((await l.take('t:one')).ok).toBe(false);
    expect(await l.take('t:two')).toEqual({ ok: true });
    expect(await l.take('a:127.0.0.1')).toEqual({ ok: true });
  });

  test('refuses limits that would allow nothing', () => {
    expect(() => new ClientLimiter({ requestsPerWindow: 0, windowMs: 1000 })).toThrow(/requestsPerWindow/);
    expect(() => new ClientLimiter({ requestsPerWindow: 1, windowMs: 0 })).toThrow(/windowMs/);
  });
});

describe('limitClients', () => {
  let server: Server;
  let url: string;
  let handled = 0;
  const limited: ClientKind[] = [];
  const silent = { error() {}, warn() {}, info() {} } as unknown as Logger;

  beforeAll(async () => {
    const app = new Koa();
    app.use(errorMiddleware(silent));
    const limit = limitClients(new ClientLimiter({ requestsPerWindow: 2, windowMs: 60_000 }), (kind) => limited.push(kind));
    app.use(limit);
    app.use((ctx) => {
      handled += 1;
      ctx.body = { ok: true };
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  const call = (token?: string) => fetch(`${url}/put`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });

  test('answers 429 rate_limited with Retry-After over the limit, without running the route', async () => {
    expect((await call('t1')).status).toBe(200);
    expect((await call('t1')).status).toBe(200);
    const res = await call('t1');
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('60');
    const body = (await res.json()) as { error: { code: string; message: string; retryAfterMs: number } };
    expect(body.error.code).toBe('rate_limited');
    expect(body.error.message).toMatch(/2 requests per 60000 ms/);
    expect(body.error.retryAfterMs).toBeGreaterThan(59_000);
    expect(body.error.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(handled).toBe(2);
    expect(limited).toEqual(['token']);
  });

  test('another token, and a client without one, have allowances of their own', async () => {
    expect((await call('t2')).status).toBe(200);
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(429);
    expect(limited).toEqual(['token', 'address']);
  });
});
