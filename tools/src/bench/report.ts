import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { OPS, OUT_DIR, type Op, type Run } from './config';
import { printCpuTables, type CpuTable } from './cpu';
import { printTail, type TailPhase } from './tail';

/** The closed-loop result of one system for one operation: every round and the medians. */
export interface SideResult {
  system: string;
  rounds: Run[];
  median: Run;
}

export type Side = 'ours' | 'skeleton' | 'etcd';
export type OpResult = { ours: SideResult; skeleton: SideResult; etcd?: SideResult };

/** One ratio or latency comparison: its target, or none (informational). */
export interface Goal {
  name: string;
  value: string;
  target: string;
  /** undefined: informational, or not measured (etcd skipped). */
  met: boolean | undefined;
}

/** The ratio targets of issue 10, all measured in the same run. */
export const RATIO_MIN = 2.0;

export interface Report {
  driverName: string;
  rounds: number;
  seconds: number;
  config: Record<string, unknown>;
  etcd: { version: string; member: string; leaderAtStart: string | undefined; leaderAtEnd: string | undefined } | undefined;
  etcdSkipped: string | undefined;
  results: Record<Op, OpResult>;
  tail: TailPhase;
  cpu: CpuTable[];
  warnings: { count: number; last: string[] };
  /** The 1-minute load average when the measurement began (the machine line shows the one at the end too). */
  loadAverage1mAtStart: number;
}

const ratio = (a: SideResult | undefined, b: SideResult | undefined) => (a === undefined || b === undefined ? undefined : a.median.rps / b.median.rps);

function ratioGoal(name: string, value: number | undefined, min: number | undefined, missing: string): Goal {
  const target = min === undefined ? 'informational' : `>= ${min.toFixed(1)}x`;
  if (value === undefined) return { name, value: missing, target, met: undefined };
  return { name, value: `${value.toFixed(2)}x`, target, met: min === undefined ? undefined : value >= min };
}

export function goals(r: Report): Goal[] {
  const noEtcd = r.etcdSkipped === undefined ? 'n/a' : 'not measured';
  const { GET, PUT, MIX } = r.results;
  const tail = r.tail.results.map((t): Goal => ({
    name: `${t.op} p99 @ ${t.ratePerSec} req/s: ours <= ${t.skeletonLabel}`,
    value: `${t.ours.median.p99Ms.toFixed(2)} / ${t.skeleton.median.p99Ms.toFixed(2)} ms`,
    target: `ours <= skeleton${t.ours.sustained && t.skeleton.sustained ? '' : ' (rate not sustained)'}`,
    met: t.met,
  }));
  return [
    ratioGoal('PUT req/s ours / skeleton (b)', ratio(PUT.ours, PUT.skeleton), RATIO_MIN, 'n/a'),
    ratioGoal('GET req/s ours / skeleton (a)', ratio(GET.ours, GET.skeleton), RATIO_MIN, 'n/a'),
    ratioGoal('PUT req/s ours / etcd put', ratio(PUT.ours, PUT.etcd), RATIO_MIN, noEtcd),
    ratioGoal('GET req/s ours / etcd range (linearizable)', ratio(GET.ours, GET.etcd), RATIO_MIN, noEtcd),
    ratioGoal('MIX 2:1 req/s ours / skeleton (b)', ratio(MIX.ours, MIX.skeleton), undefined, 'n/a'),
    ratioGoal('MIX 2:1 req/s ours / etcd', ratio(MIX.ours, MIX.etcd), undefined, noEtcd),
    ...tail,
  ];
}

export function machine(loadAverage1mAtStart: number) {
  const c = cpus();
  // The 1-minute load average at the start and the end: other work on the machine skews every side's figures.
  return { cpus: c.length, model: c[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version, loadAverage1mAtStart, loadAverage1m: loadavg()[0]! };
}

/** The one-line machine summary the single-purpose benches print beside their figures. */
export function machineLine(): string {
  const c = cpus();
  return `machine: ${c.length} x ${c[0]?.model ?? 'unknown'}, load average ${loadavg()[0]!.toFixed(1)} (shared: other work may run beside the benchmark)`;
}

export function writeReport(r: Report): void {
  const m = machine(r.loadAverage1mAtStart);
  const g = goals(r);
  const etcdNote = r.etcd === undefined ? `etcd not measured (${r.etcdSkipped})` : `etcd ${r.etcd.version} x3 via ${r.etcd.member}'s JSON gateway`;
  console.log(`\nmachine: ${m.cpus} x ${m.model}, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}, load average ${m.loadAverage1mAtStart.toFixed(1)} at the start, ${m.loadAverage1m.toFixed(1)} at the end; load: ${r.driverName}, ${r.rounds} rounds x ${r.seconds} s (medians); ${etcdNote}\n`);
  printTable(r.results);
  if (r.etcd !== undefined && r.etcd.leaderAtEnd !== r.etcd.leaderAtStart) console.log(`\n*** etcd's leader changed during the rounds (${r.etcd.leaderAtStart} -> ${r.etcd.leaderAtEnd}): its figures include an election`);
  printCpuTables(r.cpu, 'PUT');
  printTail(r.tail);
  if (r.warnings.count > 0) console.log(`\n${r.warnings.count} warning lines from the nodes during the measurement; the last ones:\n${r.warnings.last.join('\n')}`);
  printGoals(g);
  const json = { command: 'npm run bench', date: new Date().toISOString(), machine: m, config: r.config, etcd: r.etcd ?? { skipped: r.etcdSkipped }, results: r.results, ratios: g, tail: r.tail, cpuPer1000Puts: r.cpu, warnings: r.warnings };
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, 'bench.json'), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(OUT_DIR, 'bench.svg'), svgChart(r.results, r.tail));
  console.log('\nwritten to bench-results/bench.json and bench-results/bench.svg');
}

function printGoals(g: Goal[]): void {
  console.log(`\n${'targets (same run)'.padEnd(50)} ${'value'.padStart(18)}  ${'target'.padEnd(22)} result`);
  for (const x of g) {
    const result = x.met === undefined ? (x.target === 'informational' ? '' : 'not measured') : x.met ? 'met' : 'NOT MET';
    console.log(`  ${x.name.padEnd(48)} ${x.value.padStart(18)}  ${x.target.padEnd(22)} ${result}`);
  }
}

const LABELS: Record<Op, Record<Side, string>> = {
  GET: { ours: 'GET  ours: router -> leader', skeleton: 'GET  skeleton (a): router -> backend', etcd: 'GET  etcd: range, linearizable' },
  PUT: { ours: 'PUT  ours: -> leader -> follower, durable', skeleton: 'PUT  skeleton (b): -> leader -> follower', etcd: 'PUT  etcd: put, 3 members, durable' },
  MIX: { ours: 'MIX 2:1  ours', skeleton: 'MIX 2:1  skeleton (b)', etcd: 'MIX 2:1  etcd' },
};

function printTable(results: Record<Op, OpResult>): void {
  const row = (label: string, r: Run, vs: string) =>
    console.log(`${label.padEnd(44)} ${r.rps.toFixed(0).padStart(8)} ${r.p50Ms.toFixed(2).padStart(8)} ${r.p99Ms.toFixed(2).padStart(8)} ${String(r.errors).padStart(7)} ${vs.padStart(9)}`);
  console.log(`${'closed loop, median of rounds'.padEnd(44)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)} ${'ours / x'.padStart(9)}`);
  for (const op of OPS) {
    const res = results[op];
    for (const side of ['ours', 'skeleton', 'etcd'] as const) {
      const s = res[side];
      if (s !== undefined) row(LABELS[op][side], s.median, side === 'ours' ? '' : `${ratio(res.ours, s)!.toFixed(2)}x`);
    }
  }
}

// ---- the chart ----------------------------------------------------------------------------

interface Group {
  label: string;
  values: number[];
}

const COLORS = ['#3b6fb6', '#bbb', '#d08c30'];

/** Two panels of grouped bars: req/s per operation (ours, skeleton, etcd), and p99 per run kind. */
function svgChart(results: Record<Op, OpResult>, tail: TailPhase): string {
  const sides = (op: Op) => [results[op].ours, results[op].skeleton, ...(results[op].etcd ? [results[op].etcd] : [])];
  const rps = OPS.map((op) => ({ label: op, values: sides(op).map((s) => s.median.rps) }));
  const p99 = [
    ...OPS.map((op) => ({ label: `${op} peak`, values: sides(op).map((s) => s.median.p99Ms) })),
    ...tail.results.map((t) => ({ label: `${t.op} @${t.ratePerSec}/s`, values: [t.ours.median.p99Ms, t.skeleton.median.p99Ms] })),
  ];
  const body = [panel('req/s (closed loop, median of rounds)', rps, 0), panel('p99 latency, ms (peak; then open loop at one rate)', p99, 440)].join('\n');
  const legend = (['ours', 'skeleton ((a) for GET, (b) for PUT and MIX)', 'etcd 3.4, 3 members'] as const)
    .map((name, i) => {
      const x = [20, 90, 360][i]!;
      return `<rect x="${x}" y="292" width="12" height="12" fill="${COLORS[i]}"/><text x="${x + 18}" y="303">${name}</text>`;
    })
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="900" height="315" font-family="sans-serif" font-size="11">\n<rect width="100%" height="100%" fill="white"/>\n${body}\n${legend}\n</svg>\n`;
}

function panel(title: string, groups: Group[], x0: number): string {
  const h = 220;
  const top = 40;
  const max = Math.max(...groups.flatMap((g) => g.values.filter(Number.isFinite)), 1e-9);
  const groupWidth = 400 / groups.length;
  const barWidth = (groupWidth * 0.8) / 3;
  const bar = (x: number, v: number, color: string) => {
    const bh = Number.isFinite(v) ? (v / max) * h : 0;
    const text = Number.isFinite(v) ? (v < 100 ? v.toFixed(1) : v.toFixed(0)) : 'n/a';
    return `<rect x="${x.toFixed(1)}" y="${(top + h - bh).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${bh.toFixed(1)}" fill="${color}"/><text x="${(x + barWidth / 2).toFixed(1)}" y="${(top + h - bh - 3).toFixed(1)}" text-anchor="middle" font-size="8">${text}</text>`;
  };
  const bars = groups.map((g, i) => {
    const gx = x0 + 20 + i * groupWidth;
    return `${g.values.map((v, k) => bar(gx + groupWidth * 0.1 + k * barWidth, v, COLORS[k]!)).join('')}<text x="${(gx + groupWidth / 2).toFixed(1)}" y="${top + h + 14}" text-anchor="middle">${g.label}</text>`;
  });
  return `<text x="${x0 + 20}" y="20" font-size="13" font-weight="bold">${title}</text><line x1="${x0 + 20}" y1="${top + h}" x2="${x0 + 420}" y2="${top + h}" stroke="#333"/>\n${bars.join('\n')}`;
}
