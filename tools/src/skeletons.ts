import Router from '@koa/router';
import Koa from 'koa';
import type { IncomingMessage } from 'node:http';
import { Pool } from 'undici';
import { freePort } from './ports';
import { Supervised, type LineSink } from './supervisor';

/**
 * Reference skeletons for `npm run bench`: the least a system built from our libraries (Koa,
 * @koa/router, undici) has to do to serve the same requests over the same number of hops. They
 * are the yardstick the performance targets are stated against:
 *
 *   (a) GET path, 2 hops:  client -> router -> backend (a Map)
 *   (b) PUT path, 3 hops:  client -> router -> leader -> follower (Maps); the leader forwards each
 *       PUT to the follower as one request and answers after the follower did; no batching, no
 *       durability. Its router and leader also serve GET (2 hops), so (b) can take the same 2:1
 *       GET:PUT mix as our router.
 *
 * Each role is a child process (one process per role, as in the real system, so the OS spreads
 * them over the cores the same way): this file is both the library the benchmark imports and the
 * entry point of each child (`SKELETON_ROLE`, `PORT`, `UPSTREAM_URL` in the environment).
 */
export type SkeletonRole = 'store' | 'forwarder' | 'replicating-leader';

export interface SkeletonNode {
  name: string;
  url: string;
  proc: Supervised;
}

export interface Skeletons {
  /** (a): the router of the 2-hop GET path. */
  getRouter: SkeletonNode;
  getBackend: SkeletonNode;
  /** (b): the router of the 3-hop PUT path (GET goes router -> leader). */
  putRouter: SkeletonNode;
  putLeader: SkeletonNode;
  putFollower: SkeletonNode;
  all: SkeletonNode[];
}

/** The same width as our router's upstream pools (UPSTREAM_CONNECTIONS default), for fairness. */
const UPSTREAM_CONNECTIONS = 64;
/** A bound on a PUT body (ours is far stricter); the skeleton must not buffer without limit. */
const BODY_BYTES_MAX = 1 << 20;

// ---- the benchmark's side: start and stop the five processes -------------------------------

/** Starts both skeletons as supervised child processes and waits until each answers /health. */
export async function startSkeletons(sink: LineSink, env: Record<string, string> = {}): Promise<Skeletons> {
  const node = async (name: string, role: SkeletonRole, upstream?: SkeletonNode): Promise<SkeletonNode> => {
    const port = await freePort();
    const spec = { name, script: __filename, env: { ...env, SKELETON_ROLE: role, PORT: String(port), UPSTREAM_URL: upstream?.url ?? '' } };
    const proc = new Supervised(spec, sink);
    proc.start();
    return { name, url: `http://127.0.0.1:${port}`, proc };
  };
  // Downstream first, so that each forwarder's upstream exists when it starts.
  const getBackend = await node('skel-a-backend', 'store');
  const getRouter = await node('skel-a-router', 'forwarder', getBackend);
  const putFollower = await node('skel-b-follower', 'store');
  const putLeader = await node('skel-b-leader', 'replicating-leader', putFollower);
  const putRouter = await node('skel-b-router', 'forwarder', putLeader);
  const s = { getRouter, getBackend, putRouter, putLeader, putFollower, all: [getBackend, getRouter, putFollower, putLeader, putRouter] };
  await Promise.all(s.all.map((n) => waitHealthy(n)));
  return s;
}

export async function stopSkeletons(s: Skeletons | undefined): Promise<void> {
  await Promise.all((s?.all ?? []).map((n) => n.proc.stop()));
}

async function waitHealthy(n: SkeletonNode, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const pool = new Pool(n.url, { connections: 1 });
  try {
    for (;;) {
      const ok = await pool.request({ method: 'GET', path: '/health' }).then(async (r) => (await r.body.dump(), r.statusCode === 200), () => false);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`${n.name} (${n.url}) not healthy after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await pool.close();
  }
}

// ---- the child's side: one role per process -------------------------------------------------

/** Reads the request body as a string; a minimal stand-in for a body parser, with a bound. */
async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > BODY_BYTES_MAX) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** `{key, value}` from a PUT body: the only parsing the skeleton does (ours also validates). */
function parsePut(text: string): { key: string; value: string } {
  const body = JSON.parse(text) as { key?: unknown; value?: unknown };
  if (typeof body.key !== 'string' || typeof body.value !== 'string') throw Object.assign(new Error('bad body'), { status: 400 });
  return { key: body.key, value: body.value };
}

/** GET /get from a Map: every skeleton node that holds data serves reads the same way. */
function getRoute(router: Router, map: Map<string, string>): void {
  router.get('/get', (ctx) => {
    const key = String(ctx.query['key'] ?? '');
    const value = map.get(key);
    if (value === undefined) ctx.throw(404);
    ctx.body = { key, value };
  });
}

/** A Map behind GET /get and POST /put: skeleton (a)'s backend and (b)'s follower. */
function storeRoutes(router: Router, map: Map<string, string>): void {
  getRoute(router, map);
  router.post('/put', async (ctx) => {
    const { key, value } = parsePut(await readBody(ctx.req));
    map.set(key, value);
    ctx.body = { ok: true };
  });
}

/** Passes an upstream answer through (status + body bytes), as our router does. */
async function forward(ctx: Koa.Context, pool: Pool, method: 'GET' | 'POST', path: string, body?: string): Promise<void> {
  const res = await pool.request({ method, path, body, headers: body === undefined ? undefined : { 'content-type': 'application/json' } });
  ctx.status = res.statusCode;
  ctx.type = 'application/json';
  ctx.body = Buffer.from(await res.body.arrayBuffer());
}

/** A router: parses the PUT body for its key (a real router needs it to pick a shard), forwards. */
function forwarderRoutes(router: Router, upstream: Pool): void {
  router.get('/get', (ctx) => forward(ctx, upstream, 'GET', `/get?key=${encodeURIComponent(String(ctx.query['key'] ?? ''))}`));
  router.post('/put', async (ctx) => {
    const text = await readBody(ctx.req);
    parsePut(text);
    await forward(ctx, upstream, 'POST', '/put', text);
  });
}

/** (b)'s leader: apply, send this one write to the follower, answer once the follower has. */
function leaderRoutes(router: Router, map: Map<string, string>, follower: Pool): void {
  getRoute(router, map);
  router.post('/put', async (ctx) => {
    const text = await readBody(ctx.req);
    const { key, value } = parsePut(text);
    map.set(key, value);
    const res = await follower.request({ method: 'POST', path: '/put', body: text, headers: { 'content-type': 'application/json' } });
    await res.body.dump();
    if (res.statusCode !== 200) ctx.throw(502, `follower answered ${res.statusCode}`);
    ctx.body = { ok: true };
  });
}

function runRole(role: SkeletonRole, port: number, upstreamUrl: string): void {
  const app = new Koa();
  const router = new Router();
  const upstream = () => new Pool(upstreamUrl, { connections: UPSTREAM_CONNECTIONS });
  router.get('/health', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  if (role === 'store') storeRoutes(router, new Map());
  else if (role === 'forwarder') forwarderRoutes(router, upstream());
  else leaderRoutes(router, new Map(), upstream());
  app.use(router.routes());
  app.listen(port, '127.0.0.1');
  // Like our nodes (EXIT_WITH_PARENT): exit when the benchmark goes away, however it ended.
  process.stdin.on('end', () => process.exit(0)).resume();
  process.once('SIGTERM', () => process.exit(0));
  process.once('SIGINT', () => process.exit(0));
}

if (require.main === module) {
  const role = process.env['SKELETON_ROLE'] as SkeletonRole;
  if (!['store', 'forwarder', 'replicating-leader'].includes(role)) throw new Error(`SKELETON_ROLE must be store, forwarder or replicating-leader, not ${role}`);
  runRole(role, Number(process.env['PORT']), process.env['UPSTREAM_URL'] ?? '');
}
