import { ownersOf, type SlotRuns } from '@shardkv/common';

/**
 * `npm run bench:reshard`'s pure parts: the record of every client operation (when it ended, how
 * long it took, its key's slot, its error code), the figures of a time window over it, the slots
 * two maps disagree on, and the router's log lines the benchmark reads.
 */

/**
 * Operations recorded per run. At the few thousand ops/s one 2-core machine serves, this is well
 * over an hour of loops (15 bytes each); past it the run fails rather than measure a sample.
 */
export const OPS_RECORDED_MAX = 16_000_000;
const OPS_INITIAL_CAPACITY = 1 << 16;
/** Error codes kept apart (code 0 is success); more distinct codes than this means something else is wrong. */
const ERROR_CODES_MAX = 255;

/** Every operation of the client loops, in columns (typed arrays: millions of objects would cost GC pauses the loops would measure). */
export class OpLog {
  count = 0;
  private endMs = new Float64Array(OPS_INITIAL_CAPACITY);
  private latencyMs = new Float32Array(OPS_INITIAL_CAPACITY);
  private slots = new Uint16Array(OPS_INITIAL_CAPACITY);
  private codeIds = new Uint8Array(OPS_INITIAL_CAPACITY);
  private readonly codes: string[] = ['ok'];

  /** `code` undefined: the operation succeeded (a GET of a missing key included). */
  record(endMs: number, latencyMs: number, slot: number, code?: string): void {
    if (this.count === this.endMs.length) this.grow();
    const i = this.count;
    this.endMs[i] = endMs;
    this.latencyMs[i] = latencyMs;
    this.slots[i] = slot;
    this.codeIds[i] = code === undefined ? 0 : this.codeId(code);
    this.count += 1;
  }

  /**
   * The operations that ended in `[fromMs, toMs)` (and, given `slotFilter`, whose slot it
   * accepts). Ops per second count successes only, over the window's length.
   */
  window(fromMs: number, toMs: number, slotFilter?: (slot: number) => boolean): WindowStats {
    const lat: number[] = [];
    const errorsByCode: Record<string, number> = {};
    let ops = 0;
    for (let i = 0; i < this.count; i += 1) {
      const end = this.endMs[i]!;
      if (end < fromMs || end >= toMs || (slotFilter !== undefined && !slotFilter(this.slots[i]!))) continue;
      ops += 1;
      lat.push(this.latencyMs[i]!);
      const c = this.codeIds[i]!;
      if (c !== 0) errorsByCode[this.codes[c]!] = (errorsByCode[this.codes[c]!] ?? 0) + 1;
    }
    return windowStats(lat, ops, errorsByCode, toMs - fromMs);
  }

  private codeId(code: string): number {
    const at = this.codes.indexOf(code);
    if (at >= 0) return at;
    if (this.codes.length > ERROR_CODES_MAX) throw new Error(`more than ${ERROR_CODES_MAX} distinct error codes (latest: ${code})`);
    this.codes.push(code);
    return this.codes.length - 1;
  }

  private grow(): void {
    const n = this.endMs.length * 2;
    if (this.count >= OPS_RECORDED_MAX) throw new Error(`more than ${OPS_RECORDED_MAX} operations recorded: shorten the run`);
    const size = Math.min(n, OPS_RECORDED_MAX);
    const copy = <T extends Float64Array | Float32Array | Uint16Array | Uint8Array>(from: T, to: T): T => (to.set(from), to);
    this.endMs = copy(this.endMs, new Float64Array(size));
    this.latencyMs = copy(this.latencyMs, new Float32Array(size));
    this.slots = copy(this.slots, new Uint16Array(size));
    this.codeIds = copy(this.codeIds, new Uint8Array(size));
  }
}

export interface WindowStats {
  durationMs: number;
  /** Operations that ended in the window, failed ones included. */
  ops: number;
  okOpsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  errorsByCode: Record<string, number>;
}

function windowStats(latenciesMs: number[], ops: number, errorsByCode: Record<string, number>, durationMs: number): WindowStats {
  const sorted = Float64Array.from(latenciesMs).sort();
  const errors = Object.values(errorsByCode).reduce((a, n) => a + n, 0);
  return { durationMs, ops, okOpsPerSec: durationMs > 0 ? ((ops - errors) * 1000) / durationMs : NaN, p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99), maxMs: sorted.length === 0 ? NaN : sorted[sorted.length - 1]!, errors, errorsByCode };
}

/** The nearest-rank percentile of sorted values (q in [0, 1]); NaN when there are none. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** The slots whose owner differs between two maps' runs, ascending. */
export function movedSlots(before: SlotRuns, after: SlotRuns): number[] {
  const a = ownersOf(before);
  const b = ownersOf(after);
  const moved: number[] = [];
  a.forEach((owner, slot) => {
    if (b[slot] !== owner) moved.push(slot);
  });
  return moved;
}

/** What the benchmark reads from the router's log (pino JSON lines; `atMs` is the line's own `time` as epoch ms). */
export type RouterEvent =
  | { kind: 'cutover'; atMs: number; migration: string; frozenMs: number }
  | { kind: 'finished'; atMs: number; migration: string; keysCopied: number | null; movedKeysDeleted: number }
  | { kind: 'thaw'; atMs: number; why: string }
  | { kind: 'stepFailed'; atMs: number; err: string };

/** The event a router log line records, if it is one of those above (see migration/driver.ts and map-writer.ts). */
export function parseRouterLine(line: string): RouterEvent | undefined {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const msg = typeof rec['msg'] === 'string' ? rec['msg'] : '';
  const atMs = logTimeMs(rec['time']);
  if (msg.startsWith('cutover committed')) return { kind: 'cutover', atMs, migration: String(rec['migration']), frozenMs: Number(rec['frozenMs']) };
  if (msg === 'migration finished') return { kind: 'finished', atMs, migration: String(rec['migration']), keysCopied: rec['keysCopied'] === null ? null : Number(rec['keysCopied']), movedKeysDeleted: Number(rec['movedKeysDeleted']) };
  if (msg === 'shard map changed' && typeof rec['why'] === 'string' && rec['why'].startsWith('thaw')) return { kind: 'thaw', atMs, why: rec['why'] };
  if (msg.startsWith('migration step failed')) return { kind: 'stepFailed', atMs, err: String(rec['err']) };
  return undefined;
}

/** How long each phase lasted, from the changes a poll of the map saw (consecutive equal labels merged); `endMs` closes the last. */
export function phaseDurations(changes: ReadonlyArray<{ atMs: number; state: string; phase: string | null }>, endMs: number): Array<{ label: string; ms: number }> {
  const out: Array<{ label: string; ms: number }> = [];
  changes.forEach((c, i) => {
    const label = c.phase ?? c.state;
    const ms = (changes[i + 1]?.atMs ?? endMs) - c.atMs;
    const last = out[out.length - 1];
    if (last !== undefined && last.label === label) last.ms += ms;
    else out.push({ label, ms });
  });
  return out;
}

/** A log line's `time`: the nodes write ISO strings (packages/common/src/log.ts), pino's default is epoch ms. */
export function logTimeMs(time: unknown): number {
  return typeof time === 'string' ? Date.parse(time) : Number(time);
}
