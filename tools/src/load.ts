import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

/**
 * The closed-loop HTTP load generator shared by the benchmarks: `concurrency` workers, each
 * sending its next request as soon as the previous one answers, for `durationMs`. Node on the
 * same machine as the servers, so absolute figures are a floor, not a ceiling.
 */
export interface LoadOptions {
  durationMs: number;
  concurrency: number;
}

export interface Sample {
  ok: number;
  errors: number;
  latenciesMs: number[];
}

export type Target = (key: string) => { pool: Pool; path: string; body?: string; method: 'GET' | 'POST' };

export interface Summary {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

export async function load(target: Target, keys: string[], { durationMs, concurrency }: LoadOptions): Promise<Sample> {
  const s: Sample = { ok: 0, errors: 0, latenciesMs: [] };
  const end = performance.now() + durationMs;
  let i = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const key = keys[(i += 1) % keys.length]!;
      const t = target(key);
      const started = performance.now();
      try {
        const res = await t.pool.request({ method: t.method, path: t.path, body: t.body, headers: t.body ? { 'content-type': 'application/json' } : undefined });
        await res.body.dump();
        if (res.statusCode === 200) s.ok += 1;
        else s.errors += 1;
      } catch {
        s.errors += 1;
      }
      s.latenciesMs.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return s;
}

export function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

/** Rounds of the same scenario pooled: req/s over their total time, percentiles over all requests. */
export function summarize(samples: Sample[], durationMs: number): Summary {
  const ok = samples.reduce((a, s) => a + s.ok, 0);
  const errors = samples.reduce((a, s) => a + s.errors, 0);
  const lat = samples.flatMap((s) => s.latenciesMs).sort((a, b) => a - b);
  return { rps: ok / ((durationMs / 1000) * samples.length), p50: pct(lat, 50), p99: pct(lat, 99), errors };
}

/** One keep-alive pool per base URL, `connections` wide, created on first use. */
export class Pools {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly connections: number) {}

  get(url: string): Pool {
    return this.pools.get(url) ?? this.pools.set(url, new Pool(url, { connections: this.connections })).get(url)!;
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
  }
}
