import { ShardRing } from '@shardkv/router/dist/ring';
import { Cluster } from './cluster';
import { load, Pools, summarize, type Sample, type Target } from './load';

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
const LOAD = { durationMs: DURATION_MS, concurrency: CONCURRENCY };

async function main(): Promise<void> {
  const cluster = await Cluster.create({ ports: 'free', env: { LOG_LEVEL: 'warn' } });
  await cluster.start();
  const pools = new Pools(CONCURRENCY);
  const pool = (url: string) => pools.get(url);
  try {
    const ring = new ShardRing(cluster.shards.map((s) => s.id));
    const leaderOf = (key: string) => cluster.shards.find((s) => s.id === ring.shardFor(key))!.leader.url;
    const keys = Array.from({ length: KEYS }, (_, i) => `bench-${i}`);
    const value = 'v'.repeat(50);
    const get = (base: (k: string) => string): Target => (k) => ({ pool: pool(base(k)), method: 'GET', path: `/get?key=${encodeURIComponent(k)}` });
    const put = (base: (k: string) => string): Target => (k) => ({ pool: pool(base(k)), method: 'POST', path: '/put', body: JSON.stringify({ key: k, value }) });
    const viaRouter = () => cluster.router.url;

    await load(put(viaRouter), keys, LOAD); // preload every key, warm up pools and JIT
    const results: Record<string, Sample[]> = {};
    const scenarios: Array<[string, Target]> = [
      ['GET direct to leader (baseline)', get(leaderOf)],
      ['GET through router', get(viaRouter)],
      ['PUT direct to leader (baseline)', put(leaderOf)],
      ['PUT through router', put(viaRouter)],
    ];
    for (let r = 0; r < ROUNDS; r += 1) {
      for (const [name, target] of scenarios) (results[name] ??= []).push(await load(target, keys, LOAD));
    }
    print(results);
  } finally {
    await pools.close();
    await cluster.stop();
  }
}

function print(results: Record<string, Sample[]>): void {
  const rows = Object.entries(results).map(([name, s]) => ({ name, ...summarize(s, DURATION_MS) }));
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
