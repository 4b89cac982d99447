import { timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type Koa from 'koa';
import { KvError } from './errors';
import type { Logger } from './log';

/**
 * Turns every thrown error into the JSON error shape `{"error":{"code","message"}}` with the
 * status from the error table. Anything unexpected is logged and answered as a 500, never a
 * crash. A request no route matched becomes `route_not_found`. Every error passes here, so
 * `onError` sees every code answered (the services count them by code).
 */
export function errorMiddleware(log: Logger, onError: (code: string) => void = () => {}): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new KvError('route_not_found', `no route for ${ctx.method} ${ctx.path}`);
      }
    } catch (err) {
      const kv = toKvError(err);
      if (kv.code === 'internal') log.error({ err, path: ctx.path }, 'unhandled error');
      onError(kv.code);
      ctx.status = kv.status;
      ctx.body = kv.toBody();
    }
  };
}

/** Maps errors thrown by @koa/router (405/501) onto the error table; anything else is a 500. */
function toKvError(err: unknown): KvError {
  if (err instanceof KvError) return err;
  const e = err as { status?: number; message?: string };
  // @koa/router answers 501 for a method no route uses at all; for a client that is still a 405.
  if (e.status === 405 || e.status === 501) return new KvError('method_not_allowed', e.message ?? 'method not allowed');
  return new KvError('internal', 'internal error');
}

/**
 * Guards node-to-node endpoints. Runs before routing, so an unauthenticated caller learns nothing
 * about which internal routes exist. Without a token configured the guard is off (local use).
 */
export function internalAuth(token: string | undefined): Koa.Middleware {
  const matches = token === undefined ? undefined : bearer(token);
  return async (ctx, next) => {
    if (matches !== undefined && isInternalPath(ctx.path) && !matches(ctx.get('authorization'))) {
      throw new KvError('unauthorized', 'internal endpoint: missing or wrong cluster token');
    }
    await next();
  };
}

/** Whether an Authorization header is `Bearer <token>`, compared in constant time. */
export function bearer(token: string): (header: string) => boolean {
  const expected = Buffer.from(`Bearer ${token}`);
  return (header) => {
    const got = Buffer.from(header);
    return got.length === expected.length && timingSafeEqual(got, expected);
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

/**
 * Starts the HTTP server. Errors Node's parser raises before Koa sees the request (a header block
 * over the limit, a malformed request line) are answered in the same JSON error shape.
 */
export async function listen(app: Koa, port: number, host: string): Promise<Server> {
  const server = app.listen(port, host);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable) return socket.destroy();
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const status = tooLarge ? 431 : 400;
    const body = JSON.stringify({
      error: { code: tooLarge ? 'headers_too_large' : 'bad_request', message: tooLarge ? 'request line and headers exceed 16 KiB' : 'malformed HTTP request' },
    });
    socket.end(`HTTP/1.1 ${status} ${tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  await once(server, 'listening');
  return server;
}

export function authHeaders(token: string | undefined): Record<string, string> {
  return token === undefined ? {} : { authorization: `Bearer ${token}` };
}

/** Whether a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
