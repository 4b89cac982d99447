import { KvClient } from '@shardkv/client';
import { KvGrpcClient } from '@shardkv/router/dist/grpc/client';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { envInt } from './bench/config';
import { nodeLineTail, preloadKeys } from './bench/preload';
import { cpuMsOf } from './bench/cpu';
import { measureSides, reportSides, type SideBySide } from './bench/side-by-side';
import { Cluster } from './cluster';

/**
 * `npm run bench:grpc`: the router's gRPC service against its HTTP API, in the same run. A
 * 3-shard cluster on free ports, preloaded with BENCH_GRPC_KEYS keys; then GET and PUT with
 * BENCH_GRPC_CONCURRENCY closed loops of a KvClient over HTTP (one keep-alive connection per
 * loop) and of a KvGrpcClient (one channel: one HTTP/2 connection, a stream per call), in
 * alternating runs. Both reach the same KvOperations, so the difference is the transport.
 * Prints each run, the medians and the ratios grpc/http, and the CPU time the router and the
 * clients' process spent per 1,000 operations on each side (which a busy machine moves less).
 *
 * Environment (defaults in brackets): BENCH_GRPC_KEYS [10000], BENCH_GRPC_VALUE_BYTES [100],
 * BENCH_GRPC_CONCURRENCY [32], BENCH_GRPC_ROUNDS [3], BENCH_GRPC_SECONDS [3] per run.
 */
const KEYS = envInt('BENCH_GRPC_KEYS', 10_000);
const VALUE_BYTES = envInt('BENCH_GRPC_VALUE_BYTES', 100);
const CONCURRENCY = envInt('BENCH_GRPC_CONCURRENCY', 32);
const ROUNDS = envInt('BENCH_GRPC_ROUNDS', 3);
const RUN_MS = envInt('BENCH_GRPC_SECONDS', 3) * 1000;

/** The nodes' last lines, printed if the benchmark fails (they are noise otherwise). */
const { lines: nodeLines, sink } = nodeLineTail();

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'shardkv-grpcbench-'));
  const cluster = await Cluster.create({ ports: 'free', dataRoot: join(tmp, 'data'), clusterId: 'grpcbench', env: { LOG_LEVEL: 'warn' }, sink });
  let http: KvClient | undefined;
  let grpc: KvGrpcClient | undefined;
  try {
    await cluster.start();
    console.log(`router HTTP ${cluster.router.url}, gRPC ${cluster.router.grpcAddress}; ${KEYS} keys of ${VALUE_BYTES} bytes, ${CONCURRENCY} loops, ${ROUNDS} x ${RUN_MS / 1000} s per side and operation`);
    http = new KvClient(cluster.router.url, { connections: CONCURRENCY });
    const g = (grpc = new KvGrpcClient(cluster.router.grpcAddress!));
    // Over gRPC's MPut, so that the bench fails early if the service does not answer at all.
    const spec: SideBySide = { baseline: { name: 'http', client: http }, candidate: { name: 'grpc', client: grpc }, keys: await preloadKeys((e) => g.mput(e), 'gbench', KEYS, VALUE_BYTES), valueBytes: VALUE_BYTES, concurrency: CONCURRENCY, rounds: ROUNDS, runMs: RUN_MS, cpu: cpuProcesses(cluster) };
    reportSides(spec, await measureSides(spec), `npm run bench:grpc (BENCH_GRPC_KEYS=${KEYS}, BENCH_GRPC_CONCURRENCY=${CONCURRENCY}, BENCH_GRPC_ROUNDS=${ROUNDS}, BENCH_GRPC_SECONDS=${RUN_MS / 1000})`);
  } catch (err) {
    console.error(nodeLines.join('\n'));
    throw err;
  } finally {
    grpc?.close();
    await http?.close();
    await cluster.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The router (where the transports differ) and this process (the two clients), per 1,000 operations. */
function cpuProcesses(cluster: Cluster): NonNullable<SideBySide['cpu']> {
  const self = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  return [{ name: 'router', ms: () => cpuMsOf(cluster.process(cluster.router.name).pid) }, { name: 'client', ms: self }];
}

main().catch((err: unknown) => {
  console.error(`bench:grpc failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
