import Router from '@koa/router';
import { countRequests, deleteOp, errorMiddleware, etagOf, internalAuth, jsonBody, keyFromQuery, KvError, LOAD_BODY_BYTES_MAX, LOAD_CONTENT_TYPE, requireJson, requireType, serveMetrics, shardEventSchema, type Logger } from '@shardkv/common';
import Koa from 'koa';
import type { ShardRecord } from './control/records';
import type { ShardTable } from './control/shard-table';
import type { Coordinator } from './coordinator';
import type { Leaders } from './leaders';
import { BulkLoad, ShardGates, type LoadLimits } from './load';
import type { MigrationDriver } from './migration/driver';
import type { Consistency, KvOperations } from './operations';
import { addReshardRoutes } from './migration/routes';
import { requireAdmin } from './admin-auth';
import { addConsoleRoutes } from './console';
import { nodeStatus, type Nodes } from './shards';
import { http, OPERATIONS, operationSeconds, rateLimited, registry } from './metrics';
import { ClientLimiter, limitClients, type RateLimits } from './rate-limit';

export interface RouterAppDeps {
  nodes: Nodes;
  table: ShardTable;
  leaders: Leaders;
  /** The key operations, shared with the gRPC service (see operations.ts). */
  operations: KvOperations;
  coordinator: Coordinator;
  migrations: MigrationDriver;
  /** This router, as /status names it. */
  self: { id: string; url: string; controlPlane: 'embedded' | 'etcd' };
  statusTimeoutMs: number;
  clusterToken: string | undefined;
  adminToken: string | undefined;
  /** Bulk loads' chunks in flight and retries. */
  load: LoadLimits;
  /** This router's per-client limit of the data routes; undefined: none. */
  rateLimit: RateLimits | undefined;
  log: Logger;
}

/**
 * The public HTTP API. The key routes only translate HTTP to the operations (operations.ts),
 * which validate every request, so bad input is answered in the router and never reaches a shard,
 * and send it to the current leader of the key's shard (as the shard table says), in an internal
 * batch with the other requests for that shard in flight.
 */
export function createRouterApp(deps: RouterAppDeps): Koa {
  const app = new Koa();
  // Case-sensitive: `/PUT` is not `/put`, and no spelling of a path escapes the internal guard.
  const router = new Router({ sensitive: true });
  addPublicRoutes(router, deps);
  addCoordinatorRoutes(router, deps);
  addReshardRoutes(router, deps.table, deps.migrations, requireAdmin(deps.adminToken));
  // Public, like /status (which says more): the router's port is the one clients reach anyway.
  router.get('/metrics', serveMetrics(registry));
  addConsoleRoutes(router);
  app.use(countRequests(http, observeOperation));
  app.use(errorMiddleware(deps.log, (code) => http.errors.inc({ code })));
  app.use(internalAuth(deps.clusterToken));
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  return app;
}

function addPublicRoutes(router: Router, deps: RouterAppDeps): void {
  const { table, leaders, operations: ops } = deps;

  const limit = dataRouteLimit(deps.rateLimit);
  router.post('/mput', limit('mput'), requireJson, jsonBody(), async (ctx) => {
    ctx.body = await ops.mput(ctx.request.body, { header: (h) => ctx.get(h) });
  });
  router.post('/mget', limit('mget'), requireJson, jsonBody(), async (ctx) => {
    ctx.body = await ops.mget(ctx.request.body);
  });

  // The bulk path (see load.ts): the body streams through bounded per-shard chunks.
  const gates = new ShardGates(deps.load.shardInFlightMax);
  const sendChunk = (shardId: string, chunk: Buffer, entries: number) => leaders.load(shardId, chunk, entries);
  router.post('/load', limit('load'), requireType(LOAD_CONTENT_TYPE), async (ctx) => {
    const declared = declaredLength(ctx);
    const load = new BulkLoad(table.placement, sendChunk, gates, deps.load, firstLineParam(ctx.query['firstLine']));
    let read = 0;
    try {
      for await (const block of ctx.req as AsyncIterable<Buffer>) {
        read += block.length;
        await load.push(block);
      }
    } catch {
      read = -1;
    }
    if (read !== declared) {
      // The client went away (or sent less than it declared): what was sent stays sent.
      await load.abandon();
      throw new KvError('invalid_body', `request body ended after ${read} of ${declared} bytes; chunks already sent may have been loaded`);
    }
    ctx.body = await load.finish();
  });

  router.post('/put', limit('put'), requireJson, jsonBody(), async (ctx) => {
    ctx.body = await ops.put(ctx.request.body, { header: (h) => ctx.get(h) });
  });
  router.post('/incr', limit('incr'), requireJson, jsonBody(), async (ctx) => {
    ctx.body = await ops.incr(ctx.request.body, { header: (h) => ctx.get(h) });
  });
  router.get('/get', limit('get'), async (ctx) => {
    const key = keyFromQuery(ctx.querystring);
    const answer = await ops.get(key, { consistency: consistency(ctx) });
    ctx.set('etag', etagOf(answer.version));
    ctx.body = answer;
  });
  router.delete('/delete', limit('delete'), async (ctx) => {
    ctx.body = await ops.write(deleteOp(ctx.querystring, (h) => ctx.get(h)));
  });

  router.get('/health', (ctx) => {
    ctx.body = { status: 'ok', node: 'router' };
  });
}

/** The per-client limit on a data route (rate-limit.ts), or nothing when limits are off. */
function dataRouteLimit(limits: RateLimits | undefined): (op: string) => Koa.Middleware {
  if (limits === undefined) return () => (_ctx, next) => next();
  const limiter = new ClientLimiter(limits);
  return (op) => limitClients(limiter, (client) => rateLimited.inc({ op, client }));
}

function observeOperation(route: string, seconds: number): void {
  const op = OPERATIONS[route];
  if (op !== undefined) operationSeconds.observe({ op }, seconds);
}

/**
 * A bulk load declares its size, so that one over the limit is refused before any of it is
 * loaded (a limit found half-way could not be answered as "nothing applied").
 */
function declaredLength(ctx: Koa.Context): number {
  const raw = ctx.get('content-length');
  if (raw === '') throw new KvError('length_required', `POST /load needs a Content-Length (send the lines in requests of at most ${LOAD_BODY_BYTES_MAX} bytes)`);
  const bytes = Number(raw);
  if (bytes > LOAD_BODY_BYTES_MAX) throw new KvError('body_too_large', `a /load body is at most ${LOAD_BODY_BYTES_MAX} bytes; send the lines in several requests`);
  return bytes;
}

/** `firstLine=N`: the number of the body's first line, so that the answer names lines of the whole file. */
function firstLineParam(raw: unknown): number {
  if (raw === undefined) return 1;
  const n = Number(raw);
  if (typeof raw !== 'string' || !Number.isSafeInteger(n) || n < 1) throw new KvError('bad_request', 'firstLine must be a positive integer');
  return n;
}

function consistency(ctx: Koa.Context): Consistency {
  const c = ctx.query['consistency'];
  if (c === undefined || c === 'linearizable') return 'linearizable';
  if (c === 'stale') return 'stale';
  throw new KvError('bad_request', 'consistency must be "linearizable" (the default) or "stale"');
}

function addCoordinatorRoutes(router: Router, { nodes, table, coordinator, self, statusTimeoutMs, adminToken }: RouterAppDeps): void {
  router.post('/internal/shard-event', requireJson, jsonBody(), async (ctx) => {
    const parsed = shardEventSchema.safeParse(ctx.request.body);
    if (!parsed.success) throw new KvError('invalid_body', `bad shard event: ${parsed.error.issues[0]?.message}`);
    ctx.body = await coordinator.onEvent(parsed.data);
  });

  router.post('/admin/failover', requireAdmin(adminToken), async (ctx) => {
    const s = shardParam(table, ctx.query['shard']);
    const next = await coordinator.failover(s.id, ctx.query['unsafe'] === 'true');
    ctx.body = { shard: next.id, epoch: next.epoch, leader: next.leader, follower: next.follower, inSync: next.inSync };
  });

  router.get('/status', async (ctx) => {
    const c = table.coordinator;
    ctx.body = {
      router: { id: self.id, url: self.url, coordinator: coordinator.leading },
      controlPlane: self.controlPlane,
      coordinator: c === undefined ? null : { id: c.id, url: c.url, since: new Date(c.since).toISOString(), generation: c.generation },
      mapVersion: table.map.version,
      shards: await Promise.all(table.all.map((s) => shardStatus(s, nodes, statusTimeoutMs))),
    };
  });
}

async function shardStatus(s: ShardRecord, nodes: Nodes, timeoutMs: number) {
  const [leader, follower] = await Promise.all([nodeStatus(nodes.get(s.leader), timeoutMs), nodeStatus(nodes.get(s.follower), timeoutMs)]);
  const lastSeq = typeof leader['lastSeq'] === 'number' ? leader['lastSeq'] : undefined;
  const followerSeq = typeof follower['seq'] === 'number' ? follower['seq'] : undefined;
  return {
    id: s.id,
    epoch: s.epoch,
    inSync: s.inSync,
    replicationLagEntries: lastSeq !== undefined && followerSeq !== undefined ? Math.max(0, lastSeq - followerSeq) : null,
    leader,
    follower,
  };
}

/** `shard=N` (an index) or `shard=<id>`. */
function shardParam(table: ShardTable, raw: unknown): ShardRecord {
  if (typeof raw !== 'string' || raw === '') throw new KvError('bad_request', 'shard is required (an index or an id)');
  const all = table.all;
  const byIndex = /^\d+$/.test(raw) ? all[Number(raw)] : undefined;
  return byIndex ?? table.state(raw);
}
