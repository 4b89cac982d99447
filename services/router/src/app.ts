import Router from '@koa/router';
import { errorMiddleware, jsonBody, keyQuery, parseKeyQuery, parsePutBody, requireJson, type Logger } from '@shardkv/common';
import Koa from 'koa';
import type { ShardRing } from './ring';
import { nodeStatus, type ForwardOptions, type Shards, type UpstreamResponse } from './shards';

export interface RouterAppDeps {
  ring: ShardRing;
  shards: Shards;
  statusTimeoutMs: number;
  log: Logger;
}

/**
 * The public API. The router validates every request itself, so bad input is answered here and
 * never reaches a shard; it then forwards to the leader of the key's shard and passes the
 * leader's answer through byte for byte.
 */
export function createRouterApp({ ring, shards, statusTimeoutMs, log }: RouterAppDeps): Koa {
  const app = new Koa();
  // Case-sensitive: `/PUT` is not `/put`, and no spelling of a path escapes the internal guard.
  const router = new Router({ sensitive: true });

  const forward = async (ctx: Koa.Context, key: string, opts: ForwardOptions) => {
    const res: UpstreamResponse = await shards.get(ring.shardFor(key)).leader.request(opts);
    ctx.status = res.status;
    ctx.type = 'application/json';
    ctx.body = res.body;
  };

  router.post('/put', requireJson, jsonBody(), async (ctx) => {
    const { key } = parsePutBody(ctx.request.body);
    // The validated body is forwarded as received: no re-serialisation on the hot path.
    await forward(ctx, key, { method: 'POST', path: '/put', body: ctx.request.rawBody as string, idempotent: false });
  });

  router.get('/get', async (ctx) => {
    const key = parseKeyQuery(ctx.querystring);
    await forward(ctx, key, { method: 'GET', path: `/get?${keyQuery(key)}`, idempotent: true });
  });

  router.delete('/delete', async (ctx) => {
    const key = parseKeyQuery(ctx.querystring);
    await forward(ctx, key, { method: 'DELETE', path: `/delete?${keyQuery(key)}`, idempotent: false });
  });

  router.get('/health', (ctx) => {
    ctx.body = { status: 'ok', node: 'router' };
  });

  router.get('/status', async (ctx) => {
    ctx.body = {
      shards: await Promise.all(
        shards.all.map(async (s) => ({
          id: s.id,
          leader: await nodeStatus(s.leader, statusTimeoutMs),
          follower: await nodeStatus(s.follower, statusTimeoutMs),
        })),
      ),
    };
  });

  app.use(errorMiddleware(log));
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  return app;
}
