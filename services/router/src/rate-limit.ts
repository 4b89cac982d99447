import { KvError } from '@shardkv/common';
import { createHash } from 'node:crypto';
import type Koa from 'koa';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';

/**
 * Per-client rate limits on the public data API (see the README's *Rate limits*). A client is
 * named by its bearer token when it sends one, else by its remote address; each named client may
 * make `requestsPerWindow` requests through this router per fixed window of `windowMs` (the
 * library's in-memory limiter: the window starts with the client's first request and a refused
 * request still counts in it). A refused request is answered before its body is read, so it costs
 * no parsing and no shard work, and nothing of it was applied: 429 `rate_limited`, definite.
 *
 * One HTTP request is one unit, whatever it carries (an mput of 1,000 entries, a /load of many
 * MiB): the limit bounds how often a client calls the router, the batch and body limits bound how
 * much one call may hold. Counting entries would need the body read first, and for /load (whose
 * lines the router never counts before they leave) a refusal half-way, which would not be definite.
 */
export interface RateLimits {
  /** This router's share of the cluster-wide limit (RATE_LIMIT_REQUESTS / RATE_LIMIT_ROUTERS). */
  requestsPerWindow: number;
  windowMs: number;
}

/** How a request's client was named: a low-cardinality label for the metric, never the client. */
export type ClientKind = 'token' | 'address';

export interface Client {
  kind: ClientKind;
  /** The limiter's key: `t:<sha-256 of the token, 128 bits>` or `a:<address>`. The raw token is never kept. */
  key: string;
}

/** `Authorization: Bearer <token>` (the scheme in any case, RFC 9110) names the client; else its address. */
export function clientOf(authorization: string, address: string | undefined): Client {
  const m = /^bearer +(\S+) *$/i.exec(authorization);
  if (m !== null) return { kind: 'token', key: `t:${createHash('sha256').update(m[1]!).digest('base64url').slice(0, 22)}` };
  return { kind: 'address', key: `a:${address ?? 'unknown'}` };
}

/** Whole seconds for `Retry-After`, rounded up, never 0 (a 0 would invite an immediate retry into the same window). */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

export type Verdict = { ok: true } | { ok: false; retryAfterMs: number };

/**
 * The limiter: one counter per client and window, in this process's memory. A client's entry is
 * dropped when its window ends, so the memory held is one small entry per client seen in the last
 * window.
 */
export class ClientLimiter {
  private readonly limiter: RateLimiterMemory;

  constructor(readonly limits: RateLimits) {
    if (!Number.isSafeInteger(limits.requestsPerWindow) || limits.requestsPerWindow < 1) throw new Error(`requestsPerWindow must be a positive integer, not ${limits.requestsPerWindow}`);
    if (!(limits.windowMs > 0)) throw new Error(`windowMs must be positive, not ${limits.windowMs}`);
    // The library counts its window in seconds; fractions are kept (it multiplies back to ms).
    this.limiter = new RateLimiterMemory({ points: limits.requestsPerWindow, duration: limits.windowMs / 1000, keyPrefix: '' });
  }

  async take(key: string): Promise<Verdict> {
    try {
      await this.limiter.consume(key, 1);
      return { ok: true };
    } catch (res) {
      // The library rejects with its result when the client is over the limit, with an Error only on a fault of its own.
      if (!(res instanceof RateLimiterRes)) throw res;
      return { ok: false, retryAfterMs: Math.max(0, res.msBeforeNext) };
    }
  }
}

/**
 * A route middleware: counts the request against its client and answers 429 `rate_limited`, with
 * `Retry-After`, when the client is over its limit. Put it first on a route, before the body is read.
 */
export function limitClients(limiter: ClientLimiter, onLimited: (kind: ClientKind) => void): Koa.Middleware {
  const { requestsPerWindow, windowMs } = limiter.limits;
  return async (ctx, next) => {
    const client = clientOf(ctx.get('authorization'), ctx.req.socket.remoteAddress);
    const verdict = await limiter.take(client.key);
    if (!verdict.ok) {
      onLimited(client.kind);
      const seconds = retryAfterSeconds(verdict.retryAfterMs);
      ctx.set('retry-after', String(seconds));
      throw new KvError('rate_limited', `over the rate limit of ${requestsPerWindow} requests per ${windowMs} ms per client (by ${client.kind}) at this router; nothing was applied; retry in ${seconds} s`, { retryAfterMs: verdict.retryAfterMs });
    }
    await next();
  };
}
