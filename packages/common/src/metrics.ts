import type Koa from 'koa';
import { collectDefaultMetrics, Counter, type Registry } from 'prom-client';
import { ERRORS, type ErrorCode } from './errors';

/**
 * Request latency buckets, in seconds: from 0.5 ms (a coalesced read on an idle shard) to 5 s
 * (the router's upstream deadline), roughly 1-2.5-5 per decade, so that histogram_quantile
 * resolves p50 and p99 to within a bucket at every load we have measured.
 */
export const LATENCY_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * Adds the default process and Node runtime metrics (process_*, nodejs_*) to a process's
 * registry. Called once, from main.ts: they watch the event loop and the GC from then on.
 */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
}

/** What every service counts about its HTTP requests: one series per route pattern, never per key. */
export interface HttpMetrics {
  requests: Counter<'route' | 'method' | 'status'>;
  errors: Counter<'code'>;
}

/**
 * The error counter has a series for every code of the table from the start, at 0: a series that
 * appears only with its first error makes that error invisible to rate() and increase(), which
 * need a sample before the change (the Prometheus docs' "avoid missing metrics"). Requests are
 * not: their statuses are not a fixed set, and a route's first request among many is no loss.
 */
export function httpMetrics(prefix: string, registry: Registry): HttpMetrics {
  const errors = new Counter({ name: `${prefix}_errors_total`, help: 'Requests answered with an error, by error code (the error table)', labelNames: ['code'], registers: [registry] });
  for (const code of Object.keys(ERRORS) as ErrorCode[]) errors.inc({ code }, 0);
  return {
    requests: new Counter({ name: `${prefix}_requests_total`, help: 'HTTP requests answered, by route pattern, method and status', labelNames: ['route', 'method', 'status'], registers: [registry] }),
    errors,
  };
}

/**
 * Counts every request once it is answered, by the route pattern @koa/router matched (so
 * `/admin/shards/:id`, not the id), or `unmatched`. Put it outermost, so that it sees the status
 * the error middleware set. `observe` gets the route and the seconds it took, for histograms.
 */
export function countRequests(m: HttpMetrics, observe?: (route: string, seconds: number) => void): Koa.Middleware {
  return async (ctx, next) => {
    const startNs = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const route = (ctx as { _matchedRoute?: string | RegExp })._matchedRoute;
      const label = typeof route === 'string' ? route : 'unmatched';
      m.requests.inc({ route: label, method: ctx.method, status: String(ctx.status) });
      observe?.(label, Number(process.hrtime.bigint() - startNs) / 1e9);
    }
  };
}

/** GET /metrics: the registry in the Prometheus text format. */
export function serveMetrics(registry: Registry): Koa.Middleware {
  return async (ctx) => {
    ctx.type = registry.contentType;
    ctx.body = await registry.metrics();
  };
}
