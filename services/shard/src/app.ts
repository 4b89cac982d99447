import Router from '@koa/router';
import { bearer, COORDINATOR_HEADER, countRequests, deleteOp, EPOCH_HEADER, errorMiddleware, etagOf, failedEntry, incrOp, internalAuth, jsonBody, KvError, LOAD_CHUNK_BODY_BYTES_MAX, LOAD_CONTENT_TYPE, nodeConfigSchema, parseKeyQuery, parseMgetBody, mputOps, parseWriteOpsBody, putOp, readAnswer, readBytes, requireJson, requireType, serveMetrics, writeAnswer, type EntryResult, type Logger, type WriteOp } from '@shardkv/common';
import Koa from 'koa';
import { Readable } from 'node:stream';
import type { ShardConfig } from './config';
import { loadChunk } from './load';
import { http, registry } from './metrics';
import { addMigrationRoutes } from './migration/routes';
import type { ShardNode } from './node';
import type { CommandResult, Leader } from './replication/leader';
import { decodeStored, liveValue, ttlLeftMs } from './stored';
import { replicateRequestSchema } from './replication/messages';
import { transferLines } from './replication/transfer';
import type { KvStore } from './store';

export interface ShardAppDeps {
  config: ShardConfig;
  store: KvStore;
  node: ShardNode;
  log: Logger;
}

/** The HTTP face of a shard node: public reads and writes, health, status, and /internal/*. */
export function createShardApp(deps: ShardAppDeps): Koa {
  const app = new Koa();
  // Case-sensitive: `/PUT` is not `/put`, and no spelling of a path escapes the internal guard.
  const router = new Router({ sensitive: true });
  addPublicRoutes(router, deps);
  addInternalRoutes(router, deps);
  addMigrationRoutes(router, deps.node, deps.store);
  addMetricsRoute(router, deps.config.clusterToken);
  app.use(countRequests(http));
  app.use(errorMiddleware(deps.log, (code) => http.errors.inc({ code })));
  app.use(internalAuth(deps.config.clusterToken));
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  return app;
}

function addPublicRoutes(router: Router, { config, store, node }: ShardAppDeps): void {
  // A request that names the epoch it was routed by (a smart client, see the client's direct
  // routing) is served only by the leader of that epoch or a newer one, reads included: a node
  // demoted since the client read the map refuses it (not_leader, stale_epoch), so a direct read
  // is as linearizable as one through the router. Without the header any role answers, as before
  // (tools and tests read followers directly).
  const routedLeader: Koa.Middleware = (ctx, next) => {
    const routed = ctx.get(EPOCH_HEADER);
    if (routed !== '') ctx.state['leader'] = node.servingLeader(routed);
    return next();
  };
  router.get('/get', routedLeader, (ctx) => {
    const key = parseKeyQuery(ctx.querystring);
    node.checkKey(key, 'read');
    const leader = ctx.state['leader'] as Leader | undefined;
    const answer = readAnswer(readOne(leader === undefined ? (k) => node.get(k) : (k) => leader.get(k), key, expiredOn(node, leader)));
    ctx.set('etag', etagOf(answer.version));
    ctx.body = answer;
  });

  // Only a leader reads a write's body: a follower or a node in standby refuses it first.
  const leaderOnly: Koa.Middleware = (_ctx, next) => {
    node.assertLeader();
    return next();
  };
  // Batches are refused whole by a node that cannot serve them, before anything is read or
  // sequenced: one routed by an older epoch than this node knows (the router's map is old), or
  // arriving at a node that is not a serving leader.
  const servingLeader: Koa.Middleware = (ctx, next) => {
    ctx.state['leader'] = node.servingLeader(ctx.get(EPOCH_HEADER));
    return next();
  };
  // A batch of reads is then read through that Leader, not the node: had the role changed while
  // the body arrived, a read through the node would answer from whatever role came next.
  const readableLeader: Koa.Middleware = (ctx, next) => {
    (ctx.state['leader'] as Leader).assertReadable();
    return next();
  };
  // Single-key writes (a smart client's, routed by epoch): the same ops and answers as the router's.
  const writeOne = async (ctx: Koa.Context, op: WriteOp) => {
    node.checkKey(op.key, 'write');
    ctx.body = writeAnswer(op, (await writeAll(node, [op]))[0]!);
  };
  router.post('/put', routedLeader, leaderOnly, requireJson, jsonBody(), (ctx) => writeOne(ctx, putOp(ctx.request.body, (h) => ctx.get(h))));
  router.post('/incr', routedLeader, leaderOnly, requireJson, jsonBody(), (ctx) => writeOne(ctx, incrOp(ctx.request.body, (h) => ctx.get(h))));
  router.delete('/delete', routedLeader, leaderOnly, (ctx) => writeOne(ctx, deleteOp(ctx.querystring, (h) => ctx.get(h))));

  // The batch API: one result per entry. The writes are sequenced in the order given, in one
  // event-loop turn, so they travel to the follower and commit together.
  router.post('/mput', routedLeader, leaderOnly, requireJson, jsonBody(), async (ctx) => {
    ctx.body = { results: await writeAll(node, mputOps(ctx.request.body, (h) => ctx.get(h))) };
  });
  // The router's coalesced single-key writes (puts and deletes); internal, as it trusts the caller
  // to have answered bad input already, but it validates anyway: nothing unchecked reaches the log.
  router.post('/internal/write', servingLeader, requireJson, jsonBody(config.internalBodyBytesMax), async (ctx) => {
    ctx.body = { results: await writeAll(node, parseWriteOpsBody(ctx.request.body)) };
  });
  // A chunk of the router's bulk load (see load.ts): refused whole, like the batches above, by a
  // node that is not a serving leader of the epoch it was routed by.
  router.post('/internal/load', servingLeader, requireType(LOAD_CONTENT_TYPE), async (ctx) => {
    ctx.body = await loadChunk(node, await readBytes(ctx, LOAD_CHUNK_BODY_BYTES_MAX));
  });
  const readAll: Koa.Middleware = (ctx) => {
    const leader = ctx.state['leader'] as Leader | undefined;
    const read = leader === undefined ? (k: string) => node.get(k) : (k: string) => leader.get(k);
    const get = (k: string) => {
      node.checkKey(k, 'read');
      return read(k);
    };
    const onExpired = expiredOn(node, leader);
    ctx.body = { results: parseMgetBody(ctx.request.body).map((key) => readOne(get, key, onExpired)) };
  };
  router.post('/mget', routedLeader, requireJson, jsonBody(), readAll);
  // The router's reads (its coalesced GETs and its /mget): only a serving leader answers, so a
  // deposed leader refuses the whole batch (nothing read) and the router asks the new one.
  router.post('/internal/read', servingLeader, readableLeader, requireJson, jsonBody(), readAll);

  router.get('/health', (ctx) => {
    if (!node.healthy) throw new KvError('not_ready', `${config.nodeName} is not ready`);
    ctx.body = { status: 'ok', node: config.nodeName, role: node.role.kind };
  });

  // /status is public, so a coordinator generation on it counts only with the cluster token:
  // otherwise anyone could make the node refuse every real coordinator.
  const fromCluster = config.clusterToken === undefined ? () => true : bearer(config.clusterToken);
  router.get('/status', async (ctx) => {
    const generation = Number(ctx.get(COORDINATOR_HEADER));
    if (Number.isSafeInteger(generation) && generation > 0 && fromCluster(ctx.get('authorization'))) await node.observeCoordinator(generation);
    const role = node.role;
    // A leader reports its committed seq: its store may also hold entries not yet on the follower.
    const base = { node: config.nodeName, shard: config.shardId, role: role.kind, epoch: node.epoch, seq: store.seq, keys: store.size, digest: store.digest(), mapVersion: node.mapVersion, slotsOwned: node.ownership?.ownedCount ?? null, slotsFrozen: node.ownership?.frozenCount ?? 0 };
    if (role.kind === 'leader') ctx.body = { ...base, ...leaderStatus(role.leader, node.peerUrl), seq: role.leader.status.committedSeq };
    else if (role.kind === 'follower') ctx.body = { ...base, ...role.follower.status, leader: node.peerUrl };
    else ctx.body = { ...base, state: 'standby' };
  });
}

/**
 * Sequences the ops this shard serves in the order given (one event-loop turn, so they replicate
 * and commit together); an op whose slot is not served here (moved, or frozen for its cutover)
 * gets its own definite failure. The check and the sequencing run in one synchronous step, so a
 * freeze applied meanwhile cannot let a write of a frozen slot through.
 */
async function writeAll(node: ShardNode, ops: WriteOp[]): Promise<EntryResult[]> {
  const out: EntryResult[] = new Array(ops.length);
  const served: number[] = [];
  ops.forEach((op, i) => {
    const refusal = node.ownership?.refusal(op.key, 'write');
    if (refusal === undefined) served.push(i);
    else out[i] = failedEntry(op.key, refusal);
  });
  if (served.length === 0) return out;
  let results: CommandResult[];
  try {
    results = await node.writeBatch(served.length === ops.length ? ops : served.map((i) => ops[i]!));
  } catch (err) {
    // Sequenced together, so they fail together: definitely (nothing sequenced) or not.
    for (const i of served) out[i] = failedEntry(ops[i]!.key, err);
    return out;
  }
  served.forEach((i, j) => (out[i] = entryResult(ops[i]!, results[j]!)));
  return out;
}

function entryResult(op: WriteOp, r: CommandResult): EntryResult {
  if ('refused' in r) return failedEntry(op.key, r.refused);
  if (op.op === 'del') return { key: op.key, ok: true, seq: r.seq, deleted: r.existed };
  if (op.op === 'incr') return { key: op.key, ok: true, seq: r.seq, version: r.seq, value: r.value! };
  return { key: op.key, ok: true, seq: r.seq, version: r.seq };
}

/** Who deletes a key a read found expired: the leader (lazily, replicated); a follower only hides it. */
function expiredOn(node: ShardNode, leader: Leader | undefined): (key: string, version: number) => void {
  const role = node.role;
  const l = leader ?? (role.kind === 'leader' ? role.leader : undefined);
  return l === undefined ? () => {} : (key, version) => l.expired(key, version);
}

/** A key's live value (expired: absent), with its version and what is left of its time to live. */
function readOne(get: (key: string) => string | undefined, key: string, onExpired: (key: string, version: number) => void): EntryResult {
  try {
    const nowMs = Date.now();
    const stored = get(key);
    const v = liveValue(stored, nowMs);
    if (v === undefined && stored !== undefined) onExpired(key, decodeStored(stored).version);
    if (v === undefined) return failedEntry(key, new KvError('key_not_found', 'key not found'));
    const ttlMs = ttlLeftMs(v, nowMs);
    return { key, ok: true, value: v.value, version: v.version, ...(ttlMs === undefined ? {} : { ttlMs }) };
  } catch (err) {
    return failedEntry(key, err);
  }
}


function leaderStatus(leader: Leader, followerUrl: string | undefined) {
  const f = leader.follower;
  return {
    ...leader.status,
    follower: {
      url: followerUrl,
      reachable: f.reachable,
      inSync: f.reachable && !f.catchingUp && !f.diverged && f.ackedSeq >= leader.status.lastSeq,
      catchingUp: f.catchingUp,
      diverged: f.diverged,
      ackedSeq: f.ackedSeq,
      lagEntries: Math.max(0, leader.status.lastSeq - f.ackedSeq),
      lastContactMsAgo: f.lastContactAtMs === undefined ? null : Math.round(performance.now() - f.lastContactAtMs),
      lastError: f.lastError ?? null,
    },
  };
}

/**
 * GET /metrics needs the cluster token, like /internal/*: a node's port is reachable only on the
 * cluster's network, and whoever scrapes it (Prometheus) is one more member of that network.
 * One listen address keeps the nodes' configuration as it is; Prometheus sends the token from a
 * file (monitoring/prometheus.yml). Without a token configured it is open, as /internal/* is.
 */
function addMetricsRoute(router: Router, token: string | undefined): void {
  const fromCluster = token === undefined ? () => true : bearer(token);
  router.get('/metrics', (ctx, next) => {
    if (!fromCluster(ctx.get('authorization'))) throw new KvError('unauthorized', 'GET /metrics on a node needs the cluster token');
    return next();
  }, serveMetrics(registry));
}

function addInternalRoutes(router: Router, { config, store, node }: ShardAppDeps): void {
  router.post('/internal/replicate', requireJson, jsonBody(config.internalBodyBytesMax), async (ctx) => {
    const parsed = replicateRequestSchema.safeParse(ctx.request.body);
    if (!parsed.success) throw new KvError('invalid_body', `bad replicate message: ${parsed.error.issues[0]?.message}`);
    ctx.body = await node.onReplicate(parsed.data);
  });

  router.post('/internal/config', requireJson, jsonBody(), async (ctx) => {
    const parsed = nodeConfigSchema.safeParse(ctx.request.body);
    if (!parsed.success) throw new KvError('invalid_body', `bad configuration: ${parsed.error.issues[0]?.message}`);
    await node.configure(parsed.data);
    // A leader's last sequenced entry after the configuration took effect: once it froze slots,
    // no write of theirs can have a higher seq (the coordinator copies through this point).
    const role = node.role;
    ctx.body = { node: config.nodeName, epoch: node.epoch, role: role.kind, mapVersion: node.mapVersion, lastSeq: role.kind === 'leader' ? role.leader.status.lastSeq : store.seq };
  });

  router.get('/internal/transfer', (ctx) => {
    const fromSeq = Number(ctx.query['fromSeq']);
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) throw new KvError('bad_request', 'fromSeq must be a positive integer');
    if (!node.healthy) throw new KvError('not_ready', `${config.nodeName} cannot serve a transfer now`);
    ctx.type = 'application/x-ndjson';
    ctx.body = Readable.from(transferLines(store, config.shardId, fromSeq, ctx.query['full'] === '1'));
  });
}
