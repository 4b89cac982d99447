import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { etcdLeaderIndex, startEtcdTarget, verifyEtcd, type EtcdTarget } from './bench/etcd-target';
import { benchKeys, benchValue, fmtRun, medianRun, OPS, progress, readConfig, type BenchConfig, type Op, type Run, type System } from './bench/config';
import { CpuAccount } from './bench/cpu';
import { chooseDriver, type Driver } from './bench/drivers';
import { profile, profilerEnv } from './bench/profile';
import { writeReport, type OpResult, type Report } from './bench/report';
import { ourSystem, seed, skeletonFor, skeletonSystems, systemsFor, verifyKv, type Systems } from './bench/systems';
import { tailPhase } from './bench/tail';
import { Cluster } from './cluster';
import { formatLine } from './format';
import { startSkeletons, stopSkeletons, type Skeletons } from './skeletons';

/**
 * `npm run bench`: our cluster against reference skeletons built from the same libraries and
 * against etcd 3.4, in one run, on one machine (see skeletons.ts and bench/etcd-target.ts):
 *
 *   GET      our router -> leader            vs skeleton (a) router -> backend (2 hops each)
 *                                            vs etcd: linearizable range through one member's gateway
 *   PUT      our router -> leader -> follower, durable (LMDB fsync) on both
 *                                            vs skeleton (b) router -> leader -> follower, one
 *                                               request per write, Maps, no durability
 *                                            vs etcd: put, 3 members, fsync'd by a quorum
 *   MIX 2:1  GET:PUT through our router      vs the same mix through (b)'s router and through etcd
 *
 * Closed-loop throughput with wrk (same -t/-c for every system; the Lua scripts pick random keys
 * of the seeded set from requests prebuilt at init), in interleaved rounds (ours, skeleton, etcd,
 * ours, ...) so that machine noise hits all alike: the tables show the median of the rounds and
 * the ratios. Over the PUT rounds, the CPU time per 1,000 operations of every process. Then the
 * tail phase (bench/tail.ts): servers and load generator pinned to separate cores, ours and the
 * skeleton alternating at one open-loop rate both sustain. Results: bench-results/bench.json and
 * bench-results/bench.svg.
 *
 * Environment (read once, bench/config.ts):
 *   BENCH_SECONDS          duration of each measured closed-loop run (default 5)
 *   BENCH_ROUNDS           interleaved rounds (default 3)
 *   BENCH_CONNECTIONS      wrk -c, and the Node generators' pool width (default 64)
 *   BENCH_THREADS          wrk -t (default 2)
 *   BENCH_KEYS             keys seeded in every system and drawn from at random (default 1000)
 *   BENCH_WARMUP_SECONDS   one unmeasured run per system and operation first (default 1)
 *   BENCH_ETCD             1 (default) to include etcd, 0 to leave it out
 *   BENCH_ETCD_MEMBER      `leader` (default) or `follower`: the member wrk talks to
 *   BENCH_TAIL_SECONDS     each open-loop run of the tail phase, and each run finding its peak (default 3)
 *   BENCH_TAIL_RUNS        alternating open-loop runs per system and operation (default 5)
 *   BENCH_TAIL_PEAK_RUNS   alternating closed-loop runs that find the peak in the pinned placement (default 2)
 *   BENCH_PIN              1 (default) pins with taskset in the tail phase, 0 does not
 *   BENCH_LOADGEN          `wrk` (default; installed with apt-get if missing) or `node`
 *   BENCH_PROFILE=1        instead: a CPU profile (V8 sampler) of every node under the PUT load,
 *                          ours and skeleton (b); prints the top self-time functions and keeps the
 *                          profiles and that summary in bench-results/profiles/
 */
interface Env {
  tmp: string;
  cluster?: Cluster;
  skeletons?: Skeletons;
  etcd?: EtcdTarget;
  /** wrk and generator processes in flight, stopped by pid if the run is interrupted. */
  children: Set<ChildProcess>;
}

let interrupted = false;

async function main(): Promise<void> {
  const cfg = readConfig();
  const env: Env = { tmp: mkdtempSync(join(tmpdir(), 'shardkv-bench-')), children: new Set() };
  const cleanup = once(() => teardown(env));
  // Ctrl-C skips `finally`: stop what we started and remove the temp data root, then exit.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      interrupted = true;
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    await run(cfg, env);
  } catch (err) {
    if (interrupted) return; // the nodes' lines would only tell that they were stopped
    console.error(`\nlast node lines:\n${nodeLines.join('\n')}`);
    throw err;
  } finally {
    await cleanup();
  }
}

async function run(cfg: BenchConfig, env: Env): Promise<void> {
  const driver = chooseDriver(cfg, env.tmp, env.children);
  const profiling = cfg.profile ? profilerEnv(env.tmp) : {};
  env.cluster = await Cluster.create({ ports: 'free', dataRoot: join(env.tmp, 'data'), clusterId: 'bench', env: { LOG_LEVEL: 'warn', ...profiling }, sink });
  await env.cluster.start();
  env.skeletons = await startSkeletons(sink, profiling);
  const etcdSkipped = cfg.profile ? 'BENCH_PROFILE=1' : await startEtcd(cfg, env);
  const systems: Systems = { ours: ourSystem(env.cluster), ...skeletonSystems(env.skeletons), etcd: env.etcd?.system };
  const keys = benchKeys(cfg.keyCount);
  const value = benchValue(cfg.valueBytes);
  await Promise.all([systems.ours, systems.skeletonA, systems.skeletonB, ...(systems.etcd ? [systems.etcd] : [])].map((s) => seed(s, keys, value)));
  if (cfg.profile) return profile({ cfg, tmp: env.tmp, cluster: env.cluster, skeletons: env.skeletons, driver, systems });
  await measure(cfg, env, driver, systems, etcdSkipped);
}

/** Starts etcd unless BENCH_ETCD=0; undefined when it runs, else why it is not measured. */
async function startEtcd(cfg: BenchConfig, env: Env): Promise<string | undefined> {
  if (!cfg.etcd) return 'BENCH_ETCD=0';
  try {
    env.etcd = await startEtcdTarget(cfg, join(env.tmp, 'etcd'), sink);
    return undefined;
  } catch (err) {
    const why = (err as Error).message.split('\n')[0]!;
    console.log(`\n*** etcd is not measured: ${why}\n`);
    return why;
  }
}

async function teardown(env: Env): Promise<void> {
  for (const c of env.children) c.kill('SIGKILL');
  await Promise.all([env.cluster?.stop(), stopSkeletons(env.skeletons), env.etcd?.cluster.stop()]);
  rmSync(env.tmp, { recursive: true, force: true });
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}

/**
 * The nodes' last lines (LOG_LEVEL=warn; etcd's at warn too), shown only when the run fails, where
 * they say why. The count is reported: a warning during the measurement (e.g. a failover because a
 * starved node missed its health checks) means the figures are not of the steady state.
 */
const nodeLines: string[] = [];
let nodeLineCount = 0;
const NODE_LINES_KEPT_MAX = 100;
/** Sources whose lines no longer count: etcd once it is being stopped (its shutdown is chatty). */
const muted = new Set<string>();
function sink(name: string, line: string): void {
  if (muted.has(name) || (name === 'supervisor' && [...muted].some((m) => line.startsWith(m)))) return;
  nodeLineCount += 1;
  nodeLines.push(formatLine(name, line));
  if (nodeLines.length > NODE_LINES_KEPT_MAX) nodeLines.shift();
}

// ---- the measurement ----------------------------------------------------------------------

async function measure(cfg: BenchConfig, env: Env, driver: Driver, systems: Systems, etcdSkipped: string | undefined): Promise<void> {
  // Startup warnings (a leader trying its follower before it listens) are not the measurement's.
  nodeLineCount = 0;
  nodeLines.length = 0;
  const loadAverage1mAtStart = loadavg()[0]!;
  console.log(`benchmark: ${cfg.rounds} interleaved rounds x ${cfg.seconds} s per system and operation, load generator: ${driver.name}, ${cfg.keyCount} keys, ${cfg.valueBytes}-byte values${systems.etcd ? `, etcd via ${systems.etcd.label}` : ''}`);
  await warmUpAndVerify(cfg, driver, systems);
  const cpu = new CpuAccount();
  const rounds = await closedLoopRounds(cfg, driver, systems, cpu);
  const results = Object.fromEntries(OPS.map((op) => [op, opResult(systems, op, rounds[op])])) as Record<Op, OpResult>;
  const etcd = await etcdSummary(env.etcd);
  // etcd is not in the tail comparison: stopped, it takes no CPU from it.
  for (const name of env.etcd?.cluster.names ?? []) muted.add(name);
  await env.etcd?.cluster.stop();
  const servers = [systems.ours, systems.skeletonA, systems.skeletonB].flatMap((s) => s.processes());
  const tail = await tailPhase({ cfg, driver, children: env.children, ours: systems.ours, skeletons: { GET: systems.skeletonA, PUT: systems.skeletonB }, servers });
  const config = { ...cfg, loadGenerator: driver.name };
  const report: Report = { driverName: driver.name, rounds: cfg.rounds, seconds: cfg.seconds, config, etcd, etcdSkipped, results, tail, cpu: cpu.tables(), warnings: { count: nodeLineCount, last: nodeLines.slice(-10) }, loadAverage1mAtStart };
  writeReport(report);
}

/**
 * JIT, connections and pools warm on every side before anything counts; then each system is
 * asked once whether it holds what the load wrote (the wrk scripts' keys and values are the
 * seeded ones), so that its 200s are real answers.
 */
async function warmUpAndVerify(cfg: BenchConfig, driver: Driver, systems: Systems): Promise<void> {
  for (const op of OPS) for (const sys of systemsFor(systems, op)) await driver.run(sys, op, cfg.warmupSeconds);
  const value = benchValue(cfg.valueBytes);
  await Promise.all([systems.ours, systems.skeletonA, systems.skeletonB].map((s) => verifyKv(s, value)));
  if (systems.etcd) await verifyEtcd(systems.etcd.url, cfg.keyCount, value);
}

type Rounds = Record<Op, Map<System, Run[]>>;

async function closedLoopRounds(cfg: BenchConfig, driver: Driver, systems: Systems, cpu: CpuAccount): Promise<Rounds> {
  const rounds = Object.fromEntries(OPS.map((op) => [op, new Map(systemsFor(systems, op).map((s) => [s, [] as Run[]]))])) as Rounds;
  for (let r = 1; r <= cfg.rounds; r += 1) {
    for (const op of OPS) {
      const line: string[] = [];
      for (const sys of systemsFor(systems, op)) {
        const measured = () => driver.run(sys, op, cfg.seconds);
        const result = op === 'PUT' ? await cpu.measure(sys, measured) : await measured();
        rounds[op].get(sys)!.push(result);
        line.push(`${sys.label} ${fmtRun(result)}`);
      }
      progress(`round ${r}/${cfg.rounds} ${op}: ${line.join(' | ')}`);
    }
  }
  return rounds;
}

function opResult(systems: Systems, op: Op, runs: Map<System, Run[]>): OpResult {
  const side = (sys: System) => ({ system: sys.label, rounds: runs.get(sys)!, median: medianRun(runs.get(sys)!) });
  const out = { ours: side(systems.ours), skeleton: side(skeletonFor(systems, op)) } as OpResult;
  if (systems.etcd) out.etcd = side(systems.etcd);
  return out;
}

/** Which member wrk talked to, and whether etcd's leader stayed the same throughout. */
async function etcdSummary(etcd: EtcdTarget | undefined): Promise<Report['etcd']> {
  if (etcd === undefined) return undefined;
  const leader = await etcdLeaderIndex(etcd.cluster.endpoints);
  return { version: etcd.version, member: etcd.system.label.replace(/^etcd: /, ''), leaderAtStart: etcd.leaderName, leaderAtEnd: leader === undefined ? undefined : etcd.cluster.names[leader] };
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
