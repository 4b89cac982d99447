import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmtRun, median, medianRun, progress, RATE_IN_FLIGHT_MAX, type BenchConfig, type NamedPid, type Run, type System } from './config';
import type { Driver } from './drivers';
import { OPEN_LOOP_PREFIX, type OpenLoopSpec } from './open-loop-main';

/**
 * The tail target: p99 at half our peak at most the skeleton's p99 at that same rate.
 *
 * Latency is only comparable at one offered rate (in a closed loop the faster system also carries
 * more load), and on 2 cores it only means something if the generator does not steal the servers'
 * CPU. So, when taskset (util-linux) is there and we may use 2+ CPUs: every server process of ours
 * and of the skeletons is pinned (all its threads) to all CPUs but the last, and the generator and
 * this process to the last one. The peak is found in that same configuration (wrk closed loop,
 * alternating ours and the skeleton); the rate is half our peak, or half the skeleton's when that is
 * lower (a rate it cannot sustain would only measure its queue). Then several short open-loop runs
 * (tail.ts's child, open-loop-main.ts, from due time) alternate ours and the skeleton at that rate,
 * first one then the other, and the medians are compared. Pinning is undone afterwards.
 */
export interface PinPlan {
  serverCpus: string;
  generatorCpus: string;
  allCpus: string;
}

export interface TailSide {
  peakRps: number;
  runs: Run[];
  median: Run;
  /** Its median achieved rate is at least SUSTAINED_SHARE_MIN of the offered rate. */
  sustained: boolean;
  /** The generator's CPU time over each run's wall time (median): near 1.0 it, not the server, was the limit. */
  generatorBusyShare: number;
}

export interface TailResult {
  op: 'GET' | 'PUT';
  ratePerSec: number;
  rateBasis: string;
  ours: TailSide;
  skeleton: TailSide;
  skeletonLabel: string;
  /** Both sustained the rate, and our median p99 is at most the skeleton's. */
  met: boolean;
}

export interface TailPhase {
  pinning: PinPlan | undefined;
  /** How the processes were placed, or why they were not pinned. */
  placement: string;
  runs: number;
  runSeconds: number;
  results: TailResult[];
}

/** An achieved rate under this share of the offered one means the system (or the generator) fell behind. */
export const SUSTAINED_SHARE_MIN = 0.95;
const WARMUP_MS = 500;
/** A run's child is killed if it has not finished this long after its nominal end. */
const CHILD_GRACE_MS = 30_000;
const OPEN_LOOP_SCRIPT = join(__dirname, 'open-loop-main.js');

/** CPUs this process may use, from Cpus_allowed_list ("0-1", "0,2-3"); undefined off Linux. */
export function allowedCpus(status: string): number[] | undefined {
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1];
  if (list === undefined) return undefined;
  return list.split(',').flatMap((part) => {
    const [lo, hi] = part.split('-').map(Number);
    return Array.from({ length: (hi ?? lo!) - lo! + 1 }, (_, i) => lo! + i);
  });
}

/** Servers on all allowed CPUs but the last, the generator on the last; or why that cannot be done. */
export function pinPlan(cfg: BenchConfig): PinPlan | string {
  if (!cfg.pin) return 'not pinned (BENCH_PIN=0): the generator shares the cores with the servers';
  if (spawnSync('taskset', ['--version']).error !== undefined) return 'not pinned: taskset (util-linux) is not installed; the generator shares the cores with the servers';
  let cpus: number[] | undefined;
  try {
    cpus = allowedCpus(readFileSync('/proc/self/status', 'utf8'));
  } catch {
    cpus = undefined;
  }
  if (cpus === undefined || cpus.length < 2) return `not pinned: ${cpus?.length ?? 'unknown'} CPU(s) allowed, at least 2 are needed to keep the generator apart`;
  return { serverCpus: cpus.slice(0, -1).join(','), generatorCpus: String(cpus.at(-1)), allCpus: cpus.join(',') };
}

/** `taskset -a -p -c`: every thread of the process; threads it starts later inherit the mask. */
function pin(pid: number, cpus: string): void {
  const r = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`taskset -a -p -c ${cpus} ${pid} failed: ${(r.stderr || r.error?.message || '').trim()}`);
}

/** Half our peak, or half the skeleton's when that is lower (it must sustain the rate too). */
export function tailRate(oursPeakRps: number, skeletonPeakRps: number): { ratePerSec: number; rateBasis: string } {
  const ours = Math.max(1, Math.round(oursPeakRps / 2));
  const skeleton = Math.max(1, Math.round(skeletonPeakRps / 2));
  return ours <= skeleton ? { ratePerSec: ours, rateBasis: 'half our peak' } : { ratePerSec: skeleton, rateBasis: "half the skeleton's peak, below half ours" };
}

export interface TailDeps {
  cfg: BenchConfig;
  driver: Driver;
  children: Set<ChildProcess>;
  ours: System;
  skeletons: { GET: System; PUT: System };
  /** Every server process to pin (ours and both skeletons). */
  servers: NamedPid[];
}

export async function tailPhase(d: TailDeps): Promise<TailPhase> {
  const plan = pinPlan(d.cfg);
  const pinning = typeof plan === 'string' ? undefined : plan;
  const placement = pinning === undefined ? String(plan) : `servers pinned to CPU ${pinning.serverCpus}, load generator (and this process) to CPU ${pinning.generatorCpus} (taskset -a)`;
  console.log(`\ntail: ${placement}`);
  const pids = [...d.servers.map((s) => s.pid), process.pid].filter((p): p is number => p !== undefined);
  try {
    if (pinning !== undefined) for (const pid of pids) pin(pid, pid === process.pid ? pinning.generatorCpus : pinning.serverCpus);
    const results: TailResult[] = [];
    for (const op of ['GET', 'PUT'] as const) results.push(await tailFor(d, op, d.skeletons[op], pinning?.generatorCpus));
    return { pinning, placement, runs: d.cfg.tailRuns, runSeconds: d.cfg.tailSeconds, results };
  } finally {
    // Leave every process as it was (the profile and any later phase use both cores).
    if (pinning !== undefined) for (const pid of pids) tryPin(pid, pinning.allCpus);
  }
}

function tryPin(pid: number, cpus: string): void {
  try {
    pin(pid, cpus);
  } catch {
    // a process that exited needs no unpinning
  }
}

async function tailFor(d: TailDeps, op: 'GET' | 'PUT', skeleton: System, cpus: string | undefined): Promise<TailResult> {
  const peaks = { ours: [] as number[], skeleton: [] as number[] };
  for (let i = 0; i < d.cfg.tailPeakRuns; i += 1) {
    for (const side of alternate(i)) peaks[side].push((await d.driver.run(side === 'ours' ? d.ours : skeleton, op, d.cfg.tailSeconds, cpus)).rps);
  }
  const peak = { ours: median(peaks.ours), skeleton: median(peaks.skeleton) };
  const { ratePerSec, rateBasis } = tailRate(peak.ours, peak.skeleton);
  progress(`${op} peak in this placement (closed loop, median of ${d.cfg.tailPeakRuns}): ours ${peak.ours.toFixed(0)} req/s, ${skeleton.label} ${peak.skeleton.toFixed(0)} req/s -> ${ratePerSec} req/s (${rateBasis})`);
  const runs = { ours: [] as Run[], skeleton: [] as Run[] };
  for (let i = 0; i < d.cfg.tailRuns; i += 1) {
    for (const side of alternate(i)) runs[side].push(await openLoop(d, side === 'ours' ? d.ours : skeleton, op, ratePerSec, cpus));
    progress(`${op} @ ${ratePerSec} req/s run ${i + 1}/${d.cfg.tailRuns}: ours ${fmtRun(runs.ours.at(-1)!)} | ${skeleton.label} ${fmtRun(runs.skeleton.at(-1)!)}`);
  }
  const side = (r: Run[], peakRps: number): TailSide => {
    const m = medianRun(r);
    const busy = median(r.map((x) => (x.generatorCpuMs ?? NaN) / x.durationMs));
    return { peakRps, runs: r, median: m, sustained: m.rps >= SUSTAINED_SHARE_MIN * ratePerSec, generatorBusyShare: busy };
  };
  const ours = side(runs.ours, peak.ours);
  const skel = side(runs.skeleton, peak.skeleton);
  return { op, ratePerSec, rateBasis, ours, skeleton: skel, skeletonLabel: skeleton.label, met: ours.sustained && skel.sustained && ours.median.p99Ms <= skel.median.p99Ms };
}

/** ours first in even runs, the skeleton first in odd ones: drift in the machine hits both alike. */
const alternate = (i: number): Array<'ours' | 'skeleton'> => (i % 2 === 0 ? ['ours', 'skeleton'] : ['skeleton', 'ours']);

function openLoop(d: TailDeps, sys: System, op: 'GET' | 'PUT', ratePerSec: number, cpus: string | undefined): Promise<Run> {
  const spec: OpenLoopSpec = { url: sys.url, op, ratePerSec, durationMs: d.cfg.tailSeconds * 1000, warmupMs: WARMUP_MS, connections: d.cfg.connections, keyCount: d.cfg.keyCount, valueBytes: d.cfg.valueBytes, inFlightMax: RATE_IN_FLIGHT_MAX };
  const node = [process.execPath, OPEN_LOOP_SCRIPT, JSON.stringify(spec)];
  const argv = cpus === undefined ? node : ['taskset', '-c', cpus, ...node];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    d.children.add(child);
    const timer = setTimeout(() => child.kill('SIGKILL'), WARMUP_MS + spec.durationMs + CHILD_GRACE_MS);
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      d.children.delete(child);
      const line = out.split('\n').find((l) => l.startsWith(OPEN_LOOP_PREFIX));
      if (code !== 0 || line === undefined) return reject(new Error(`open-loop generator against ${sys.label} failed (exit ${code}):\n${out}`));
      resolvePromise(JSON.parse(line.slice(OPEN_LOOP_PREFIX.length)) as Run);
    });
  });
}

export function printTail(t: TailPhase): void {
  console.log(`\ntail at one open-loop rate, ${t.runs} alternating runs x ${t.runSeconds} s per system (medians; latency from due time, Node load.ts); ${t.placement}`);
  console.log(`${''.padEnd(34)} ${'offered'.padStart(8)} ${'achieved'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)} ${'gen. busy'.padStart(10)}`);
  for (const r of t.results) {
    for (const [label, s] of [[`${r.op} ours`, r.ours], [`${r.op} ${r.skeletonLabel}`, r.skeleton]] as const) {
      const busy = Number.isFinite(s.generatorBusyShare) ? `${(100 * s.generatorBusyShare).toFixed(0)}%` : 'n/a';
      console.log(`${label.padEnd(34)} ${String(r.ratePerSec).padStart(8)} ${s.median.rps.toFixed(0).padStart(9)} ${s.median.p50Ms.toFixed(2).padStart(8)} ${s.median.p99Ms.toFixed(2).padStart(8)} ${String(s.median.errors).padStart(7)} ${busy.padStart(10)}${s.sustained ? '' : '  NOT SUSTAINED'}`);
    }
    console.log(`${''.padEnd(34)} rate: ${r.rateBasis} (peaks here: ours ${r.ours.peakRps.toFixed(0)}, skeleton ${r.skeleton.peakRps.toFixed(0)} req/s)`);
  }
}
