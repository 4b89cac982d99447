import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool } from 'undici';
import { load, Pools, summarize, type Target } from '../load';
import { benchKeys, benchValue, type Api, type BenchConfig, type Op, type Run, type System } from './config';
import { ticksPerSec } from './cpu';
import { wrkScript } from './wrk-scripts';

/** Closed-loop load against one system for `seconds`: wrk, or the Node generator when wrk is unavailable. */
export interface Driver {
  name: string;
  /** `cpus`: a taskset CPU list the generator runs on (the tail phase pins it); default unpinned. */
  run(sys: System, op: Op, seconds: number, cpus?: string): Promise<Run>;
}

/** wrk if it is on PATH or apt-get can install it; otherwise (or BENCH_LOADGEN=node) Node. */
export function chooseDriver(cfg: BenchConfig, tmp: string, children: Set<ChildProcess>): Driver {
  if (cfg.loadgen === 'node') return nodeDriver(cfg);
  const missing = ensureWrk();
  if (missing === undefined) return wrkDriver(cfg, tmp, children);
  // autocannon is not a dependency of this workspace and is not added for a fallback.
  console.log(`\n*** wrk is not available (${missing}); autocannon is not installed either.\n*** Falling back to the Node load generator (tools/src/load.ts): it shares the cores with the\n*** servers and saturates sooner, so req/s are a lower floor than with wrk.\n`);
  return nodeDriver(cfg);
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

function wrkDriver(cfg: BenchConfig, tmp: string, children: Set<ChildProcess>): Driver {
  const written = new Set<string>();
  const scriptFor = (api: Api, op: Op) => {
    const path = join(tmp, `wrk-${api}-${op}.lua`);
    if (!written.has(path)) writeFileSync(path, wrkScript(api, op, cfg));
    written.add(path);
    return path;
  };
  return {
    name: `${wrkVersion()} -t${cfg.threads} -c${cfg.connections}`,
    run: (sys, op, seconds, cpus) => {
      const args = ['-t', String(cfg.threads), '-c', String(cfg.connections), '-d', `${seconds}s`, '--timeout', '10s', '-s', scriptFor(sys.api, op), sys.url];
      return runWrk(children, cpus === undefined ? ['wrk', ...args] : ['taskset', '-c', cpus, 'wrk', ...args]);
    },
  };
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
  cpuTicks: number;
}

/** Bounds a wrk run beyond its own -d: a wedged wrk must not hang the benchmark. */
const WRK_GRACE_MS = 30_000;

function runWrk(children: Set<ChildProcess>, argv: string[]): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    // taskset execs wrk in place, so the pid is wrk's either way.
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const seconds = Number(/-d\s(\d+(?:\.\d+)?)s/.exec(argv.join(' '))?.[1] ?? 0);
    const timer = setTimeout(() => child.kill('SIGKILL'), seconds * 1000 + WRK_GRACE_MS);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      children.delete(child);
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || line === undefined) return reject(new Error(`${argv.join(' ')} failed (exit ${code}):\n${out}`));
      resolvePromise(wrkRun(JSON.parse(line.slice('WRK_JSON '.length)) as WrkJson));
    });
  });
}

function wrkRun(w: WrkJson): Run {
  // Answers >= 400 are in `requests` too; they are errors here, not throughput.
  const errors = w.connect + w.read + w.write + w.status + w.timeout;
  const generatorCpuMs = w.cpuTicks >= 0 ? (w.cpuTicks * 1000) / ticksPerSec() : undefined;
  return { rps: (w.requests - w.status) / (w.durationUs / 1e6), p50Ms: w.p50Us / 1000, p99Ms: w.p99Us / 1000, errors, requests: w.requests, durationMs: w.durationUs / 1000, generatorCpuMs };
}

/** The closed-loop Node generator (load.ts), same connection count, same key set and mix. */
function nodeDriver(cfg: BenchConfig): Driver {
  const pools = new Pools(cfg.connections);
  const keys = shuffled(benchKeys(cfg.keyCount));
  return {
    name: `node load.ts, ${cfg.connections} concurrent`,
    run: async (sys, op, seconds) => {
      // The generator is this process: its CPU time over the run is the generator's (and this idle loop's).
      const cpuBefore = process.cpuUsage();
      const s = await load(nodeTarget(pools.get(sys.url), sys.api, op, benchValue(cfg.valueBytes)), keys, { durationMs: seconds * 1000, concurrency: cfg.connections });
      const sum = summarize([s], seconds * 1000);
      const cpu = process.cpuUsage(cpuBefore);
      return { rps: sum.rps, p50Ms: sum.p50, p99Ms: sum.p99, errors: sum.errors, requests: s.ok + s.errors, durationMs: seconds * 1000, generatorCpuMs: (cpu.user + cpu.system) / 1000 };
    },
  };
}

/** The requests of one system's API for the Node generators (closed loop here, open loop in tail.ts). */
export function nodeTarget(pool: Pool, api: Api, op: Op, value: string): Target {
  let n = 0;
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const value64 = b64(value);
  return (key) => {
    n += 1;
    const get = op === 'GET' || (op === 'MIX' && n % 3 !== 0);
    if (api === 'etcd') return get ? { pool, method: 'POST', path: '/v3/kv/range', body: `{"key":"${b64(key)}"}` } : { pool, method: 'POST', path: '/v3/kv/put', body: `{"key":"${b64(key)}","value":"${value64}"}` };
    return get ? { pool, method: 'GET', path: `/get?key=${encodeURIComponent(key)}` } : { pool, method: 'POST', path: '/put', body: JSON.stringify({ key, value }) };
  };
}

/** The key set in a fixed pseudo-random order (the Node generators walk it round-robin). */
export function shuffled(list: string[]): string[] {
  const out = [...list];
  let x = 12345;
  for (let i = out.length - 1; i > 0; i -= 1) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
