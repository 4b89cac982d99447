import { failedEntry, type EntryResult } from '@shardkv/common';
import type { ShardTable } from './control/shard-table';
import { refreshBriefly } from './leaders';
import { retries } from './metrics';

/**
 * Entries a shard refused because the key's slot is not its own (`wrong_shard`: a cutover the
 * router has not read yet) or is frozen for its cutover (`migrating`). Both are definite, so
 * the router sends them again, by the map it re-reads, for up to `waitMs`: a cutover lasts well
 * under that (MIGRATION_FREEZE_MAX_MS), so clients do not see either code.
 */
const MOVED: ReadonlySet<string> = new Set(['wrong_shard', 'migrating']);
// Their retry series start at 0, so that rate() sees the first (see metrics.ts).
for (const code of MOVED) retries.inc({ cause: 'slot_moved', code }, 0);
const BACKOFF_MS_MAX = 50;

/** One shard's part of a batch, within `timeoutMs` (what is left of the request's deadline). */
export type ShardCall<T> = (shardId: string, group: T[], timeoutMs: number) => Promise<EntryResult[]>;

/**
 * Every resend stays within the request's own deadline: the router's upstream deadline from the
 * request's arrival (`deadlineMs`), or the caller's when it is earlier (a gRPC deadline), so a
 * request that waited out a cutover still ends in time.
 */
export class Routing {
  constructor(
    private readonly table: ShardTable,
    private readonly waitMs: number,
    private readonly deadlineMs: number,
  ) {}

  shardFor(key: string): string {
    return this.table.placement.shardFor(key);
  }

  /**
   * One key: sent to its shard, and again while the slot is moving (see MOVED). `send` gets the
   * request's deadline (Date.now() ms), the same for every resend; `deadlineAtMs` is the caller's.
   */
  async one(key: string, send: (shardId: string, deadlineAtMs: number) => Promise<EntryResult>, deadlineAtMs?: number): Promise<EntryResult> {
    const { deadline, resendUntil } = this.window(deadlineAtMs);
    for (let attempt = 0; ; attempt += 1) {
      const r = await send(this.shardFor(key), deadline);
      const code = movedCode(r);
      if (code === undefined || Date.now() >= resendUntil) return r;
      await this.settle(code, attempt);
    }
  }

  /** A batch split by shard (each shard called once per round); moved entries go again, the rest keep their results. */
  async many<T>(items: T[], keyOf: (item: T) => string, call: ShardCall<T>, deadlineAtMs?: number): Promise<{ results: EntryResult[]; ok: number; failed: number }> {
    const results: EntryResult[] = new Array(items.length);
    let pending = items.map((_, i) => i);
    const { deadline, resendUntil } = this.window(deadlineAtMs);
    for (let attempt = 0; pending.length > 0; attempt += 1) {
      await this.round(items, pending, keyOf, call, results, Math.max(1, deadline - Date.now()));
      const moved = pending.filter((i) => movedCode(results[i]!) !== undefined);
      if (moved.length === 0 || Date.now() >= resendUntil) break;
      await this.settle(movedCode(results[moved[0]!]!)!, attempt);
      pending = moved;
    }
    const ok = results.filter((r) => r.ok).length;
    return { results, ok, failed: results.length - ok };
  }

  /** The request's deadline from now, and until when a moved entry is sent again (never past the deadline). */
  private window(callerDeadlineAtMs: number | undefined): { deadline: number; resendUntil: number } {
    const now = Date.now();
    const deadline = Math.min(now + this.deadlineMs, callerDeadlineAtMs ?? Infinity);
    return { deadline, resendUntil: Math.min(now + this.waitMs, deadline) };
  }

  private async round<T>(items: T[], indexes: number[], keyOf: (item: T) => string, call: ShardCall<T>, results: EntryResult[], timeoutMs: number): Promise<void> {
    const groups = new Map<string, number[]>();
    for (const i of indexes) {
      const id = this.shardFor(keyOf(items[i]!));
      const group = groups.get(id);
      if (group === undefined) groups.set(id, [i]);
      else group.push(i);
    }
    await Promise.all(
      [...groups].map(async ([shardId, group]) => {
        const answer = await call(shardId, group.map((i) => items[i]!), timeoutMs).catch((err: unknown) => err);
        group.forEach((i, j) => (results[i] = Array.isArray(answer) ? answer[j]! : failedEntry(keyOf(items[i]!), answer)));
      }),
    );
  }

  /** A `wrong_shard` means our map may be old: re-read it. Either way wait a little, growing. */
  private async settle(code: string, attempt: number): Promise<void> {
    retries.inc({ cause: 'slot_moved', code });
    if (code === 'wrong_shard') await refreshBriefly(this.table);
    await new Promise((r) => setTimeout(r, Math.min(BACKOFF_MS_MAX, 5 * 2 ** attempt)));
  }
}

/** The code of an entry refused because its slot is moving or has moved, else undefined. */
function movedCode(r: EntryResult): string | undefined {
  return !r.ok && MOVED.has(r.error.code) ? r.error.code : undefined;
}
