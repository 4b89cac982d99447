import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
// The shard's own storage class, from its build output: the data directories are written exactly
// as a node writes them, without going through HTTP (1M PUTs would take longer than the benchmark).
import { LmdbStore } from '../../services/shard/dist/lmdb-store';
import { ensureRedis } from './redis';
import type { LogRecord } from '../../services/shard/dist/replication/log';
import { Cluster } from './cluster';
import { formatLine } from './format';
import { load, Pools, summarize, type Sample, type Summary, type Target } from './load';
import { freePort } from './ports';
import type { Supervised } from './supervisor';

/**
 * `npm run bench:durability`: what the LMDB engine costs and what it buys, in one run.
 *  1. restart-to-ready of a leader and a follower holding BENCH_KEYS keys (the leader's includes
 *     reconciling with its follower: its /health is 200 only after that);
 *  2. the same for redis-server with an AOF of the same keys, the baseline (target: <= 1.5x);
 *  3. disk bytes per key, ours and Redis's AOF;
 *  4. PUT throughput through the router, STORAGE=memory vs STORAGE=lmdb, interleaved rounds.
 * Figures, not a test: the only checks are sanity checks that the data is really there.
 */
const KEYS = Number(process.env.BENCH_KEYS ?? 1_000_000);
const DURATION_MS = Number(process.env.BENCH_SECONDS ?? 4) * 1000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const RESTARTS = Number(process.env.BENCH_RESTARTS ?? 3);
const LOAD = { durationMs: DURATION_MS, concurrency: CONCURRENCY };
/** Each fresh cluster gets this much traffic first, so pools and JIT are warm when measured. */
const WARMUP = { durationMs: Math.min(DURATION_MS, 2000), concurrency: CONCURRENCY };
const BATCH = 10_000;
const POLL_MS = 10;
const READY_TIMEOUT_MS = 120_000;
const CLUSTER_ID = 'durability-bench';
/** The node's defaults (LOG_WINDOW_ENTRIES/BYTES), so the prepared directory is what a node would have. */
const LOG_WINDOW = { entriesMax: 100_000, bytesMax: 64 * 1024 * 1024 };
const ROOT = resolve(__dirname, '..', '..');
const KNOBS = ['BENCH_KEYS', 'BENCH_SECONDS', 'BENCH_ROUNDS', 'BENCH_CONCURRENCY', 'BENCH_RESTARTS'];
const COMMAND = [...KNOBS.filter((k) => process.env[k] !== undefined).map((k) => `${k}=${process.env[k]}`), 'npm run bench:durability'].join(' ');

/** 16-byte keys and 34-byte values, ~50 bytes a pair, the same for us and for Redis. */
const keyOf = (i: number) => `key:${String(i).padStart(12, '0')}`;
const valueOf = (i: number) => `value:${String(i).padStart(10, '0')}:${'x'.repeat(17)}`;

interface Timings {
  ms: number[];
  median: number;
  min: number;
}

interface RestartFigures {
  /** Spawn to the first HTTP answer of any status: the process is up and its store is open. */
  answered: Timings;
  /** Spawn to /health 200: for the leader, also reconciled with its follower. */
  ready: Timings;
}

interface Disk {
  bytes: number;
  allocated: number;
  bytesPerKey: number;
  allocatedPerKey: number;
}

type RedisFigures = { skipped: string } | { version: string; ready: Timings; disk: Disk; loadSeconds: number };

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'shardkv-durability-'));
  const redisChildren = new Set<ChildProcess>();
  // A Ctrl-C skips `finally`: Redis does not exit with us (the shard nodes do), so stop it by pid.
  process.once('exit', () => redisChildren.forEach((c) => c.kill('SIGKILL')));
  try {
    console.log(`durability benchmark: ${KEYS} keys, ${RESTARTS} restarts per node, PUT rounds ${ROUNDS} x ${DURATION_MS / 1000} s at ${CONCURRENCY} clients`);
    const prepared = await prepareShardData(join(tmp, 'shard'));
    const shard = await measureShardRestarts(join(tmp, 'shard'));
    const disk = diskPerKey(join(tmp, 'shard', 'shard0-leader'));
    const redis = await measureRedis(join(tmp, 'redis'), redisChildren);
    const put = await measurePuts(tmp);
    const nodeFloorMs = timings(Array.from({ length: RESTARTS }, nodeFloor));
    const results = { command: COMMAND, date: new Date().toISOString(), node: process.version, keys: KEYS, restarts: RESTARTS, prepared, nodeFloorMs, shard, disk, redis, put };
    report(results);
    mkdirSync(join(ROOT, 'bench-results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench-results', 'durability.json'), `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nwritten to bench-results/durability.json`);
  } finally {
    await Promise.all([...redisChildren].map(stopRedis));
    rmSync(tmp, { recursive: true, force: true });
  }
}

// ---- 1. shard restart --------------------------------------------------------------------

function record(i: number): LogRecord {
  const entry = { seq: i + 1, op: 'put' as const, key: keyOf(i), value: valueOf(i) };
  const json = JSON.stringify(entry);
  return { entry, json, bytes: Buffer.byteLength(json) };
}

/** Writes the same KEYS puts into both nodes' directories, as if they had been replicated. */
async function prepareShardData(dataRoot: string): Promise<{ seconds: number; openMs: number }> {
  const started = performance.now();
  const open = (node: string) => LmdbStore.open(join(dataRoot, node), { cluster: CLUSTER_ID, shard: 'shard-0', node }, LOG_WINDOW);
  const stores = [await open('shard0-leader'), await open('shard0-follower')];
  try {
    for (let from = 0; from < KEYS; from += BATCH) {
      const batch = Array.from({ length: Math.min(BATCH, KEYS - from) }, (_, j) => record(from + j));
      await Promise.all(stores.map((s) => s.apply(batch)));
    }
    const [leader, follower] = stores as [LmdbStore, LmdbStore];
    if (leader.seq !== KEYS || leader.size !== KEYS || leader.digest() !== follower.digest() || follower.seq !== KEYS) {
      throw new Error(`prepared stores disagree: leader seq ${leader.seq} keys ${leader.size}, follower seq ${follower.seq} keys ${follower.size}`);
    }
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(`prepared 2 x ${KEYS} keys through LmdbStore.apply in ${seconds.toFixed(1)} s`);
  return { seconds, openMs: await timeOpen(join(dataRoot, 'shard0-leader')) };
}

/** Opening the environment in-process: the store's part of a node's start-up, for the split. */
async function timeOpen(dir: string): Promise<number> {
  const t0 = performance.now();
  const store = await LmdbStore.open(dir, { cluster: CLUSTER_ID, shard: 'shard-0', node: 'shard0-leader' }, LOG_WINDOW);
  const ms = performance.now() - t0;
  const keys = store.size;
  await store.close();
  if (keys !== KEYS) throw new Error(`reopened store has ${keys} keys, expected ${KEYS}`);
  return ms;
}

async function measureShardRestarts(dataRoot: string): Promise<Record<'leader' | 'follower', RestartFigures>> {
  const cluster = await Cluster.create({ shardCount: 1, ports: 'free', dataRoot, clusterId: CLUSTER_ID, env: { LOG_LEVEL: 'warn' }, sink: warnSink });
  try {
    await cluster.start(READY_TIMEOUT_MS);
    await expectKeys(cluster.shards[0]!.leader.url);
    const figures = { leader: [] as Array<[number, number]>, follower: [] as Array<[number, number]> };
    for (let r = 0; r < RESTARTS; r += 1) {
      for (const role of ['leader', 'follower'] as const) {
        const node = cluster.shards[0]![role];
        figures[role].push(await timeRestart(cluster.process(node.name), node.url));
        // Every restart starts from a steady cluster, not from the previous one's aftermath.
        await cluster.waitHealthy(READY_TIMEOUT_MS);
      }
    }
    await expectKeys(cluster.shards[0]!.leader.url);
    const split = (xs: Array<[number, number]>): RestartFigures => ({ answered: timings(xs.map((x) => x[0])), ready: timings(xs.map((x) => x[1])) });
    return { leader: split(figures.leader), follower: split(figures.follower) };
  } finally {
    await cluster.stop();
  }
}

/** Stop, then spawn and poll /health every POLL_MS: [ms to first answer, ms to 200]. */
async function timeRestart(proc: Supervised, url: string): Promise<[number, number]> {
  await proc.stop();
  const t0 = performance.now();
  proc.start();
  let answered: number | undefined;
  while (performance.now() - t0 < READY_TIMEOUT_MS) {
    const status = await healthStatus(url);
    const ms = performance.now() - t0;
    if (status !== undefined) answered ??= ms;
    if (status === 200) return [answered!, ms];
    await sleep(POLL_MS);
  }
  throw new Error(`${proc.spec.name} not ready ${READY_TIMEOUT_MS} ms after restart`);
}

async function healthStatus(url: string): Promise<number | undefined> {
  try {
    const res = await request(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    await res.body.dump();
    return res.statusCode;
  } catch {
    return undefined;
  }
}

/** Sanity: the node serves the prepared data (its /status key count, and one value). */
async function expectKeys(url: string): Promise<void> {
  const status = (await (await request(`${url}/status`)).body.json()) as { keys: number };
  const last = KEYS - 1;
  const res = await request(`${url}/get?key=${encodeURIComponent(keyOf(last))}`);
  const body = (await res.body.json()) as { value?: string };
  if (status.keys !== KEYS || body.value !== valueOf(last)) throw new Error(`${url} has ${status.keys} keys and ${keyOf(last)}=${body.value}; expected ${KEYS} keys`);
}

/** What a bare Node process costs to spawn and exit: the floor under any node's restart. */
function nodeFloor(): number {
  const t0 = performance.now();
  spawnSync(process.execPath, ['-e', '0']);
  return performance.now() - t0;
}

// ---- 2. Redis ----------------------------------------------------------------------------

async function measureRedis(dir: string, children: Set<ChildProcess>): Promise<RedisFigures> {
  const missing = ensureRedis();
  if (missing !== undefined) {
    console.log(`\nRedis baseline skipped: ${missing}`);
    return { skipped: missing };
  }
  mkdirSync(join(dir, 'data'), { recursive: true });
  const port = await freePort();
  const start = () => startRedis(dir, port, children);
  let child = start();
  await waitPong(port, performance.now());
  const loadSeconds = await loadRedis(port);
  await rewriteAof(port);
  await stopRedis(child);
  const ms: number[] = [];
  for (let r = 0; r < RESTARTS; r += 1) {
    const t0 = performance.now();
    child = start();
    ms.push(await waitPong(port, t0));
    await expectDbsize(port);
    await stopRedis(child);
  }
  const version = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.trim();
  return { version, ready: timings(ms), disk: diskPerKey(join(dir, 'data', 'appendonlydir')), loadSeconds };
}


/** A pure command-file AOF (no RDB preamble, no RDB snapshots): Redis replays every SET on start. */
function startRedis(dir: string, port: number, children: Set<ChildProcess>): ChildProcess {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', join(dir, 'data'), '--logfile', join(dir, 'redis.log')];
  args.push('--appendonly', 'yes', '--aof-use-rdb-preamble', 'no', '--save', '', '--daemonize', 'no');
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGTERM (Redis flushes the AOF and exits), SIGKILL if it takes too long; by pid only. */
async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

/** Polls PING every POLL_MS until PONG; a refused connection or -LOADING means not ready. */
async function waitPong(port: number, t0: number): Promise<number> {
  while (performance.now() - t0 < READY_TIMEOUT_MS) {
    const reply = await redisCall(port, ['PING']).catch(() => '');
    if (reply === '+PONG') return performance.now() - t0;
    await sleep(POLL_MS);
  }
  throw new Error(`redis-server not answering PING ${READY_TIMEOUT_MS} ms after start`);
}

function resp(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** One command on a fresh connection; resolves with the reply line, or a bulk reply's text. */
function redisCall(port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ port, host: '127.0.0.1' }, () => sock.write(resp(args)));
    let buf = '';
    sock.setTimeout(5000, () => sock.destroy(new Error(`redis ${args[0]}: timeout`)));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      const reply = parseReply(buf);
      if (reply === undefined) return;
      sock.destroy();
      resolve(reply);
    });
    sock.on('error', reject);
    // After a resolve this is a no-op; before one, the server closed without answering.
    sock.on('close', () => reject(new Error(`redis ${args[0]}: connection closed`)));
  });
}

function parseReply(buf: string): string | undefined {
  const eol = buf.indexOf('\r\n');
  if (eol < 0) return undefined;
  if (!buf.startsWith('$')) return buf.slice(0, eol);
  const len = Number(buf.slice(1, eol));
  if (len < 0) return '';
  return buf.length >= eol + 2 + len + 2 ? buf.slice(eol + 2, eol + 2 + len) : undefined;
}

/** Pipelines every SET on one connection (what `redis-cli --pipe` does); seconds until all are answered. */
async function loadRedis(port: number): Promise<number> {
  const t0 = performance.now();
  const sock = connect({ port, host: '127.0.0.1' });
  await once(sock, 'connect');
  let answered = 0;
  const done = new Promise<void>((resolve, reject) => {
    sock.on('data', (d: Buffer) => {
      // Every reply to SET is "+OK\r\n": count lines, and any "-" is an error reply.
      if (d.includes('-')) reject(new Error(`redis SET failed: ${d.toString('utf8', d.indexOf('-'), d.indexOf('-') + 200)}`));
      for (let i = d.indexOf(10); i >= 0; i = d.indexOf(10, i + 1)) answered += 1;
      if (answered === KEYS) resolve();
    });
    sock.on('error', reject);
  });
  for (let from = 0; from < KEYS; from += BATCH) {
    let chunk = '';
    for (let i = from; i < Math.min(KEYS, from + BATCH); i += 1) chunk += resp(['SET', keyOf(i), valueOf(i)]);
    if (!sock.write(chunk)) await once(sock, 'drain');
  }
  await done;
  sock.destroy();
  await expectDbsize(port);
  const seconds = (performance.now() - t0) / 1000;
  console.log(`loaded ${KEYS} keys into redis-server in ${seconds.toFixed(1)} s`);
  return seconds;
}

/** Rewrites the AOF into one base file of plain SETs, and waits until the rewrite is done. */
async function rewriteAof(port: number): Promise<void> {
  await redisCall(port, ['BGREWRITEAOF']);
  for (;;) {
    const info = await redisCall(port, ['INFO', 'persistence']);
    if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) {
      if (!/aof_last_bgrewrite_status:ok/.test(info)) throw new Error('redis BGREWRITEAOF failed (see redis.log)');
      return;
    }
    await sleep(50);
  }
}

async function expectDbsize(port: number): Promise<void> {
  const reply = await redisCall(port, ['DBSIZE']);
  if (reply !== `:${KEYS}`) throw new Error(`redis DBSIZE is ${reply}, expected ${KEYS}`);
}

// ---- 3. disk -----------------------------------------------------------------------------

/** `du`-style: apparent size (sum of file sizes) and allocated blocks, per key. */
function diskPerKey(dir: string): Disk {
  let bytes = 0;
  let allocated = 0;
  const walk = (path: string) => {
    const st = statSync(path);
    if (st.isDirectory()) return readdirSync(path).forEach((name) => walk(join(path, name)));
    bytes += st.size;
    allocated += st.blocks * 512;
  };
  walk(dir);
  return { bytes, allocated, bytesPerKey: bytes / KEYS, allocatedPerKey: allocated / KEYS };
}

// ---- 4. PUT throughput -------------------------------------------------------------------

type Engine = 'memory' | 'lmdb';

/** Alternates engines round by round, so machine noise hits both alike; one cluster at a time. */
async function measurePuts(tmp: string): Promise<Record<Engine, Summary> & { ratio: number }> {
  const samples: Record<Engine, Sample[]> = { memory: [], lmdb: [] };
  for (let r = 0; r < ROUNDS; r += 1) {
    for (const engine of ['memory', 'lmdb'] as const) {
      const s = await putRound(engine, join(tmp, `put-${engine}-${r}`));
      console.log(`PUT round ${r + 1}/${ROUNDS} ${engine.padEnd(6)}: ${(s.ok / (DURATION_MS / 1000)).toFixed(0)} req/s, ${s.errors} errors`);
      samples[engine].push(s);
    }
  }
  const memory = summarize(samples.memory, DURATION_MS);
  const lmdb = summarize(samples.lmdb, DURATION_MS);
  return { memory, lmdb, ratio: lmdb.rps / memory.rps };
}

/** A fresh 3-shard cluster on its own data root, warmed up, then PUTs through the router. */
async function putRound(engine: Engine, dataRoot: string): Promise<Sample> {
  const cluster = await Cluster.create({ ports: 'free', dataRoot, clusterId: CLUSTER_ID, env: { LOG_LEVEL: 'warn', STORAGE: engine }, sink: warnSink });
  const pools = new Pools(CONCURRENCY);
  try {
    await cluster.start();
    const keys = Array.from({ length: 1000 }, (_, i) => `bench-${i}`);
    const value = 'v'.repeat(50);
    const put: Target = (k) => ({ pool: pools.get(cluster.router.url), method: 'POST', path: '/put', body: JSON.stringify({ key: k, value }) });
    await load(put, keys, WARMUP);
    return await load(put, keys, LOAD);
  } finally {
    await pools.close();
    await cluster.stop();
    rmSync(dataRoot, { recursive: true, force: true });
  }
}

// ---- output ------------------------------------------------------------------------------

/**
 * The nodes' last lines (LOG_LEVEL=warn). Deliberate restarts make their peers warn, as they
 * should, so the lines are shown only when the run fails, where they say why.
 */
const nodeLines: string[] = [];
function warnSink(name: string, line: string): void {
  nodeLines.push(formatLine(name, line));
  if (nodeLines.length > 100) nodeLines.shift();
}

function timings(ms: number[]): Timings {
  const sorted = [...ms].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { ms, median, min: sorted[0]! };
}

type Results = {
  command: string;
  keys: number;
  prepared: { seconds: number; openMs: number };
  nodeFloorMs: Timings;
  shard: Record<'leader' | 'follower', RestartFigures>;
  disk: Disk;
  redis: RedisFigures;
  put: Record<Engine, Summary> & { ratio: number };
};

function report(r: Results): void {
  const t = (x: Timings) => `${x.median.toFixed(0)} / ${x.min.toFixed(0)} ms`;
  const d = (x: Disk) => `${x.bytesPerKey.toFixed(1)} / ${x.allocatedPerKey.toFixed(1)} B  (${mib(x.bytes)} / ${mib(x.allocated)} MiB)`;
  const p = (x: Summary) => `${x.rps.toFixed(0)} req/s  p50 ${x.p50.toFixed(2)} ms  p99 ${x.p99.toFixed(2)} ms  errors ${x.errors}`;
  const rows: Array<[string, string]> = [
    ['leader restart -> /health 200 (median / min)', t(r.shard.leader.ready)],
    ['  of which: -> first HTTP answer', t(r.shard.leader.answered)],
    ['follower restart -> /health 200', t(r.shard.follower.ready)],
    ['  of which: -> first HTTP answer', t(r.shard.follower.answered)],
    ['node -e 0 spawn -> exit (floor)', t(r.nodeFloorMs)],
    ['LmdbStore.open in-process', `${r.prepared.openMs.toFixed(1)} ms`],
  ];
  if ('skipped' in r.redis) rows.push(['redis-server', `skipped: ${r.redis.skipped}`]);
  else {
    rows.push(['redis-server restart -> PONG (AOF replay)', t(r.redis.ready)]);
    rows.push(['leader / redis (median; target <= 1.5x)', `${(r.shard.leader.ready.median / r.redis.ready.median).toFixed(2)}x`]);
    rows.push(['follower / redis (median)', `${(r.shard.follower.ready.median / r.redis.ready.median).toFixed(2)}x`]);
  }
  rows.push(['disk/key leader dir (size / allocated)', d(r.disk)]);
  if (!('skipped' in r.redis)) rows.push(['disk/key redis AOF dir (size / allocated)', d(r.redis.disk)]);
  rows.push(['PUT via router, STORAGE=memory', p(r.put.memory)], ['PUT via router, STORAGE=lmdb', p(r.put.lmdb)], ['PUT lmdb / memory', `${r.put.ratio.toFixed(2)}x`]);
  console.log(`\n${r.keys} keys (16-byte keys, 34-byte values), ${RESTARTS} restarts per node, warm page cache; PUTs: ${ROUNDS} interleaved rounds x ${DURATION_MS / 1000} s, ${CONCURRENCY} clients, 1000 keys, 50-byte values\n`);
  for (const [name, value] of rows) console.log(`${name.padEnd(46)} ${value}`);
  console.log(`\ncommand: ${r.command}`);
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

main().catch((err) => {
  if (nodeLines.length > 0) console.error(`last node log lines:\n${nodeLines.join('\n')}\n`);
  console.error(err);
  process.exit(1);
});
