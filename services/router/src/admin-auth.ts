import { bearer, KvError } from '@shardkv/common';
import type Koa from 'koa';

/** /admin/* needs `Authorization: Bearer <ADMIN_TOKEN>`; with no token configured it is closed. */
export function requireAdmin(token: string | undefined): Koa.Middleware {
  const matches = token === undefined ? undefined : bearer(token);
  return async (ctx, next) => {
    if (matches === undefined || !matches(ctx.get('authorization'))) {
      throw new KvError('unauthorized', matches === undefined ? 'admin endpoints are closed: set ADMIN_TOKEN (or CLUSTER_TOKEN)' : 'admin endpoint: missing or wrong token');
    }
    await next();
  };
}
