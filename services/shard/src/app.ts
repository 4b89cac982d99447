import Router from '@koa/router';
import { errorMiddleware, internalAuth, jsonBody, KvError, parseKeyQuery, parsePutBody, requireJson, type Logger } from '@shardkv/common';
import Koa from 'koa';
import { Readable } from 'node:stream';
import type { ShardConfig } from './config';
import type { Follower } from './replication/follower';
import type { Leader } from './replication/leader';
import { replicateRequestSchema } from './replication/messages';
import { transferLines } from './replication/transfer';
import type { KvStore } from './store';

export type NodeRole = { kind: 'leader'; leader: Leader } | { kind: 'follower'; follower: Follower };

export interface ShardAppDeps {
  config: ShardConfig;
  store: KvStore;
  role: NodeRole;
  log: Logger;
}

/** The HTTP face of a shard node: public reads and writes, health, status, and /internal/*. */
export function createShardApp(deps: ShardAppDeps): Koa {
  const app = new Koa();
  // Case-sensitive: `/PUT` is not `/put`, and no spelling of a path escapes the internal guard.
  const router = new Router({ sensitive: true });
  addPublicRoutes(router, deps);
  addInternalRoutes(router, deps);
  app.use(errorMiddleware(deps.log));
  app.use(internalAuth(deps.config.clusterToken));
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  return app;
}

function addPublicRoutes(router: Router, { config, store, role }: ShardAppDeps): void {
  router.get('/get', (ctx) => {
    const key = parseKeyQuery(ctx.querystring);
    const value = role.kind === 'leader' ? role.leader.get(key) : role.follower.get(key);
    if (value === undefined) throw new KvError('key_not_found', 'key not found', { key });
    ctx.body = { key, value };
  });

  if (role.kind === 'leader') {
    const { leader } = role;
    router.post('/put', requireJson, jsonBody(), async (ctx) => {
      const { key, value } = parsePutBody(ctx.request.body);
      const { seq } = await leader.write({ op: 'put', key, value });
      ctx.body = { key, seq };
    });
    router.delete('/delete', async (ctx) => {
      const key = parseKeyQuery(ctx.querystring);
      const { seq, existed } = await leader.write({ op: 'del', key });
      ctx.body = { key, deleted: existed, seq };
    });
  } else {
    // Refused before the body is read: a follower never writes on a client's behalf.
    const notLeader = () => {
      throw new KvError('not_leader', `this node is a follower; write to the leader at ${config.peerUrl}`, { leader: config.peerUrl });
    };
    router.post('/put', notLeader);
    router.delete('/delete', notLeader);
  }

  router.get('/health', (ctx) => {
    if (!canServeState(role)) throw new KvError('not_ready', `${config.nodeName} is not ready`);
    ctx.body = { status: 'ok', node: config.nodeName, role: role.kind };
  });

  router.get('/status', (ctx) => {
    ctx.body = {
      node: config.nodeName,
      shard: config.shardId,
      role: role.kind,
      seq: store.seq,
      keys: store.size,
      digest: store.digest(),
      ...(role.kind === 'leader' ? leaderStatus(role.leader, config) : { ...role.follower.status, leader: config.peerUrl }),
    };
  });
}

/** Healthy, and able to hand its state to its peer: a serving leader, a follower not mid-transfer. */
function canServeState(role: NodeRole): boolean {
  return role.kind === 'leader' ? role.leader.serving : role.follower.transferable;
}

function leaderStatus(leader: Leader, config: ShardConfig) {
  const f = leader.follower;
  return {
    ...leader.status,
    follower: {
      url: config.peerUrl,
      reachable: f.reachable,
      inSync: f.reachable && !f.catchingUp && !f.diverged && f.ackedSeq >= leader.status.lastSeq,
      catchingUp: f.catchingUp,
      diverged: f.diverged,
      ackedSeq: f.ackedSeq,
      lagEntries: Math.max(0, leader.status.lastSeq - f.ackedSeq),
      lastContactMsAgo: f.lastContactAt === 0 ? null : Date.now() - f.lastContactAt,
      lastError: f.lastError ?? null,
    },
  };
}

function addInternalRoutes(router: Router, { config, store, role }: ShardAppDeps): void {
  if (role.kind === 'follower') {
    router.post('/internal/replicate', requireJson, jsonBody(config.internalBodyBytesMax), async (ctx) => {
      const parsed = replicateRequestSchema.safeParse(ctx.request.body);
      if (!parsed.success) throw new KvError('invalid_body', `bad replicate message: ${parsed.error.issues[0]?.message}`);
      ctx.body = await role.follower.onReplicate(parsed.data);
    });
  }

  router.get('/internal/transfer', (ctx) => {
    const fromSeq = Number(ctx.query['fromSeq']);
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) throw new KvError('bad_request', 'fromSeq must be a positive integer');
    if (!canServeState(role)) throw new KvError('not_ready', `${config.nodeName} cannot serve a transfer now`);
    ctx.type = 'application/x-ndjson';
    ctx.body = Readable.from(transferLines(store, config.shardId, fromSeq, ctx.query['full'] === '1'));
  });
}
