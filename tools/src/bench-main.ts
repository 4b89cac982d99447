import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { Pool } from 'undici';
import { Cluster } from './cluster';
import { formatLine } from './format';
import { load, loadAtRate, Pools, summarize, type Target } from './load';
import { startSkeletons, stopSkeletons, type Skeletons } from './skeletons';

/**
 * `npm run bench`: our cluster against reference skeletons built from the same libraries, in one
 * run, on one machine (see skeletons.ts for what they do):
 *
 *   GET          our router -> leader               vs skeleton (a) router -> backend (2 hops each)
 *   PUT          our router -> leader -> follower,  vs skeleton (b) router -> leader -> follower,
 *                durable (LMDB fsync) on both          one request per write, Maps, no durability
 *   MIX 2:1      GET:PUT through our router         vs the same mix through (b)'s router, which
 *                                                      also serves GET (router -> leader). (b)
 *                                                      rather than half (a), half (b): one system
 *                                                      taking both, as ours does.
 *
 * Closed-loop throughput with wrk (`wrk -t2 -c64 -d<N>s`, a Lua script picks random keys from the
 * seeded set and builds the PUT bodies), in interleaved rounds (ours, skeleton, ours, ...), so
 * machine noise hits both alike: the table shows the median of the rounds and the ratio to the
 * skeleton. Then latency at about half our peak: an open-loop run at a fixed rate (half the median
 * req/s) with the Node generator (load.ts `loadAtRate`; latency counted from each request's due
 * time, as wrk2 would), for ours and, at the same rate, the skeleton. wrk2 is not packaged here.
 *
 * Load generator and servers share the 2 cores, so absolute figures are a floor; ratios from the
 * same run are what to compare. Results: bench-results/bench.json and bench-results/bench.svg.
 *
 * Environment:
 *   BENCH_SECONDS          duration of each measured run (default 5)
 *   BENCH_ROUNDS           interleaved rounds (default 3)
 *   BENCH_CONNECTIONS      wrk -c, and the Node generator's pool width (default 64)
 *   BENCH_THREADS          wrk -t (default 2)
 *   BENCH_KEYS             keys seeded in every system and drawn from at random (default 1000)
 *   BENCH_WARMUP_SECONDS   one unmeasured run per system and operation first (default 1)
 *   BENCH_HALF_PEAK_SECONDS  duration of each rate-limited run (default BENCH_SECONDS)
 *   BENCH_LOADGEN          `wrk` (default; installed with apt-get if missing) or `node`
 *   BENCH_PROFILE=1        instead: a CPU profile (V8 sampler) of every node under the PUT load,
 *                          ours and skeleton (b); prints the top self-time functions of the routers
 *                          and leaders and keeps the profiles in bench-results/profiles/
 */
const SECONDS = num('BENCH_SECONDS', 5);
const ROUNDS = num('BENCH_ROUNDS', 3);
const CONNECTIONS = num('BENCH_CONNECTIONS', 64);
const THREADS = num('BENCH_THREADS', 2);
const KEY_COUNT = num('BENCH_KEYS', 1000);
const WARMUP_SECONDS = num('BENCH_WARMUP_SECONDS', 1);
const HALF_PEAK_SECONDS = num('BENCH_HALF_PEAK_SECONDS', SECONDS);
const PROFILE = process.env['BENCH_PROFILE'] === '1';
const VALUE_BYTES = 50;
/** Bounds the open-loop generator: a system that falls behind must not make it grow forever. */
const RATE_IN_FLIGHT_MAX = 1024;
const SEED_IN_FLIGHT = 32;
const TARGETS = { getRatioMin: 1.2, putRatioMin: 1.5, getP99MsMax: 5, putP99MsMax: 10 };
const ROOT = resolve(__dirname, '..', '..');
const OUT_DIR = join(ROOT, 'bench-results');

type Op = 'GET' | 'PUT' | 'MIX';
type Side = 'ours' | 'skeleton';
const OPS: Op[] = ['GET', 'PUT', 'MIX'];

interface Run {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** Closed-loop load at `url` for `seconds`: wrk, or the Node generator when wrk is unavailable. */
interface Driver {
  name: string;
  run(url: string, op: Op, seconds: number): Promise<Run>;
}

interface Env {
  tmp: string;
  cluster?: Cluster;
  skeletons?: Skeletons;
  /** wrk processes in flight, stopped by pid if the run is interrupted. */
  children: Set<ChildProcess>;
}

function num(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
}

const keys = Array.from({ length: KEY_COUNT }, (_, i) => `bench-${i}`);

// ---- lifecycle ----------------------------------------------------------------------------

async function main(): Promise<void> {
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
    const driver = chooseDriver(env);
    const profiling = PROFILE ? profilerEnv(env.tmp) : {};
    env.cluster = await Cluster.create({ ports: 'free', dataRoot: join(env.tmp, 'data'), clusterId: 'bench', env: { LOG_LEVEL: 'warn', ...profiling }, sink });
    await env.cluster.start();
    env.skeletons = await startSkeletons(sink, profiling);
    const urls = { ours: env.cluster.router.url, a: env.skeletons.getRouter.url, b: env.skeletons.putRouter.url };
    await Promise.all([urls.ours, urls.a, urls.b].map(seed));
    if (PROFILE) return await profile(env, driver, urls);
    await measure(driver, urls);
  } catch (err) {
    if (interrupted) return; // the nodes' lines would only tell that they were stopped
    console.error(`\nlast node lines:\n${nodeLines.join('\n')}`);
    throw err;
  } finally {
    await cleanup();
  }
}

async function teardown(env: Env): Promise<void> {
  env.children.forEach((c) => c.kill('SIGKILL'));
  await Promise.all([env.cluster?.stop(), stopSkeletons(env.skeletons)]);
  rmSync(env.tmp, { recursive: true, force: true });
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}

let interrupted = false;

/**
 * The nodes' last lines (LOG_LEVEL=warn), shown only when the run fails, where they say why. The
 * count is reported: a warning during the measurement (e.g. a failover because a starved node
 * missed its health checks) means the figures are not of the steady state.
 */
const nodeLines: string[] = [];
let nodeLineCount = 0;
function sink(name: string, line: string): void {
  nodeLineCount += 1;
  nodeLines.push(formatLine(name, line));
  if (nodeLines.length > 100) nodeLines.shift();
}

/** Writes every key once through `url`, so that GETs find them (200, not 404) in every system. */
async function seed(url: string): Promise<void> {
  const pool = new Pool(url, { connections: SEED_IN_FLIGHT });
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < keys.length; i = next++) {
      const res = await pool.request({ method: 'POST', path: '/put', body: putBody(keys[i]!), headers: { 'content-type': 'application/json' } });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`seeding ${url}: PUT ${keys[i]} answered ${res.statusCode}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: SEED_IN_FLIGHT }, worker));
  } finally {
    await pool.close();
  }
}

const VALUE = 'v'.repeat(VALUE_BYTES);
const putBody = (key: string) => JSON.stringify({ key, value: VALUE });

// ---- load drivers -------------------------------------------------------------------------

/** wrk if it is on PATH or apt-get can install it; otherwise (or BENCH_LOADGEN=node) Node. */
function chooseDriver(env: Env): Driver {
  if (process.env['BENCH_LOADGEN'] === 'node') return nodeDriver();
  const missing = ensureWrk();
  if (missing === undefined) return wrkDriver(env);
  // autocannon is not a dependency of this workspace and is not added for a fallback.
  console.log(`\n*** wrk is not available (${missing}); autocannon is not installed either.\n*** Falling back to the Node load generator (tools/src/load.ts): it shares the cores with the\n*** servers and saturates sooner, so req/s are a lower floor than with wrk.\n`);
  return nodeDriver();
}

function wrkVersion(): string | undefined {
  const r = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  if (r.error !== undefined) return undefined;
  return /wrk \S+/.exec(r.stdout + r.stderr)?.[0] ?? 'wrk';
}

/** undefined when wrk runs; otherwise why it could not be installed. */
function ensureWrk(): string | undefined {
  if (wrkVersion() !== undefined) return undefined;
  console.log('wrk not on PATH: apt-get install -y wrk');
  const apt = (args: string[]) => spawnSync('apt-get', args, { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  let res = apt(['install', '-y', 'wrk']);
  // A fresh container has no package lists yet.
  if (res.status !== 0) res = (apt(['update']), apt(['install', '-y', 'wrk']));
  if (wrkVersion() !== undefined) return undefined;
  return `apt-get: ${(res.stderr || res.error?.message || `exit ${res.status}`).trim().split('\n').pop()}`;
}

function wrkDriver(env: Env): Driver {
  const scriptFor = (op: Op) => {
    const path = join(env.tmp, `wrk-${op}.lua`);
    writeFileSync(path, luaScript(op));
    return path;
  };
  const scripts = Object.fromEntries(OPS.map((op) => [op, scriptFor(op)])) as Record<Op, string>;
  return {
    name: `${wrkVersion()} -t${THREADS} -c${CONNECTIONS}`,
    run: (url, op, seconds) => runWrk(env, ['-t', String(THREADS), '-c', String(CONNECTIONS), '-d', `${seconds}s`, '--timeout', '10s', '-s', scripts[op], url]),
  };
}

/**
 * Random keys from the seeded set (each wrk thread seeds its own generator), PUT bodies of the
 * same shape as the Node generator's; MIX is GET, GET, PUT per connection-thread. `done` prints
 * one JSON line so that nothing depends on wrk's human-readable report.
 */
function luaScript(op: Op): string {
  return `
local op = "${op}"
local keys = {}
for i = 0, ${KEY_COUNT - 1} do keys[i + 1] = "bench-" .. i end
local value = string.rep("v", ${VALUE_BYTES})
local headers = { ["Content-Type"] = "application/json" }
local n = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + tid)
end
function request()
  n = n + 1
  local key = keys[math.random(#keys)]
  if op == "GET" or (op == "MIX" and n % 3 ~= 0) then
    return wrk.format("GET", "/get?key=" .. key)
  end
  return wrk.format("POST", "/put", headers, '{"key":"' .. key .. '","value":"' .. value .. '"}')
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%.0f,"durationUs":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50Us":%.0f,"p99Us":%.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`;
}

interface WrkJson {
  requests: number;
  durationUs: number;
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
  p50Us: number;
  p99Us: number;
}

function runWrk(env: Env, args: string[]): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    env.children.add(child);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      env.children.delete(child);
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || line === undefined) return reject(new Error(`wrk ${args.join(' ')} failed (exit ${code}):\n${out}`));
      const w = JSON.parse(line.slice('WRK_JSON '.length)) as WrkJson;
      // Non-2xx answers are in `requests` too; they are errors here, not throughput.
      const errors = w.connect + w.read + w.write + w.status + w.timeout;
      resolvePromise({ rps: (w.requests - w.status) / (w.durationUs / 1e6), p50Ms: w.p50Us / 1000, p99Ms: w.p99Us / 1000, errors });
    });
  });
}

/** The closed-loop Node generator (load.ts), same connection count, same key set and mix. */
function nodeDriver(): Driver {
  const pools = new Pools(CONNECTIONS);
  return {
    name: `node load.ts, ${CONNECTIONS} concurrent`,
    run: async (url, op, seconds) => {
      const s = summarize([await load(nodeTarget(pools, url, op), shuffled(keys), { durationMs: seconds * 1000, concurrency: CONNECTIONS })], seconds * 1000);
      return { rps: s.rps, p50Ms: s.p50, p99Ms: s.p99, errors: s.errors };
    },
  };
}

function nodeTarget(pools: Pools, url: string, op: Op): Target {
  const pool = pools.get(url);
  let n = 0;
  return (key) => {
    n += 1;
    if (op === 'GET' || (op === 'MIX' && n % 3 !== 0)) return { pool, method: 'GET', path: `/get?key=${encodeURIComponent(key)}` };
    return { pool, method: 'POST', path: '/put', body: putBody(key) };
  };
}

/** The key set in a fixed pseudo-random order (the Node generator walks it round-robin). */
function shuffled(list: string[]): string[] {
  const out = [...list];
  let x = 12345;
  for (let i = out.length - 1; i > 0; i -= 1) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

// ---- the measurement ----------------------------------------------------------------------

interface Urls {
  ours: string;
  /** skeleton (a): 2-hop GET path */
  a: string;
  /** skeleton (b): 3-hop PUT path (and 2-hop GET) */
  b: string;
}

const skeletonFor = (urls: Urls, op: Op) => (op === 'GET' ? urls.a : urls.b);

interface OpResult {
  ours: { rounds: Run[]; median: Run };
  skeleton: { rounds: Run[]; median: Run };
  ratio: number;
}

interface HalfPeak {
  ratePerSec: number;
  ours: Run;
  skeleton: Run;
}

async function measure(driver: Driver, urls: Urls): Promise<void> {
  // Startup warnings (a leader trying its follower before it listens) are not the measurement's.
  nodeLineCount = 0;
  nodeLines.length = 0;
  console.log(`benchmark: ${ROUNDS} interleaved rounds x ${SECONDS} s per system and operation, load generator: ${driver.name}, ${KEY_COUNT} keys, ${VALUE_BYTES}-byte values`);
  // JIT, connections and pools warm on both sides before anything counts.
  for (const op of OPS) for (const url of [urls.ours, skeletonFor(urls, op)]) await driver.run(url, op, WARMUP_SECONDS);
  const rounds: Record<Op, Record<Side, Run[]>> = { GET: { ours: [], skeleton: [] }, PUT: { ours: [], skeleton: [] }, MIX: { ours: [], skeleton: [] } };
  for (let r = 1; r <= ROUNDS; r += 1) {
    for (const op of OPS) {
      rounds[op].ours.push(await driver.run(urls.ours, op, SECONDS));
      rounds[op].skeleton.push(await driver.run(skeletonFor(urls, op), op, SECONDS));
      progress(`round ${r}/${ROUNDS} ${op}: ours ${fmtRun(rounds[op].ours.at(-1)!)} | skeleton ${fmtRun(rounds[op].skeleton.at(-1)!)}`);
    }
  }
  const results = Object.fromEntries(OPS.map((op) => [op, opResult(rounds[op])])) as Record<Op, OpResult>;
  const halfPeak = { GET: await halfPeakRun(urls, 'GET', results.GET), PUT: await halfPeakRun(urls, 'PUT', results.PUT) };
  report(driver, results, halfPeak);
}

function progress(line: string): void {
  console.log(`  ${line}`);
}

const fmtRun = (r: Run) => `${r.rps.toFixed(0)} req/s p99 ${r.p99Ms.toFixed(1)} ms${r.errors > 0 ? ` ${r.errors} errors` : ''}`;

function opResult(r: Record<Side, Run[]>): OpResult {
  const ours = { rounds: r.ours, median: medianRun(r.ours) };
  const skeleton = { rounds: r.skeleton, median: medianRun(r.skeleton) };
  return { ours, skeleton, ratio: ours.median.rps / skeleton.median.rps };
}

/** Each figure's median over the rounds (so one noisy round does not decide), errors summed. */
function medianRun(runs: Run[]): Run {
  const med = (f: (r: Run) => number) => {
    const v = runs.map(f).sort((x, y) => x - y);
    const mid = Math.floor(v.length / 2);
    return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  };
  return { rps: med((r) => r.rps), p50Ms: med((r) => r.p50Ms), p99Ms: med((r) => r.p99Ms), errors: runs.reduce((a, r) => a + r.errors, 0) };
}

/**
 * Latency at half our peak: open loop at half our median req/s, ours then the skeleton at the
 * same rate (a fixed rate is the only fair way to compare latencies: in a closed loop the faster
 * system also carries more load).
 */
async function halfPeakRun(urls: Urls, op: 'GET' | 'PUT', peak: OpResult): Promise<HalfPeak> {
  const ratePerSec = Math.max(1, Math.round(peak.ours.median.rps / 2));
  const pools = new Pools(CONNECTIONS);
  const run = async (url: string): Promise<Run> => {
    const opts = { durationMs: HALF_PEAK_SECONDS * 1000, ratePerSec, inFlightMax: RATE_IN_FLIGHT_MAX };
    const s = summarize([await loadAtRate(nodeTarget(pools, url, op), shuffled(keys), opts)], opts.durationMs);
    return { rps: s.rps, p50Ms: s.p50, p99Ms: s.p99, errors: s.errors };
  };
  try {
    const ours = await run(urls.ours);
    const skeleton = await run(skeletonFor(urls, op));
    progress(`${op} at ${ratePerSec} req/s (open loop): ours ${fmtRun(ours)} | skeleton ${fmtRun(skeleton)}`);
    return { ratePerSec, ours, skeleton };
  } finally {
    await pools.close();
  }
}

// ---- the report ---------------------------------------------------------------------------

interface Goal {
  name: string;
  value: string;
  met: boolean;
}

function targets(results: Record<Op, OpResult>, half: Record<'GET' | 'PUT', HalfPeak>): Goal[] {
  return [
    { name: `GET req/s >= ${TARGETS.getRatioMin}x skeleton (a)`, value: `${results.GET.ratio.toFixed(2)}x`, met: results.GET.ratio >= TARGETS.getRatioMin },
    { name: `PUT (replicated, durable) req/s >= ${TARGETS.putRatioMin}x skeleton (b)`, value: `${results.PUT.ratio.toFixed(2)}x`, met: results.PUT.ratio >= TARGETS.putRatioMin },
    { name: `GET p99 < ${TARGETS.getP99MsMax} ms at ${half.GET.ratePerSec} req/s (half peak)`, value: `${half.GET.ours.p99Ms.toFixed(2)} ms`, met: half.GET.ours.p99Ms < TARGETS.getP99MsMax },
    { name: `PUT p99 < ${TARGETS.putP99MsMax} ms at ${half.PUT.ratePerSec} req/s (half peak)`, value: `${half.PUT.ours.p99Ms.toFixed(2)} ms`, met: half.PUT.ours.p99Ms < TARGETS.putP99MsMax },
  ];
}

function machine() {
  const c = cpus();
  // The 1-minute load average at the end: other work on the machine skews both sides' figures.
  return { cpus: c.length, model: c[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version, loadAverage1m: loadavg()[0]! };
}

function report(driver: Driver, results: Record<Op, OpResult>, half: Record<'GET' | 'PUT', HalfPeak>): void {
  const m = machine();
  const t = targets(results, half);
  console.log(`\nmachine: ${m.cpus} x ${m.model}, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}, load average ${m.loadAverage1m.toFixed(1)}; load: ${driver.name}, ${ROUNDS} rounds x ${SECONDS} s (medians)\n`);
  printTable(results);
  printHalfPeak(half);
  if (nodeLineCount > 0) console.log(`\n${nodeLineCount} warning lines from the nodes during the measurement; the last ones:\n${nodeLines.slice(-10).join('\n')}`);
  console.log('\ntargets');
  for (const x of t) console.log(`  ${x.name.padEnd(58)} ${x.value.padStart(9)}  ${x.met ? 'met' : 'NOT MET'}`);
  const config = { seconds: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, threads: THREADS, keys: KEY_COUNT, valueBytes: VALUE_BYTES, halfPeakSeconds: HALF_PEAK_SECONDS, loadGenerator: driver.name };
  const json = { command: 'npm run bench', date: new Date().toISOString(), machine: m, config, results, halfPeak: half, targets: t };
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, 'bench.json'), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(OUT_DIR, 'bench.svg'), svgChart(results, half));
  console.log('\nwritten to bench-results/bench.json and bench-results/bench.svg');
}

const LABELS: Record<Op, [string, string]> = {
  GET: ['GET  ours: router -> leader', 'GET  skeleton (a): router -> backend'],
  PUT: ['PUT  ours: -> leader -> follower, durable', 'PUT  skeleton (b): -> leader -> follower'],
  MIX: ['MIX 2:1  ours', 'MIX 2:1  skeleton (b)'],
};

function printTable(results: Record<Op, OpResult>): void {
  const row = (label: string, r: Run, ratio: string) =>
    console.log(`${label.padEnd(44)} ${r.rps.toFixed(0).padStart(8)} ${r.p50Ms.toFixed(2).padStart(8)} ${r.p99Ms.toFixed(2).padStart(8)} ${String(r.errors).padStart(7)} ${ratio.padStart(12)}`);
  console.log(`${'closed loop (wrk or Node), median of rounds'.padEnd(44)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)} ${'vs skeleton'.padStart(12)}`);
  for (const op of OPS) {
    row(LABELS[op][0], results[op].ours.median, `${results[op].ratio.toFixed(2)}x`);
    row(LABELS[op][1], results[op].skeleton.median, '1.00x');
  }
}

function printHalfPeak(half: Record<'GET' | 'PUT', HalfPeak>): void {
  console.log(`\n${'open loop at half our peak (Node, from due time)'.padEnd(52)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)}`);
  for (const op of ['GET', 'PUT'] as const) {
    for (const side of ['ours', 'skeleton'] as const) {
      const r = half[op][side];
      const label = `${op} @ ${half[op].ratePerSec} req/s  ${side === 'ours' ? 'ours' : `skeleton (${op === 'GET' ? 'a' : 'b'})`}`;
      console.log(`${label.padEnd(52)} ${r.rps.toFixed(0).padStart(8)} ${r.p50Ms.toFixed(2).padStart(8)} ${r.p99Ms.toFixed(2).padStart(8)} ${String(r.errors).padStart(7)}`);
    }
  }
}

// ---- the chart ----------------------------------------------------------------------------

interface Group {
  label: string;
  ours: number;
  skeleton: number;
}

/** Two panels of grouped bars (ours, skeleton): req/s per operation, and p99 per run kind. */
function svgChart(results: Record<Op, OpResult>, half: Record<'GET' | 'PUT', HalfPeak>): string {
  const rps = OPS.map((op) => ({ label: op, ours: results[op].ours.median.rps, skeleton: results[op].skeleton.median.rps }));
  const p99 = [
    ...OPS.map((op) => ({ label: `${op} peak`, ours: results[op].ours.median.p99Ms, skeleton: results[op].skeleton.median.p99Ms })),
    ...(['GET', 'PUT'] as const).map((op) => ({ label: `${op} @${half[op].ratePerSec}/s`, ours: half[op].ours.p99Ms, skeleton: half[op].skeleton.p99Ms })),
  ];
  const body = [panel('req/s (median of rounds)', rps, 0, 0), panel('p99 latency, ms', p99, 440, 0)].join('\n');
  const legend = `<rect x="20" y="292" width="12" height="12" fill="#3b6fb6"/><text x="38" y="303">ours</text><rect x="90" y="292" width="12" height="12" fill="#bbb"/><text x="108" y="303">skeleton ((a) for GET, (b) for PUT and MIX)</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="900" height="315" font-family="sans-serif" font-size="11">\n<rect width="100%" height="100%" fill="white"/>\n${body}\n${legend}\n</svg>\n`;
}

function panel(title: string, groups: Group[], x0: number, y0: number): string {
  const h = 220;
  const top = y0 + 40;
  const max = Math.max(...groups.flatMap((g) => [g.ours, g.skeleton]), 1e-9);
  const groupWidth = 400 / groups.length;
  const bar = (x: number, v: number, color: string) => {
    const bh = (v / max) * h;
    return `<rect x="${x.toFixed(1)}" y="${(top + h - bh).toFixed(1)}" width="${(groupWidth * 0.35).toFixed(1)}" height="${bh.toFixed(1)}" fill="${color}"/><text x="${(x + groupWidth * 0.175).toFixed(1)}" y="${(top + h - bh - 3).toFixed(1)}" text-anchor="middle" font-size="9">${v < 100 ? v.toFixed(1) : v.toFixed(0)}</text>`;
  };
  const bars = groups.map((g, i) => {
    const gx = x0 + 20 + i * groupWidth;
    return `${bar(gx + groupWidth * 0.1, g.ours, '#3b6fb6')}${bar(gx + groupWidth * 0.47, g.skeleton, '#bbb')}<text x="${(gx + groupWidth / 2).toFixed(1)}" y="${top + h + 14}" text-anchor="middle">${g.label}</text>`;
  });
  return `<text x="${x0 + 20}" y="${y0 + 20}" font-size="13" font-weight="bold">${title}</text><line x1="${x0 + 20}" y1="${top + h}" x2="${x0 + 420}" y2="${top + h}" stroke="#333"/>\n${bars.join('\n')}`;
}

// ---- BENCH_PROFILE=1 ----------------------------------------------------------------------

/**
 * Node 20 refuses `--cpu-prof` in NODE_OPTIONS, and the supervisor passes no flags to its
 * children, so each node instead preloads (`--require`, allowed there) this script, which runs
 * the same V8 sampling profiler through `node:inspector`: started on SIGUSR2 (so that startup,
 * seeding and warm-up stay out of the profile), written to `<pid>.cpuprofile` at exit. A
 * same-thread inspector session answers synchronously, so the 'exit' handler can write it.
 */
const PROFILER_PRELOAD = `'use strict';
const inspector = require('node:inspector');
const { writeFileSync } = require('node:fs');
const session = new inspector.Session();
session.connect();
session.post('Profiler.enable');
let started = false;
process.on('SIGUSR2', () => {
  if (!started) session.post('Profiler.start');
  started = true;
});
process.on('exit', () => started && session.post('Profiler.stop', (err, res) => {
  if (!err) writeFileSync(require('node:path').join(process.env.BENCH_PROF_DIR, process.pid + '.cpuprofile'), JSON.stringify(res.profile));
}));
`;

/** The environment that makes a node profile itself (only the nodes get it, not this process). */
function profilerEnv(tmp: string): Record<string, string> {
  const dir = join(tmp, 'prof');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(tmp, 'profiler.cjs'), PROFILER_PRELOAD);
  return { NODE_OPTIONS: `--require ${join(tmp, 'profiler.cjs')}`, BENCH_PROF_DIR: dir };
}

/**
 * Every node runs under the sampling profiler (profilerEnv); PUT load goes through our router,
 * then through skeleton (b)'s; stopping the nodes (SIGTERM, a clean exit) writes the profiles,
 * which are matched to nodes by pid.
 */
async function profile(env: Env, driver: Driver, urls: Urls): Promise<void> {
  const cluster = env.cluster!;
  const skel = env.skeletons!;
  const pids = {
    'ours router': cluster.process(cluster.router.name).pid,
    'ours shard0 leader': cluster.process(cluster.shards[0]!.leader.name).pid,
    'skeleton (b) router': skel.putRouter.proc.pid,
    'skeleton (b) leader': skel.putLeader.proc.pid,
  };
  for (const url of [urls.ours, urls.b]) await driver.run(url, 'PUT', WARMUP_SECONDS);
  for (const p of [...cluster.nodes.map((n) => cluster.process(n.name)), ...skel.all.map((n) => n.proc)]) p.signal('SIGUSR2');
  const ours = await driver.run(urls.ours, 'PUT', SECONDS);
  const skeleton = await driver.run(urls.b, 'PUT', SECONDS);
  console.log(`PUT under the CPU profiler, ${SECONDS} s each (both profiled throughout): ours ${fmtRun(ours)} | skeleton (b) ${fmtRun(skeleton)}`);
  await Promise.all([cluster.stop(), stopSkeletons(skel)]);
  const outDir = join(OUT_DIR, 'profiles');
  mkdirSync(outDir, { recursive: true });
  for (const [name, pid] of Object.entries(pids)) {
    const file = profileFile(env.tmp, pid);
    if (file === undefined) {
      console.log(`\n${name}: no profile written (pid ${pid})`);
      continue;
    }
    const kept = join(outDir, `${name.replace(/[^a-z0-9]+/gi, '-')}.cpuprofile`);
    copyFileSync(file, kept);
    printTopSelf(name, JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, kept);
  }
}

function profileFile(tmp: string, pid: number | undefined): string | undefined {
  const file = join(tmp, 'prof', `${pid}.cpuprofile`);
  return pid !== undefined && existsSync(file) ? file : undefined;
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function (summed over its call sites) and per area, as shares of busy time. */
function printTopSelf(name: string, p: CpuProfile, file: string): void {
  const frameOf = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, us: number) => m.set(k, (m.get(k) ?? 0) + us);
  p.samples.forEach((id, i) => {
    const f = frameOf.get(id)!;
    const us = p.timeDeltas[i + 1] ?? 0;
    const url = f.url.replace(/^file:\/\//, '').replace(`${ROOT}/`, '').replace(/.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '');
    add(byFunction, `${f.functionName || '(anonymous)'}${url === '' ? '' : ` ${url}:${f.lineNumber + 1}`}`, us);
    add(byArea, area(f.functionName, url), us);
  });
  const busyUs = [...byArea].filter(([k]) => k !== 'idle').reduce((a, [, us]) => a + us, 0);
  const share = (us: number) => `${((100 * us) / busyUs).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms`;
  console.log(`\n${name}: ${(busyUs / 1000).toFixed(0)} ms busy, ${((byArea.get('idle') ?? 0) / 1000).toFixed(0)} ms idle (${file.replace(`${ROOT}/`, '')})`);
  console.log(`  by area: ${[...byArea].filter(([k]) => k !== 'idle').sort((a, b) => b[1] - a[1]).map(([k, us]) => `${k} ${((100 * us) / busyUs).toFixed(0)}%`).join(', ')}`);
  const top = [...byFunction].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, 15);
  for (const [k, us] of top) console.log(`  ${share(us)}  ${k}`);
}

/** Which library (or part of the runtime) a sampled frame belongs to. */
function area(fn: string, url: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'gc';
  if (url === '') return fn === '(program)' ? 'v8 (program)' : 'native (writev, ...)';
  if (url.startsWith('wasm://')) return 'llhttp wasm (undici)';
  if (url.startsWith('node:')) return 'node core';
  const pkg = /^(@[^/]+\/[^/]+|[^/]+)/.exec(url)?.[1] ?? url;
  if (['services', 'packages', 'tools'].includes(pkg)) return pkg === 'tools' ? 'skeleton code' : 'shardkv code';
  if (/^(koa|@koa|koa-compose|delegates|path-to-regexp|http-errors|statuses|cookies|accepts|type-is|mime|content-type|on-finished|encodeurl|vary)/.test(pkg)) return 'koa & deps';
  return pkg;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
