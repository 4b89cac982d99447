import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OUT_DIR } from './config';
import { CUTOVER_MARGIN_MS, type Migration, type MigrationFigures } from './reshard-phases';
import { phaseDurations, type WindowStats } from './reshard-ops';
import { machine, machineLine } from './report';
import type { LoadResult } from './reshard-run';

/** `npm run bench:reshard`'s targets, its table and its JSON report. */
export const THROUGHPUT_RATIO_MIN = 0.5;
/** Keys moved, as a fraction of all: one shard of four, within this many percentage points. */
export const KEYS_MOVED_TOLERANCE_POINTS = 3;

export interface Phase {
  migration: Migration;
  figures: MigrationFigures;
}

export interface ReshardReport {
  config: Record<string, number>;
  load: LoadResult;
  loadAverage1mAtStart: number;
  baseline: WindowStats;
  quiet: WindowStats;
  add: Phase;
  remove: Phase;
  nodeWarnings: { count: number; kept: Array<{ node: string; atMs: number; msg: string }> };
}

/** One figure of one migration against its target; `met` undefined: informational. */
interface Cell {
  value: string;
  met: boolean | undefined;
}

interface Row {
  name: string;
  target: string;
  cells: (p: Phase, baseline: WindowStats) => Cell;
}

const ms = (v: number) => `${v.toFixed(1)} ms`;
const info = (value: string): Cell => ({ value, met: undefined });
const codes = (byCode: Record<string, number>) => Object.entries(byCode).map(([c, n]) => `${c} ${n}`).join(', ');

const ROWS: Row[] = [
  { name: 'migration time (map) / whole step', target: '-', cells: (p) => info(`${(p.figures.migrationMs / 1000).toFixed(1)} s / ${(p.figures.wallMs / 1000).toFixed(1)} s`) },
  {
    name: 'ops/s during / baseline',
    target: `>= ${THROUGHPUT_RATIO_MIN}x`,
    cells: (p, b) => {
      const r = p.figures.during.okOpsPerSec / b.okOpsPerSec;
      return { value: `${r.toFixed(2)}x (${p.figures.during.okOpsPerSec.toFixed(0)}/s)`, met: r >= THROUGHPUT_RATIO_MIN };
    },
  },
  { name: 'latency p99 during', target: '-', cells: (p) => info(ms(p.figures.during.p99Ms)) },
  { name: 'latency max during', target: '-', cells: (p) => info(ms(p.figures.during.maxMs)) },
  { name: 'moved keys: p99 / max, whole migration', target: '-', cells: (p) => info(`${p.figures.movedKeys.p99Ms.toFixed(1)} / ${ms(p.figures.movedKeys.maxMs)}`) },
  {
    name: 'moved keys: longest op around cutover',
    target: '-',
    cells: (p) => {
      const w = p.figures.cutoverWindow;
      return info(w === undefined ? 'no cutover line' : `${ms(w.movedKeys.maxMs)} (${w.movedKeys.ops} ops)`);
    },
  },
  {
    name: 'client errors during migration',
    target: '0',
    cells: (p) => ({ value: p.figures.during.errors === 0 ? '0' : `${p.figures.during.errors} (${codes(p.figures.during.errorsByCode)})`, met: p.figures.during.errors === 0 }),
  },
  {
    name: 'keys moved / total',
    target: `25% +-${KEYS_MOVED_TOLERANCE_POINTS} pts`,
    cells: (p) => {
      const pct = p.figures.keysMovedFraction * 100;
      return { value: `${pct.toFixed(2)}% (${p.migration.shardKeys}/${p.migration.totalKeys})`, met: Math.abs(pct - 25) <= KEYS_MOVED_TOLERANCE_POINTS };
    },
  },
  {
    name: 'slots moved (maps) / announced',
    target: 'equal',
    cells: (p) => ({ value: `${p.migration.movedSlots.length} / ${p.migration.slotsMovingAnnounced}`, met: p.migration.movedSlots.length === p.migration.slotsMovingAnnounced }),
  },
  { name: 'frozenMs (router log)', target: '-', cells: (p) => info(p.migration.cutover === undefined ? 'no line' : `${p.migration.cutover.frozenMs} ms`) },
  {
    name: 'keysCopied / movedKeysDeleted (log)',
    target: '-',
    cells: (p) => info(p.migration.finished === undefined ? 'no line' : `${p.migration.finished.keysCopied ?? 'null'} / ${p.migration.finished.movedKeysDeleted}`),
  },
  { name: 'phases (map poll)', target: '-', cells: (p) => info(phaseDurations(p.migration.phases, p.migration.endMs).map((x) => `${x.label === 'none' ? 'no migration' : x.label} ${(x.ms / 1000).toFixed(1)}s`).join(', ')) },
  { name: 'router thaws + failed steps', target: '-', cells: (p) => info(String(p.migration.retries.length)) },
];

function cellText(c: Cell): string {
  return c.met === undefined ? c.value : `${c.value} ${c.met ? 'met' : 'NOT MET'}`;
}

function windowLine(label: string, w: WindowStats): string {
  return `${label.padEnd(34)} ${w.okOpsPerSec.toFixed(0).padStart(6)} ops/s  p50 ${w.p50Ms.toFixed(2)} p99 ${w.p99Ms.toFixed(2)} max ${w.maxMs.toFixed(1)} ms  errors ${w.errors}${w.errors > 0 ? ` (${codes(w.errorsByCode)})` : ''}`;
}

export function printReport(r: ReshardReport): void {
  const c = r.config;
  console.log('');
  console.log(machineLine());
  const retried = Object.entries(r.load.retriedByCode).map(([code, n]) => `${n} ${code}`).join(', ');
  console.log(`${c['keys']} keys loaded through POST /load in ${r.load.seconds.toFixed(1)} s${retried === '' ? '' : ` (sent again: ${retried})`}; ${c['concurrency']} client loops (KvClient through the router, 50% get / 50% put)`);
  console.log(windowLine(`baseline, 3 shards (${(r.baseline.durationMs / 1000).toFixed(0)} s)`, r.baseline));
  console.log(windowLine(`quiet, 4 shards (${(r.quiet.durationMs / 1000).toFixed(0)} s)`, r.quiet));
  const addHead = `add ${r.add.migration.shard}`;
  const removeHead = `remove ${r.remove.migration.shard}`;
  const cells = ROWS.map((row) => [row.name, cellText(row.cells(r.add, r.baseline)), cellText(row.cells(r.remove, r.baseline)), row.target] as const);
  const w = [0, 1, 2].map((i) => Math.max(...cells.map((x) => x[i]!.length), ['figure', addHead, removeHead][i]!.length));
  console.log('');
  console.log(`${'figure'.padEnd(w[0]!)}  ${addHead.padEnd(w[1]!)}  ${removeHead.padEnd(w[2]!)}  target`);
  for (const x of cells) console.log(`${x[0].padEnd(w[0]!)}  ${x[1].padEnd(w[1]!)}  ${x[2].padEnd(w[2]!)}  ${x[3]}`);
  console.log(`(windows: while the map showed the migration; whole step: pair start or DELETE until done, pair stop included; ratios against the 3-shard baseline; "around cutover" = ops ending from ${CUTOVER_MARGIN_MS / 1000} s before the freeze to ${CUTOVER_MARGIN_MS / 1000} s after the cutover log line)`);
  if (r.nodeWarnings.count > 0) console.log(`${r.nodeWarnings.count} warning/error lines from the nodes during the run (migration progress lines included; all kept in the JSON report up to ${r.nodeWarnings.kept.length})`);
  console.log(`command: npm run bench:reshard (${Object.entries(c).map(([k, v]) => `${k}=${v}`).join(', ')})`);
}

/** Writes bench-results/reshard-<timestamp>.json; returns its path relative to the repository. */
export function writeReport(r: ReshardReport): string {
  const name = `reshard-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  const targets = ROWS.map((row) => ({ figure: row.name, target: row.target, add: row.cells(r.add, r.baseline), remove: row.cells(r.remove, r.baseline) }));
  const strip = (p: Phase) => ({ ...p, migration: { ...p.migration, movedSlots: p.migration.movedSlots.length } });
  const json = { command: 'npm run bench:reshard', date: new Date().toISOString(), machine: machine(r.loadAverage1mAtStart), ...r, add: strip(r.add), remove: strip(r.remove), targets };
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, name), `${JSON.stringify(json, null, 2)}\n`);
  return `bench-results/${name}`;
}
