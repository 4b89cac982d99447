import Router from '@koa/router';
import { bearer, countRequests, deleteOp, errorMiddleware, etagOf, failedEntry, incrOp, internalAuth, jsonBody, keyQuery, KvError, LOAD_BODY_BYTES_MAX, LOAD_CONTENT_TYPE, parseKeyQuery, parseMgetBody, parseMputBody, putOp, readAnswer, requireJson, requireType, serveMetrics, shardEventSchema, writeAnswer, type EntryFailure, type EntryResult, type Logger, type RpcResponse, type WriteOp } from '@shardkv/common';
import Koa from 'koa';
import { Batcher, type BatcherLimits } from './batcher';
import type { ShardRecord } from './control/records';
import type { ShardTable } from './control/shard-table';
import type { Coordinator } from './coordinator';
import type { Leaders } from './leaders';
import { BulkLoad, ShardGates, type LoadLimits } from './load';
import type { MigrationDriver } from './migration/driver';
import { Routing } from './routing';
import { addReshardRoutes } from './migration/routes';
import { requireAdmin } from './admin-auth';
import { addConsoleRoutes } from './console';
import { nodeStatus, type Nodes } from './shards';
import { batchEntries, http, OPERATIONS, operationSeconds, rateLimited, registry, watchQueues } from './metrics';
import { ClientLimiter, limitClients, type RateLimits } from './rate-limit';

export interface RouterAppDeps {
  nodes: Nodes;
  table: ShardTable;
  leaders: Leaders;
  coordinator: Coordinator;
  migrations: MigrationDriver;
  /** How long a request for a key in its cutover is retried by the router (see routing.ts). */
  cutoverWaitMs: number;
  /** This router, as /status names it. */
  self: { id: string; url: string; controlPlane: 'embedded' | 'etcd' };
  statusTimeoutMs: number;
  clusterToken: string | undefined;
  adminToken: string | undefined;
  /** How single-key requests are coalesced per shard. */
  batching: BatcherLimits;
  /** Bulk loads' chunks in flight and retries. */
  load: LoadLimits;
  /** This router's per-client limit of the data routes; undefined: none. */
  rateLimit: RateLimits | undefined;
  log: Logger;
}

/**
 * The public API. The router validates every request itself, so bad input is answered here and
 * never reaches a shard; it then sends it to the current leader of the key's shard (as the
 * shard table says), in an internal batch with the other requests for that shard in flight.
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
  const { nodes, table, leaders } = deps;
  const routing = new Routing(table, deps.cutoverWaitMs, deps.batching.timeoutMs);
  const shardOf = (key: string) => table.state(routing.shardFor(key));
  const batchers = shardBatchers(deps);
  const limit = dataRouteLimit(deps.rateLimit);

  // Batches are split by shard and sent to the shards' leaders in parallel; each entry gets its
  // own result, in the order given. A shard that fails fails only its own entries.
  router.post('/mput', limit('mput'), requireJson, jsonBody(), async (ctx) => {
    const entries = parseMputBody(ctx.request.body);
    ctx.body = await routing.many(entries, (e) => e.key, (shardId, group, ms) => leaders.writes(shardId, group.map((e): WriteOp => ({ op: 'put', ...e })), ms));
  });
  router.post('/mget', limit('mget'), requireJson, jsonBody(), async (ctx) => {
    const keys = parseMgetBody(ctx.request.body);
    ctx.body = await routing.many(keys, (k) => k, (shardId, group, ms) => leaders.reads(shardId, group, ms));
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

  // Single-key requests are coalesced per shard into the same internal batches (see batcher.ts);
  // each client still gets its own answer, as if it had been sent alone.
  const writeOne = async (ctx: Koa.Context, op: WriteOp) => {
    ctx.body = writeAnswer(op, await routing.one(op.key, (shardId, since) => batchers.writes(shardId).submit(op, since)));
  };
  router.post('/put', limit('put'), requireJson, jsonBody(), (ctx) => writeOne(ctx, putOp(ctx.request.body, (h) => ctx.get(h))));
  router.post('/incr', limit('incr'), requireJson, jsonBody(), (ctx) => writeOne(ctx, incrOp(ctx.request.body, (h) => ctx.get(h))));
  router.delete('/delete', limit('delete'), (ctx) => writeOne(ctx, deleteOp(ctx.querystring, (h) => ctx.get(h))));

  router.get('/get', limit('get'), async (ctx) => {
    const key = parseKeyQuery(ctx.querystring);
    if (consistency(ctx) === 'stale') {
      // The follower may be behind (or ahead, by writes whose answer was lost): any answer but a
      // value or a 404 sends the read to the leader.
      const res = await nodes.get(shardOf(key).follower).request({ method: 'GET', path: `/get?${keyQuery(key)}`, idempotent: true }).catch(() => undefined);
      if (res !== undefined && (res.status === 200 || res.status === 404)) return passThrough(ctx, res);
    }
    const answer = readAnswer(await routing.one(key, (shardId, since) => batchers.reads(shardId).submit(key, since)));
    ctx.set('etag', etagOf(answer.version));
    ctx.body = answer;
  });

  router.get('/health', (ctx) => {
    ctx.body = { status: 'ok', node: 'router' };
  });
}

/**
 * The data routes' rate limit, first on each route, before its body is read. Only these routes
 * count: the cluster's own traffic (/internal/*, /cluster/map), the operators' (/admin/*, /status,
 * /metrics, /health) and the console's files never do. One limiter per router serves every data
 * route, so a client's gets, puts and batches all count against the same allowance.
 */
function dataRouteLimit(limits: RateLimits | undefined): (op: string) => Koa.Middleware {
  if (limits === undefined) return () => (_ctx, next) => next();
  const limiter = new ClientLimiter(limits);
  return (op) => limitClients(limiter, (client) => rateLimited.inc({ op, client }));
}

function observeOperation(route: string, seconds: number): void {
  const op = OPERATIONS[route];
  if (op !== undefined) operationSeconds.observe({ op }, seconds);
}

/** One write batcher and one read batcher per shard, created on first use; their sizes and queues are measured. */
function shardBatchers({ batching, leaders }: RouterAppDeps) {
  const writes = new Map<string, Batcher<WriteOp, EntryResult>>();
  const reads = new Map<string, Batcher<string, EntryResult>>();
  const opBytes = (op: WriteOp) => op.key.length + (op.op === 'put' ? op.value.length : 0) + 32;
  watchQueues(function* () {
    for (const [kind, batchers] of [['write', writes], ['read', reads]] as const) {
      for (const [shard, b] of batchers) yield { shard, kind, depth: b.queued, inFlight: b.batchesInFlight };
    }
  });
  return {
    writes(shardId: string): Batcher<WriteOp, EntryResult> {
      let b = writes.get(shardId);
      if (b === undefined) {
        const send = (ops: WriteOp[], ms: number) => {
          batchEntries.observe({ shard: shardId, kind: 'write' }, ops.length);
          return leaders.writes(shardId, ops, ms);
        };
        writes.set(shardId, (b = new Batcher(send, batching, opBytes)));
      }
      return b;
    },
    reads(shardId: string): Batcher<string, EntryResult> {
      let b = reads.get(shardId);
      if (b === undefined) {
        const send = (keys: string[], ms: number) => {
          batchEntries.observe({ shard: shardId, kind: 'read' }, keys.length);
          return leaders.reads(shardId, keys, ms);
        };
        reads.set(shardId, (b = new Batcher(send, batching, (k) => k.length)));
      }
      return b;
    },
  };
}

function passThrough(ctx: Koa.Context, res: RpcResponse): void {
  ctx.status = res.status;
  ctx.type = 'application/json';
  ctx.body = res.body;
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

function consistency(ctx: Koa.Context): 'linearizable' | 'stale' {
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
