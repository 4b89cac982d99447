import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { NamedPid, Run, System } from './config';

/**
 * CPU time per 1,000 operations of each process under load, from /proc/<pid>/stat: utime + stime
 * (every thread of the process: Node's, libuv's pool, LMDB's) read just before a measured wrk run
 * and just after it, summed over the rounds and divided by the answers wrk counted. The load
 * generator's own figure is read by wrk itself at its end (wrk-scripts.ts), so every process is
 * measured over the same run.
 */
let clockTicksPerSec: number | undefined;

/** sysconf(_SC_CLK_TCK), the unit of /proc/<pid>/stat times: 100 on every Linux we know. */
export function ticksPerSec(): number {
  if (clockTicksPerSec === undefined) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim();
    clockTicksPerSec = Number(out) > 0 ? Number(out) : 100;
  }
  return clockTicksPerSec;
}

/** utime and stime (fields 14 and 15) of a /proc/<pid>/stat line, in clock ticks; the name in parentheses may hold spaces. */
export function statCpuTimes(stat: string): { userTicks: number; systemTicks: number } {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field n is fields[n - 3].
  const userTicks = Number(fields[11]);
  const systemTicks = Number(fields[12]);
  if (!Number.isFinite(userTicks + systemTicks)) throw new Error(`unexpected /proc/<pid>/stat line: ${stat.slice(0, 120)}`);
  return { userTicks, systemTicks };
}

/** utime + stime of a /proc/<pid>/stat line, in clock ticks. */
export function statCpuTicks(stat: string): number {
  const t = statCpuTimes(stat);
  return t.userTicks + t.systemTicks;
}

/** CPU time of a process so far, in ms; undefined when it is not running (or not on Linux). */
export function cpuMsOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    return (statCpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8')) * 1000) / ticksPerSec();
  } catch {
    return undefined;
  }
}

export interface CpuRow {
  process: string;
  /** CPU ms this process spent per 1,000 operations the whole system answered. */
  cpuMsPer1000Ops: number;
  /** Its CPU time over the wall time of the runs: 1.0 is one core busy throughout. */
  coresBusy: number;
}

export interface CpuTable {
  system: string;
  /** Operations answered over the accounted runs, and their wall time. */
  ops: number;
  wallMs: number;
  rows: CpuRow[];
  totalCpuMsPer1000Ops: number;
}

/** The load generator's row (wrk, or the Node generator with BENCH_LOADGEN=node): not a server. */
const GENERATOR_ROW = 'load generator';

/** Sums, per system, the CPU deltas of every accounted run. */
export class CpuAccount {
  private readonly systems = new Map<string, { ops: number; wallMs: number; cpuMs: Map<string, number> }>();

  /** Runs `run` (a measured wrk run against `sys`) and records every process's CPU delta over it. */
  async measure(sys: System, run: () => Promise<Run>): Promise<Run> {
    const procs = sys.processes();
    const before = procs.map((p) => cpuMsOf(p.pid));
    const r = await run();
    const after = procs.map((p) => cpuMsOf(p.pid));
    const acc = this.entry(sys.label);
    acc.ops += r.requests;
    acc.wallMs += r.durationMs;
    const add = (name: string, ms: number) => acc.cpuMs.set(name, (acc.cpuMs.get(name) ?? 0) + ms);
    procs.forEach((p: NamedPid, i) => {
      const [b, a] = [before[i], after[i]];
      // A process that restarted mid-run (pid gone) has no meaningful delta: leave it out, visibly.
      add(p.name, b !== undefined && a !== undefined && a >= b ? a - b : NaN);
    });
    add(GENERATOR_ROW, r.generatorCpuMs ?? NaN);
    return r;
  }

  tables(): CpuTable[] {
    return [...this.systems].map(([system, acc]) => {
      const rows = [...acc.cpuMs].map(([process, cpuMs]) => ({ process, cpuMsPer1000Ops: (cpuMs * 1000) / acc.ops, coresBusy: cpuMs / acc.wallMs }));
      const total = rows.filter((r) => r.process !== GENERATOR_ROW).reduce((a, r) => a + r.cpuMsPer1000Ops, 0);
      return { system, ops: acc.ops, wallMs: acc.wallMs, rows, totalCpuMsPer1000Ops: total };
    });
  }

  private entry(system: string) {
    let acc = this.systems.get(system);
    if (acc === undefined) this.systems.set(system, (acc = { ops: 0, wallMs: 0, cpuMs: new Map() }));
    return acc;
  }
}

export function printCpuTables(tables: CpuTable[], op: string): void {
  if (tables.length === 0) return;
  console.log(`\nCPU time per 1,000 ${op}s (utime + stime from /proc/<pid>/stat over the measured ${op} rounds; per 1,000 operations of the whole system)`);
  console.log(`${'process'.padEnd(40)} ${'ms/1k ops'.padStart(10)} ${'cores busy'.padStart(11)}`);
  for (const t of tables) {
    console.log(`${t.system}: ${t.ops} ops in ${(t.wallMs / 1000).toFixed(1)} s`);
    for (const r of t.rows) console.log(`  ${r.process.padEnd(38)} ${fmt(r.cpuMsPer1000Ops, 10)} ${fmt(r.coresBusy, 11, 2)}`);
    console.log(`  ${'servers, total'.padEnd(38)} ${fmt(t.totalCpuMsPer1000Ops, 10)}`);
  }
}

const fmt = (v: number, width: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a').padStart(width);
