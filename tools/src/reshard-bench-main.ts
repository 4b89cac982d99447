import { KvClient } from '@shardkv/client';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { envInt } from './bench/config';
import { OpLog } from './bench/reshard-ops';
import { addShardOnline, CUTOVER_MARGIN_MS, migrationFigures, removeShardOnline, type MigrationSpec } from './bench/reshard-phases';
import { printReport, writeReport, type ReshardReport } from './bench/reshard-report';
import { keySet, loadKeys, LogWatch, nowMs, startLoops, type RunningLoops } from './bench/reshard-run';
import { Cluster } from './cluster';
import { formatLine } from './format';

/**
 * `npm run bench:reshard`: what online resharding costs the clients. A 3-shard cluster on free
 * ports (temp data directory) is loaded with BENCH_RESHARD_KEYS keys through POST /load; client
 * loops (KvClient through the router, 50% get / 50% put of loaded keys) then run throughout:
 * a baseline window, a 4th shard added online (until the map shows no migration), a quiet window,
 * and the same shard removed again. Prints each migration's figures against the targets and
 * writes bench-results/reshard-<timestamp>.json.
 *
 * Environment (defaults in brackets): BENCH_RESHARD_KEYS [1000000], BENCH_RESHARD_CONCURRENCY [16],
 * BENCH_RESHARD_BASELINE_SECONDS [10], BENCH_RESHARD_QUIET_SECONDS [10],
 * BENCH_RESHARD_MIGRATION_MINUTES_MAX [10] per migration, BENCH_RESHARD_RUN_MINUTES_MAX [40] in all.
 */
const KEYS = envInt('BENCH_RESHARD_KEYS', 1_000_000);
const CONCURRENCY = envInt('BENCH_RESHARD_CONCURRENCY', 16);
const BASELINE_MS = envInt('BENCH_RESHARD_BASELINE_SECONDS', 10) * 1000;
const QUIET_MS = envInt('BENCH_RESHARD_QUIET_SECONDS', 10) * 1000;
const MIGRATION_MS_MAX = envInt('BENCH_RESHARD_MIGRATION_MINUTES_MAX', 10) * 60_000;
const RUN_MS_MAX = envInt('BENCH_RESHARD_RUN_MINUTES_MAX', 40) * 60_000;
/** The loops' first second is not measured: connections opening, JIT warming. */
const WARMUP_MS = 1000;
/** Lines of `kv gen`'s size (~50 bytes), as bench:load uses. */
const VALUE_BYTES = 34;

/** What the run holds that must be let go of however it ends. */
interface Held {
  cluster?: Cluster;
  clients: KvClient[];
  loops?: RunningLoops;
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'shardkv-reshardbench-'));
  const watch = new LogWatch(formatLine);
  const run = new AbortController();
  const timer = setTimeout(() => run.abort(new Error(`the run took over ${RUN_MS_MAX / 60_000} minutes (BENCH_RESHARD_RUN_MINUTES_MAX)`)), RUN_MS_MAX);
  process.once('SIGINT', () => run.abort(new Error('interrupted')));
  const held: Held = { clients: [] };
  try {
    const report = await abortable(measure(tmp, watch, run.signal, held), run.signal);
    printReport(report);
    console.log(`written to ${writeReport(report)}`);
  } catch (err) {
    console.error(`the nodes' last lines:\n${watch.lastLines.join('\n')}`);
    throw err;
  } finally {
    clearTimeout(timer);
    await held.loops?.stop();
    await Promise.all(held.clients.map((c) => c.close()));
    await held.cluster?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function measure(tmp: string, watch: LogWatch, signal: AbortSignal, held: Held): Promise<ReshardReport> {
  const loadAverage1mAtStart = loadavg()[0]!;
  const cluster = (held.cluster = await Cluster.create({ ports: 'free', dataRoot: join(tmp, 'data'), clusterId: 'reshardbench', env: { LOG_LEVEL: 'warn' }, sink: watch.sink }));
  await cluster.start();
  const client = new KvClient(cluster.router.url, { connections: CONCURRENCY });
  const admin = new KvClient(cluster.router.url, { adminToken: cluster.token });
  held.clients.push(client, admin);
  const set = keySet(KEYS, VALUE_BYTES);
  console.log(`loading ${KEYS} keys through POST /load ...`);
  const load = await loadKeys(client, set);
  const retried = Object.entries(load.retriedByCode).map(([code, n]) => `${n} ${code}`).join(', ');
  console.log(`loaded in ${load.seconds.toFixed(1)} s${retried === '' ? '' : ` (entries sent again after a failure: ${retried})`}; ${CONCURRENCY} client loops start`);
  const ops = new OpLog();
  held.loops = startLoops(client, set, CONCURRENCY, ops);
  const baseline = await quietWindow(ops, WARMUP_MS, BASELINE_MS, signal);
  console.log(`baseline: ${baseline.okOpsPerSec.toFixed(0)} ops/s; adding a shard`);
  const spec: MigrationSpec = { cluster, admin, watch, signal, timeoutMs: MIGRATION_MS_MAX, log: (l) => console.log(`  ${l}`) };
  const added = await addShardOnline(spec);
  console.log(`added ${added.shard} in ${((added.endMs - added.startMs) / 1000).toFixed(1)} s; quiet window`);
  const quiet = await quietWindow(ops, 0, QUIET_MS, signal);
  console.log(`removing ${added.shard}`);
  const removed = await removeShardOnline(spec, added.shard);
  console.log(`removed in ${((removed.endMs - removed.startMs) / 1000).toFixed(1)} s`);
  await sleep(CUTOVER_MARGIN_MS, undefined, { signal }); // the loops run past the last cutover window
  await held.loops.stop();
  const config = { keys: KEYS, concurrency: CONCURRENCY, baselineSeconds: BASELINE_MS / 1000, quietSeconds: QUIET_MS / 1000, migrationMinutesMax: MIGRATION_MS_MAX / 60_000 };
  const nodeWarnings = { count: watch.warningCount, kept: watch.warnings };
  return { config, load, loadAverage1mAtStart, baseline, quiet, add: { migration: added, figures: migrationFigures(added, ops) }, remove: { migration: removed, figures: migrationFigures(removed, ops) }, nodeWarnings };
}

/** The loops' figures over `windowMs` after `skipMs`, nothing else happening. */
async function quietWindow(ops: OpLog, skipMs: number, windowMs: number, signal: AbortSignal) {
  await sleep(skipMs, undefined, { signal });
  const from = nowMs();
  await sleep(windowMs, undefined, { signal });
  return ops.window(from, nowMs());
}

/** `work`, or the signal's reason as soon as it aborts (the finally in main then stops everything `work` holds). */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => {}); // once aborted, its own later failure is noise
  return new Promise<T>((resolve, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
    work.then(resolve, reject);
  });
}

main().catch((err: unknown) => {
  console.error(`bench:reshard failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
