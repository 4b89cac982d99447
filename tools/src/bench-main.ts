import { performance } from 'node:perf_hooks';
import { ShardRing } from '@shardkv/router/dist/ring';
import { Pool } from 'undici';
import { Cluster } from './cluster';

/**
 * `npm run bench`: a first benchmark. Starts a cluster on free ports and measures GET and PUT
 * through the router and, in the same run, straight to each key's leader (one hop less) as the
 * baseline. Rounds are interleaved so that machine noise hits both sides alike; figures are
 * reported as ratios to that baseline. The load generator is Node on the same machine, so the
 * absolute numbers are a floor, not a ceiling.
 */
const DURATION_MS = Number(process.env.BENCH_SECONDS ?? 4) * 1000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const KEYS = 1000;

interface Sample {
  ok: number;
  errors: number;
  latenciesMs: number[];
}

type Target = (key: string) => { pool: Pool; path: string; body?: string; method: 'GET' | 'POST' };

async function load(target: Target, keys: string[]): Promise<Sample> {
  const s: Sample = { ok: 0, errors: 0, latenciesMs: [] };
  const end = performance.now() + DURATION_MS;
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
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return s;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

function summarize(samples: Sample[]) {
  const ok = samples.reduce((a, s) => a + s.ok, 0);
  const errors = samples.reduce((a, s) => a + s.errors, 0);
  const lat = samples.flatMap((s) => s.latenciesMs).sort((a, b) => a - b);
  return { rps: ok / ((DURATION_MS / 1000) * samples.length), p50: pct(lat, 50), p99: pct(lat, 99), errors };
}

async function main(): Promise<void> {
  const cluster = await Cluster.create({ ports: 'free', env: { LOG_LEVEL: 'warn' } });
  await cluster.start();
  const pools = new Map<string, Pool>();
  const pool = (url: string) => pools.get(url) ?? pools.set(url, new Pool(url, { connections: CONCURRENCY })).get(url)!;
  try {
    const ring = new ShardRing(cluster.shards.map((s) => s.id));
    const leaderOf = (key: string) => cluster.shards.find((s) => s.id === ring.shardFor(key))!.leader.url;
    const keys = Array.from({ length: KEYS }, (_, i) => `bench-${i}`);
    const value = 'v'.repeat(50);
    const get = (base: (k: string) => string): Target => (k) => ({ pool: pool(base(k)), method: 'GET', path: `/get?key=${encodeURIComponent(k)}` });
    const put = (base: (k: string) => string): Target => (k) => ({ pool: pool(base(k)), method: 'POST', path: '/put', body: JSON.stringify({ key: k, value }) });
    const viaRouter = () => cluster.router.url;

    await load(put(viaRouter), keys); // preload every key, warm up pools and JIT
    const results: Record<string, Sample[]> = {};
    const scenarios: Array<[string, Target]> = [
      ['GET direct to leader (baseline)', get(leaderOf)],
      ['GET through router', get(viaRouter)],
      ['PUT direct to leader (baseline)', put(leaderOf)],
      ['PUT through router', put(viaRouter)],
    ];
    for (let r = 0; r < ROUNDS; r += 1) {
      for (const [name, target] of scenarios) (results[name] ??= []).push(await load(target, keys));
    }
    print(results);
  } finally {
    await Promise.all([...pools.values()].map((p) => p.close()));
    await cluster.stop();
  }
}

function print(results: Record<string, Sample[]>): void {
  const rows = Object.entries(results).map(([name, s]) => ({ name, ...summarize(s) }));
  const base = (op: string) => rows.find((r) => r.name.startsWith(op) && r.name.includes('baseline'))!.rps;
  console.log(`\n${ROUNDS} interleaved rounds x ${DURATION_MS / 1000} s, ${CONCURRENCY} concurrent clients, ${KEYS} keys, 50-byte values\n`);
  console.log(`${'scenario'.padEnd(34)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)} ${'vs baseline'.padStart(12)}`);
  for (const r of rows) {
    const ratio = r.rps / base(r.name.slice(0, 3));
    console.log(`${r.name.padEnd(34)} ${r.rps.toFixed(0).padStart(8)} ${r.p50.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)} ${String(r.errors).padStart(7)} ${ratio.toFixed(2).padStart(11)}x`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
