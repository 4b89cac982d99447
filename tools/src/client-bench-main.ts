import { KvClient } from '@shardkv/client';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { envInt } from './bench/config';
import { nodeLineTail, preloadKeys } from './bench/preload';
import { NoSlotMapError, requireSlotMap } from './bench/client-loops';
import { measureSides, reportSides, type SideBySide } from './bench/side-by-side';
import { Cluster } from './cluster';

/**
 * `npm run bench:client`: what direct routing buys. A 3-shard cluster on free ports, preloaded
 * with BENCH_CLIENT_KEYS keys; then, in the same run, GET and PUT with BENCH_CLIENT_CONCURRENCY
 * closed loops of a KvClient through the router and of one with `routing: 'direct'`, in
 * alternating runs (the order flips each round, so drift in the machine's load hits both alike).
 * Prints each run, the medians and the ratios direct/router.
 *
 * Environment (defaults in brackets): BENCH_CLIENT_KEYS [10000], BENCH_CLIENT_VALUE_BYTES [100],
 * BENCH_CLIENT_CONCURRENCY [32], BENCH_CLIENT_ROUNDS [3], BENCH_CLIENT_SECONDS [3] per run.
 */
const KEYS = envInt('BENCH_CLIENT_KEYS', 10_000);
const VALUE_BYTES = envInt('BENCH_CLIENT_VALUE_BYTES', 100);
const CONCURRENCY = envInt('BENCH_CLIENT_CONCURRENCY', 32);
const ROUNDS = envInt('BENCH_CLIENT_ROUNDS', 3);
const RUN_MS = envInt('BENCH_CLIENT_SECONDS', 3) * 1000;

/** The nodes' last lines, printed if the benchmark fails (they are noise otherwise). */
const { lines: nodeLines, sink } = nodeLineTail();

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'shardkv-clientbench-'));
  const cluster = await Cluster.create({ ports: 'free', dataRoot: join(tmp, 'data'), clusterId: 'clientbench', env: { LOG_LEVEL: 'warn' }, sink });
  const clients: KvClient[] = [];
  try {
    await cluster.start();
    const map = await requireSlotMap(cluster.router.url);
    console.log(`cluster map version ${map.version}, ${map.shards} shards; ${KEYS} keys of ${VALUE_BYTES} bytes, ${CONCURRENCY} loops, ${ROUNDS} x ${RUN_MS / 1000} s per side and operation`);
    const router = new KvClient(cluster.router.url, { connections: CONCURRENCY });
    const direct = new KvClient(cluster.router.url, { connections: CONCURRENCY, routing: 'direct' });
    clients.push(router, direct);
    const spec: SideBySide = { baseline: { name: 'router', client: router }, candidate: { name: 'direct', client: direct }, keys: await preloadKeys((e) => router.mput(e), 'cbench', KEYS, VALUE_BYTES), valueBytes: VALUE_BYTES, concurrency: CONCURRENCY, rounds: ROUNDS, runMs: RUN_MS };
    reportSides(spec, await measureSides(spec), `npm run bench:client (BENCH_CLIENT_KEYS=${KEYS}, BENCH_CLIENT_CONCURRENCY=${CONCURRENCY}, BENCH_CLIENT_ROUNDS=${ROUNDS}, BENCH_CLIENT_SECONDS=${RUN_MS / 1000})`);
  } catch (err) {
    if (!(err instanceof NoSlotMapError)) console.error(nodeLines.join('\n'));
    throw err;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await cluster.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(`bench:client failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
