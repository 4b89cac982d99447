import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

/**
 * The HTTP load generator shared by the benchmarks. `load` is a closed loop: `concurrency`
 * workers, each sending its next request as soon as the previous one answers, for `durationMs`.
 * `loadAtRate` is an open loop at a fixed request rate, for latency at a given load. Node on the
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
      const started = performance.now();
      record(s, await send(target(key)), started);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return s;
}

/** One request; true for a 200. Transport failures count as errors, they do not end the run. */
async function send(t: ReturnType<Target>): Promise<boolean> {
  try {
    const res = await t.pool.request({ method: t.method, path: t.path, body: t.body, headers: t.body ? { 'content-type': 'application/json' } : undefined });
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    return false;
  }
}

function record(s: Sample, ok: boolean, startedMs: number): void {
  if (ok) s.ok += 1;
  else s.errors += 1;
  s.latenciesMs.push(performance.now() - startedMs);
}

export interface RateOptions {
  durationMs: number;
  /** Requests started per second, on a fixed schedule whatever the answers do (open loop). */
  ratePerSec: number;
  /** A bound on requests in flight: past it, due requests wait (and their wait counts). */
  inFlightMax: number;
}

/**
 * The open-loop, rate-limited mode (what wrk2 does): request n is due at start + n / rate, and
 * its latency is measured from that due time, not from when it was actually sent. A closed loop
 * (as in `load`) sends less when the server is slow and so hides the queueing a real client
 * population would see ("coordinated omission"); this one does not. Timers fire every ~1 ms, so
 * requests go out in small bursts of rate/1000.
 */
export async function loadAtRate(target: Target, keys: string[], { durationMs, ratePerSec, inFlightMax }: RateOptions): Promise<Sample> {
  const s: Sample = { ok: 0, errors: 0, latenciesMs: [] };
  const total = Math.floor((ratePerSec * durationMs) / 1000);
  const start = performance.now();
  let sent = 0;
  let inFlight = 0;
  await new Promise<void>((resolve) => {
    const fire = (n: number) => {
      inFlight += 1;
      void send(target(keys[n % keys.length]!)).then((ok) => {
        inFlight -= 1;
        record(s, ok, start + (n * 1000) / ratePerSec);
        if (sent === total && inFlight === 0) resolve();
      });
    };
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * ratePerSec) / 1000));
      for (; sent < due && inFlight < inFlightMax; sent += 1) fire(sent);
      if (sent < total) setTimeout(tick, 1);
      else if (inFlight === 0) resolve();
    };
    tick();
  });
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
