import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { machineLine } from './bench/report';
import { Cluster } from './cluster';
import { freePort } from './ports';
import { formatSummary, procCpuTime, profilerEnv, readCpuTime, readProfile, summarizeProfile, type CpuTime } from './profile';
import { ensureRedis } from './redis';

/**
 * `npm run bench:load`: bulk load of a generated file, as a user would run it, against the same
 * data piped into Redis in the same run (the baseline):
 *   1. `kv gen --keys N` writes the file (N = BENCH_KEYS, default 1,000,000; ~50-byte lines);
 *   2. a 3-shard cluster on free ports (durable, replicated); `kv load FILE` is timed end to end;
 *   3. redis-server (installed from Debian if missing) with the append-only file and
 *      `appendfsync everysec`, the issue's baseline, gets the same SETs with `redis-cli --pipe`,
 *      timed the same way.
 * Prints keys/s for both, the ratio (the issue's target: >= 0.5x Redis), and the CPU each
 * process spent during the load, per 1,000 keys (user + system, from process.cpuUsage at exit,
 * or /proc for redis-server).
 *
 * Environment:
 *   BENCH_KEYS       keys in the file (default 1,000,000)
 *   BENCH_PROFILE=1  also run the V8 sampling profiler in every node and in `kv load`, and print
 *                    each process's top self-time functions (the figures then include its
 *                    overhead); the profiles are kept in bench-results/load-profiles/
 *   BENCH_LOAD_ARGS  extra arguments for `kv load` (e.g. "--concurrency 2")
 */
const KEYS = Number(process.env.BENCH_KEYS ?? 1_000_000);
const PROFILE = process.env.BENCH_PROFILE === '1';
const LOAD_ARGS = (process.env.BENCH_LOAD_ARGS ?? '').split(' ').filter((a) => a !== '');
const ROOT = resolve(__dirname, '..', '..');
const KV = join(ROOT, 'packages', 'cli', 'dist', 'kv.js');
const PROFILES_DIR = join(ROOT, 'bench-results', 'load-profiles');

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'shardkv-loadbench-'));
  const file = join(tmp, 'data.txt');
  const profDir = join(tmp, 'prof');
  let cluster: Cluster | undefined;
  try {
    await run(process.execPath, [KV, 'gen', '--keys', String(KEYS), '--value-bytes', '34'], { stdout: file });
    console.log(`generated ${KEYS} keys, ${(statSync(file).size / 1e6).toFixed(1)} MB`);
    cluster = await Cluster.create({ ports: 'free', dataRoot: join(tmp, 'cluster'), clusterId: 'loadbench', env: profilerEnv(profDir, { sampler: PROFILE }) });
    await cluster.start();
    const c = cluster;
    const pids = new Map(c.nodes.map((n) => [n.name, c.process(n.name).pid]));
    for (const n of c.nodes) c.process(n.name).signal('SIGUSR2'); // accounting starts now
    let kvPid: number | undefined;
    let kvOut = '';
    // kv load exits 1 when an entry failed (a timeout on a starved machine, say): the figures
    // still print, counting only what it loaded, and say so.
    const ours = await timed(() => run(process.execPath, [KV, '--url', c.router.url, 'load', file, '--no-progress', ...LOAD_ARGS], { env: profilerEnv(profDir, { sampler: PROFILE, now: true }), onSpawn: (pid) => (kvPid = pid), onStdout: (t) => (kvOut += t), okCodes: [0, 1] }));
    const loaded = Number(/^loaded (\d+) keys/m.exec(kvOut)?.[1] ?? NaN);
    await c.stop(); // the nodes write their CPU figures as they exit
    cluster = undefined;
    pids.set('kv load', kvPid);
    const redis = await redisPipe(file, tmp);
    const oursRate = loaded / ours;
    console.log('');
    console.log(machineLine());
    console.log(`kv load (3 shards, replicated, fsync'd)  ${ours.toFixed(1)} s  ${Math.round(oursRate)} keys/s${loaded === KEYS ? '' : `  (only ${loaded} of ${KEYS} keys loaded: see kv load's report above)`}`);
    if (typeof redis === 'string') console.log(`redis-cli --pipe: skipped (${redis})`);
    else console.log(`redis-cli --pipe (appendfsync everysec)  ${redis.seconds.toFixed(1)} s  ${Math.round(KEYS / redis.seconds)} keys/s\nratio (target >= 0.5x)                  ${(oursRate / (KEYS / redis.seconds)).toFixed(2)}x`);
    console.log(`command: npm run bench:load (BENCH_KEYS=${KEYS}${LOAD_ARGS.length > 0 ? `, BENCH_LOAD_ARGS="${LOAD_ARGS.join(' ')}"` : ''}${PROFILE ? ', BENCH_PROFILE=1' : ''})`);
    printCpu(pids, profDir, typeof redis === 'string' ? undefined : redis.cpu);
  } finally {
    await cluster?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** CPU per process during the load, per 1,000 keys; with BENCH_PROFILE=1, where it went. */
function printCpu(pids: Map<string, number | undefined>, dir: string, redisCpu: CpuTime | undefined): void {
  const per1k = (ms: number) => ((ms * 1000) / KEYS).toFixed(2);
  const rows: Array<[string, CpuTime | undefined]> = [...pids].map(([name, pid]) => [name, readCpuTime(dir, pid)]);
  if (redisCpu !== undefined) rows.push(['redis-server', redisCpu]);
  console.log(`\nCPU during the load (user + system), ms per 1,000 keys${PROFILE ? ' (under the sampler)' : ''}:`);
  let total = 0;
  for (const [name, t] of rows) {
    if (t === undefined) {
      console.log(`  ${name.padEnd(18)} (no figure)`);
      continue;
    }
    if (name !== 'redis-server') total += t.userMs + t.systemMs;
    console.log(`  ${name.padEnd(18)} ${per1k(t.userMs + t.systemMs).padStart(7)}  (user ${per1k(t.userMs)}, system ${per1k(t.systemMs)})`);
  }
  console.log(`  ${'shardkv total'.padEnd(18)} ${per1k(total).padStart(7)}`);
  if (!PROFILE) return;
  mkdirSync(PROFILES_DIR, { recursive: true });
  for (const [name, pid] of pids) {
    const p = readProfile(dir, pid);
    console.log(`\n${p === undefined ? `${name}: no profile` : formatSummary(name, summarizeProfile(p))}`);
    const file = join(dir, `${pid}.cpuprofile`);
    if (existsSync(file)) copyFileSync(file, join(PROFILES_DIR, `${name.replace(/[^a-z0-9]+/gi, '-')}.cpuprofile`));
  }
  console.log(`\nprofiles kept in ${PROFILES_DIR.replace(`${ROOT}/`, '')}/ (open them in Chrome DevTools or speedscope)`);
}

/** The whole redis-cli --pipe of the file's SETs into a fresh redis-server (AOF, fsync every second), or why it was skipped. */
async function redisPipe(file: string, tmp: string): Promise<{ seconds: number; cpu: CpuTime | undefined } | string> {
  const missing = ensureRedis();
  if (missing !== undefined) return missing;
  const resp = join(tmp, 'data.resp');
  await toResp(file, resp);
  const port = await freePort();
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', tmp], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100 && spawnSync('redis-cli', ['-p', String(port), 'PING']).stdout?.toString().trim() !== 'PONG'; i += 1) await new Promise((r) => setTimeout(r, 50));
    const before = procCpuTime(server.pid!);
    const seconds = await timed(() => run('redis-cli', ['-p', String(port), '--pipe'], { stdin: resp, stdout: join(tmp, 'redis-cli.out') }));
    const after = procCpuTime(server.pid!);
    const cpu = before === undefined || after === undefined ? undefined : { userMs: after.userMs - before.userMs, systemMs: after.systemMs - before.systemMs };
    return { seconds, cpu };
  } finally {
    server.kill('SIGTERM');
  }
}

/** The same lines as RESP `SET key value` commands (the value is the rest of the line, as `kv load` reads it). */
async function toResp(file: string, out: string): Promise<void> {
  const w = createWriteStream(out);
  const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    const sp = line.indexOf(' ');
    if (sp <= 0) continue;
    if (!w.write(`*3\r\n$3\r\nSET\r\n${bulk(line.slice(0, sp))}${bulk(line.slice(sp + 1))}`)) await new Promise<void>((r) => w.once('drain', () => r()));
  }
  await new Promise<void>((r) => w.end(r));
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

interface RunIo {
  stdout?: string;
  /** The child's stdout as it comes, also printed (when not written to a file). */
  onStdout?: (text: string) => void;
  /** Exit codes that count as success (default 0). */
  okCodes?: number[];
  stdin?: string;
  env?: Record<string, string>;
  onSpawn?: (pid: number | undefined) => void;
}

function run(cmd: string, args: string[], io: RunIo = {}): Promise<void> {
  return new Promise((res, rej) => {
    const piped = io.stdout !== undefined || io.onStdout !== undefined;
    const child = spawn(cmd, args, { stdio: [io.stdin === undefined ? 'ignore' : 'pipe', piped ? 'pipe' : 'inherit', 'inherit'], env: { ...process.env, ...io.env } });
    io.onSpawn?.(child.pid);
    if (io.onStdout !== undefined) {
      child.stdout!.on('data', (d: Buffer) => {
        process.stdout.write(d);
        io.onStdout!(d.toString());
      });
    }
    const out = io.stdout === undefined ? undefined : createWriteStream(io.stdout);
    if (out !== undefined) child.stdout!.pipe(out);
    if (io.stdin !== undefined) createReadStream(io.stdin).pipe(child.stdin!);
    child.on('error', rej);
    // 'close' comes after the child's streams end; the file is complete once its stream finished.
    child.on('close', (code) => {
      if (!(io.okCodes ?? [0]).includes(code ?? -1)) return rej(new Error(`${cmd} ${args.slice(0, 2).join(' ')} exited ${code}`));
      if (out === undefined || out.writableFinished) return res();
      out.once('finish', () => res());
    });
  });
}

main().catch((err) => {
  console.error(`bench:load: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
