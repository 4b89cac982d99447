import { resolve, join } from 'node:path';

/**
 * Every knob of `npm run bench`, read once from the environment when the run starts (see
 * bench-main.ts for what each one does), and the types the bench modules share.
 */
export type Op = 'GET' | 'PUT' | 'MIX';
export const OPS: readonly Op[] = ['GET', 'PUT', 'MIX'];

/** Which HTTP API a system speaks: ours and the skeletons share /get and /put; etcd has its JSON gateway. */
export type Api = 'kv' | 'etcd';

export type SystemId = 'ours' | 'skeletonA' | 'skeletonB' | 'etcd';

export interface NamedPid {
  name: string;
  pid: number | undefined;
}

/** One system under load: where wrk goes, the API it speaks, and its processes (for CPU accounting). */
export interface System {
  id: SystemId;
  label: string;
  url: string;
  api: Api;
  processes: () => NamedPid[];
}

/** One closed- or open-loop run. */
export interface Run {
  /** Answers with status 200 per second of the run. */
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Connect/read/write errors, timeouts and answers that were not 200 (wrk: status >= 400). */
  errors: number;
  /** Every answer, errors included: the operations that cost CPU. */
  requests: number;
  durationMs: number;
  /** The load generator's own CPU time over the run (user + system), when it could be read. */
  generatorCpuMs?: number;
}

export type EtcdMember = 'leader' | 'follower';

export interface BenchConfig {
  seconds: number;
  rounds: number;
  connections: number;
  threads: number;
  keyCount: number;
  valueBytes: number;
  warmupSeconds: number;
  /** Each open-loop run of the tail phase, and each closed-loop run that finds the peak for it. */
  tailSeconds: number;
  tailRuns: number;
  /** Closed-loop runs per system that find the peak the tail rate is half of. */
  tailPeakRuns: number;
  /** Pin servers and load generator to separate cores for the tail phase (when taskset exists). */
  pin: boolean;
  etcd: boolean;
  etcdMember: EtcdMember;
  loadgen: 'wrk' | 'node';
  profile: boolean;
}

export const ROOT = resolve(__dirname, '..', '..', '..');
export const OUT_DIR = join(ROOT, 'bench-results');
/** Bounds the open-loop generator: a system that falls behind must not make it grow forever. */
export const RATE_IN_FLIGHT_MAX = 1024;

export function readConfig(env: NodeJS.ProcessEnv = process.env): BenchConfig {
  const num = (name: string, fallback: number): number => {
    const v = Number(env[name] ?? fallback);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number, not ${env[name]}`);
    return v;
  };
  const int = (name: string, fallback: number): number => {
    const v = num(name, fallback);
    if (!Number.isInteger(v)) throw new Error(`${name} must be a whole number, not ${env[name]}`);
    return v;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const v = (env[name] ?? fallback) as T;
    if (!allowed.includes(v)) throw new Error(`${name} must be one of ${allowed.join(', ')}, not ${v}`);
    return v;
  };
  // wrk's -d takes whole seconds only.
  const seconds = int('BENCH_SECONDS', 5);
  return {
    seconds,
    rounds: int('BENCH_ROUNDS', 3),
    connections: int('BENCH_CONNECTIONS', 64),
    threads: int('BENCH_THREADS', 2),
    keyCount: int('BENCH_KEYS', 1000),
    valueBytes: 50,
    warmupSeconds: int('BENCH_WARMUP_SECONDS', 1),
    tailSeconds: int('BENCH_TAIL_SECONDS', Math.min(3, seconds)),
    tailRuns: int('BENCH_TAIL_RUNS', 5),
    tailPeakRuns: int('BENCH_TAIL_PEAK_RUNS', 2),
    pin: oneOf('BENCH_PIN', ['0', '1'], '1') === '1',
    etcd: oneOf('BENCH_ETCD', ['0', '1'], '1') === '1',
    etcdMember: oneOf('BENCH_ETCD_MEMBER', ['leader', 'follower'] as const, 'leader'),
    loadgen: oneOf('BENCH_LOADGEN', ['wrk', 'node'] as const, 'wrk'),
    profile: env['BENCH_PROFILE'] === '1',
  };
}

/** The seeded key set: every system holds exactly these keys, and the load draws from them. */
export function benchKeys(keyCount: number): string[] {
  return Array.from({ length: keyCount }, (_, i) => `bench-${i}`);
}

export function benchValue(valueBytes: number): string {
  return 'v'.repeat(valueBytes);
}

/** Each figure's median over runs (so one noisy run does not decide), errors and counts summed. */
export function medianRun(runs: Run[]): Run {
  const med = (f: (r: Run) => number) => median(runs.map(f));
  const sum = (f: (r: Run) => number) => runs.reduce((a, r) => a + f(r), 0);
  const cpu = runs.every((r) => r.generatorCpuMs !== undefined) ? { generatorCpuMs: med((r) => r.generatorCpuMs!) } : {};
  return { rps: med((r) => r.rps), p50Ms: med((r) => r.p50Ms), p99Ms: med((r) => r.p99Ms), errors: sum((r) => r.errors), requests: sum((r) => r.requests), durationMs: sum((r) => r.durationMs), ...cpu };
}

export function median(values: number[]): number {
  const v = [...values].sort((x, y) => x - y);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export const fmtRun = (r: Run): string => `${r.rps.toFixed(0)} req/s p99 ${r.p99Ms.toFixed(1)} ms${r.errors > 0 ? ` ${r.errors} errors` : ''}`;

/** A positive whole number from the environment, or `fallback` when unset. */
export function envInt(name: string, fallback: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[name];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return n;
}

export function progress(line: string): void {
  console.log(`  ${line}`);
}
