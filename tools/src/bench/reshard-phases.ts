import type { KvClient } from '@shardkv/client';
import { SLOT_COUNT } from '@shardkv/common';
import type { ScenarioContext } from '../chaos';
import type { Cluster } from '../cluster';
import { addOnline, removeOnline } from '../reshard-faults';
import { movedSlots, type OpLog, type RouterEvent, type WindowStats } from './reshard-ops';
import { nowMs, shardKeyCounts, watchPhases, type LogWatch, type PhaseChange } from './reshard-run';

/**
 * One online migration under the client loops (a shard added, or drained and removed), what it
 * did (from the maps before and after, the shards' key counts and the router's log), and then the
 * clients' figures over it from the op log.
 */
export interface Migration {
  kind: 'add' | 'remove';
  shard: string;
  startMs: number;
  endMs: number;
  /** Slots whose owner differs between the maps before and after. */
  movedSlots: number[];
  /** What the router announced when the migration started. */
  slotsMovingAnnounced: number;
  /** The added shard's keys once it ended, or the removed one's before it started. */
  shardKeys: number;
  totalKeys: number;
  cutover: Extract<RouterEvent, { kind: 'cutover' }> | undefined;
  finished: Extract<RouterEvent, { kind: 'finished' }> | undefined;
  /** Thaws and failed steps logged by the router during the migration (a clean run has none). */
  retries: Array<Extract<RouterEvent, { kind: 'thaw' | 'stepFailed' }>>;
  /** The migration's states and phases as the coordinator's map showed them, with when each began. */
  phases: PhaseChange[];
}

export interface MigrationSpec {
  cluster: Cluster;
  admin: KvClient;
  watch: LogWatch;
  signal: AbortSignal;
  timeoutMs: number;
  log: (line: string) => void;
}

/** How long after a migration ends its log lines may still be on their way to us. */
const LOG_LINE_WAIT_MS = 3000;

export async function addShardOnline(spec: MigrationSpec): Promise<Migration> {
  const before = await spec.admin.clusterMap();
  const startMs = nowMs();
  const phases = watchPhases(spec.admin, spec.log);
  const fault = await addOnline(spec.cluster, context(spec), { timeoutMs: spec.timeoutMs }).finally(() => phases.stop());
  const endMs = nowMs();
  const after = await spec.admin.clusterMap();
  const shard = String(fault.figures!['shard']);
  const counts = await shardKeyCounts(after);
  return describe(spec, { kind: 'add', shard, startMs, endMs, before, after, counts, announced: Number(fault.figures!['slotsMoving']), phases: phases.stop() });
}

export async function removeShardOnline(spec: MigrationSpec, shard: string): Promise<Migration> {
  const before = await spec.admin.clusterMap();
  const counts = await shardKeyCounts(before);
  const startMs = nowMs();
  const phases = watchPhases(spec.admin, spec.log);
  const fault = await removeOnline(spec.cluster, shard, context(spec), { timeoutMs: spec.timeoutMs }).finally(() => phases.stop());
  const endMs = nowMs();
  const after = await spec.admin.clusterMap();
  return describe(spec, { kind: 'remove', shard, startMs, endMs, before, after, counts, announced: Number(fault.figures!['slotsMoving']), phases: phases.stop() });
}

interface Observed {
  kind: 'add' | 'remove';
  shard: string;
  startMs: number;
  endMs: number;
  before: Awaited<ReturnType<KvClient['clusterMap']>>;
  after: Awaited<ReturnType<KvClient['clusterMap']>>;
  counts: Record<string, number>;
  announced: number;
  phases: PhaseChange[];
}

async function describe(spec: MigrationSpec, o: Observed): Promise<Migration> {
  if (o.before.slots === null || o.after.slots === null) throw new Error('the cluster map has no hash slots: nothing to reshard');
  const cutover = await spec.watch.first('cutover', o.startMs, o.endMs, LOG_LINE_WAIT_MS);
  // "migration finished" is logged just after the map write the loops' poll sees end it.
  const finished = await spec.watch.first('finished', o.startMs, o.endMs + LOG_LINE_WAIT_MS, LOG_LINE_WAIT_MS);
  const retries = spec.watch.between(o.startMs, o.endMs).filter((e): e is Extract<RouterEvent, { kind: 'thaw' | 'stepFailed' }> => e.kind === 'thaw' || e.kind === 'stepFailed');
  const totalKeys = Object.values(o.counts).reduce((a, n) => a + n, 0);
  return { kind: o.kind, shard: o.shard, startMs: o.startMs, endMs: o.endMs, movedSlots: movedSlots(o.before.slots, o.after.slots), slotsMovingAnnounced: o.announced, shardKeys: o.counts[o.shard] ?? NaN, totalKeys, cutover, finished, retries, phases: o.phases };
}

/** The ScenarioContext reshard-faults.ts expects; this bench records no faults. */
function context(spec: MigrationSpec): ScenarioContext {
  const t0 = nowMs();
  return { cluster: spec.cluster, now: () => nowMs() - t0, log: spec.log, signal: spec.signal, record: () => {} };
}

/** Around the cutover log line: from the freeze (frozenMs before it) less this, to this after it. */
export const CUTOVER_MARGIN_MS = 1000;

export interface MigrationFigures {
  /** From the start of the step (the new pair started, or the DELETE sent) until its end (the map shows no migration, the removed pair stopped). */
  wallMs: number;
  /** While the coordinator's map showed the migration (the windows below are this one). */
  migrationMs: number;
  /** Every op that ended during the migration. */
  during: WindowStats;
  /** Ops on keys of moved slots during the whole migration. */
  movedKeys: WindowStats;
  /** Ops on keys of moved slots ending in the cutover window, and that window. */
  cutoverWindow: { fromMs: number; toMs: number; movedKeys: WindowStats } | undefined;
  keysMovedFraction: number;
}

/** The clients' figures over a migration, read from the op log once the loops have run past it. */
export function migrationFigures(m: Migration, ops: OpLog): MigrationFigures {
  const moved = new Uint8Array(SLOT_COUNT);
  for (const s of m.movedSlots) moved[s] = 1;
  const isMoved = (slot: number) => moved[slot] === 1;
  const c = m.cutover;
  const { fromMs, toMs } = shownWindow(m);
  const cutoverWindow = c === undefined ? undefined : { fromMs: c.atMs - c.frozenMs - CUTOVER_MARGIN_MS, toMs: c.atMs + CUTOVER_MARGIN_MS };
  return {
    wallMs: m.endMs - m.startMs,
    migrationMs: toMs - fromMs,
    during: ops.window(fromMs, toMs),
    movedKeys: ops.window(fromMs, toMs, isMoved),
    cutoverWindow: cutoverWindow === undefined ? undefined : { ...cutoverWindow, movedKeys: ops.window(cutoverWindow.fromMs, cutoverWindow.toMs, isMoved) },
    keysMovedFraction: m.shardKeys / m.totalKeys,
  };
}

/** When the map first showed the migration, and when it first showed none again (the step's own bounds where the poll saw neither). */
function shownWindow(m: Migration): { fromMs: number; toMs: number } {
  const shown = (state: string) => state !== 'none' && state !== 'unknown';
  const first = m.phases.findIndex((p) => shown(p.state));
  if (first < 0) return { fromMs: m.startMs, toMs: m.endMs };
  const end = m.phases.slice(first).find((p) => p.state === 'none');
  return { fromMs: m.phases[first]!.atMs, toMs: end?.atMs ?? m.endMs };
}
