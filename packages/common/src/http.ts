import { timingSafeEqual } from 'node:crypto';
import type Koa from 'koa';
import bodyParser from 'koa-bodyparser';
import { BODY_BYTES_MAX } from './api';
import { ERRORS, KvError } from './errors';
import type { Logger } from './log';

/**
 * Turns every thrown error into the JSON error shape `{"error":{"code","message"}}` with the
 * status from the error table. Anything unexpected is logged and answered as a 500, never a
 * crash. A request no route matched becomes `route_not_found`.
 */
export function errorMiddleware(log: Logger): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new KvError('route_not_found', `no route for ${ctx.method} ${ctx.path}`);
      }
    } catch (err) {
      const kv = toKvError(err);
      if (kv.code === 'internal') log.error({ err, path: ctx.path }, 'unhandled error');
      ctx.status = kv.status;
      ctx.body = kv.toBody();
    }
  };
}

/** Maps errors thrown by koa-bodyparser and @koa/router onto the error table. */
function toKvError(err: unknown): KvError {
  if (err instanceof KvError) return err;
  const e = err as { type?: string; status?: number; message?: string };
  if (e.type === 'entity.too.large' || e.status === 413) {
    return new KvError('body_too_large', `request body is larger than ${BODY_BYTES_MAX} bytes`);
  }
  // koa-bodyparser's strict mode refuses a top-level scalar with this message.
  if (e.status === 400 && e.message?.includes('only supports object and array')) {
    return new KvError('invalid_body', 'request body must be a JSON object');
  }
  // Every other 400 that is not ours comes from the body parser: the JSON did not parse.
  if (e.type === 'entity.parse.failed' || e.status === 400) {
    return new KvError('invalid_json', `request body is not valid JSON: ${e.message ?? 'parse error'}`);
  }
  if (e.status === 415) return new KvError('unsupported_media_type', 'request body must be application/json');
  // @koa/router answers 501 for a method no route uses at all; for a client that is still a 405.
  if (e.status === 405 || e.status === 501) return new KvError('method_not_allowed', e.message ?? 'method not allowed');
  return new KvError('internal', 'internal error');
}

/**
 * JSON bodies only, with a hard size limit checked against Content-Length and while streaming,
 * so an oversized body is refused before it is parsed. `strict` refuses a top-level scalar.
 */
export function jsonBody(bytesMax: number = BODY_BYTES_MAX): Koa.Middleware {
  return bodyParser({ enableTypes: ['json'], jsonLimit: `${bytesMax}b`, strict: true });
}

/** Refuses a request whose body is not declared as JSON, before it is read. */
export const requireJson: Koa.Middleware = async (ctx, next) => {
  if (!ctx.is('application/json')) {
    throw new KvError('unsupported_media_type', 'Content-Type must be application/json');
  }
  await next();
};

/**
 * Guards node-to-node endpoints. Runs before routing, so an unauthenticated caller learns nothing
 * about which internal routes exist. Without a token configured the guard is off (local use).
 */
export function internalAuth(token: string | undefined): Koa.Middleware {
  const expected = token === undefined ? undefined : Buffer.from(`Bearer ${token}`);
  return async (ctx, next) => {
    if (expected !== undefined && isInternalPath(ctx.path)) {
      const got = Buffer.from(ctx.get('authorization'));
      if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
        throw new KvError('unauthorized', 'internal endpoint: missing or wrong cluster token');
      }
    }
    await next();
  };
}

/**
 * Whether a request path addresses /internal/*, judged the way a lenient router might match it:
 * percent-decoded, case-folded, with repeated slashes collapsed. The guard must never be
 * narrower than the routing, or `/INTERNAL/snapshot` would slip past it.
 */
export function isInternalPath(path: string): boolean {
  let p = path;
  try {
    p = decodeURIComponent(path);
  } catch {
    // an undecodable path is judged as it is
  }
  return p.toLowerCase().replace(/\/+/g, '/').startsWith('/internal');
}

export function authHeaders(token: string | undefined): Record<string, string> {
  return token === undefined ? {} : { authorization: `Bearer ${token}` };
}

export function statusOf(code: keyof typeof ERRORS): number {
  return ERRORS[code].status;
}
