import { storedOf } from '../stored';
import type { LogRecord } from './log';

interface Pending {
  /** The key's stored value (stored.ts) as of the last committed entry (undefined: absent). */
  value: string | undefined;
  /** Entries for the key persisted here and not committed yet. */
  count: number;
}

/**
 * What reads on the leader see. The leader persists a batch while its follower does, so its store
 * may hold entries that are not committed yet (the follower has not acknowledged them). For the
 * keys of such entries this keeps the committed value; every other key reads from the store, whose
 * value for it is committed. Memory is bounded by the replication queue (one item per key of an
 * uncommitted entry).
 */
export class CommittedReads {
  private readonly pending = new Map<string, Pending>();

  /** Before `records` are persisted: the store still holds each key's committed value, unless another entry of it is pending. */
  beforePersist(records: readonly LogRecord[], read: (key: string) => string | undefined): void {
    for (const { entry } of records) {
      const p = this.pending.get(entry.key);
      if (p !== undefined) p.count += 1;
      else this.pending.set(entry.key, { value: read(entry.key), count: 1 });
    }
  }

  /** `records` (all persisted before) are committed, in order: their values become visible. */
  onCommit(records: readonly LogRecord[]): void {
    for (const { entry } of records) {
      const p = this.pending.get(entry.key);
      if (p === undefined) throw new Error(`visibility invariant: entry ${entry.seq} committed before it was persisted`);
      p.value = entry.op === 'put' ? storedOf(entry) : undefined;
      p.count -= 1;
      if (p.count === 0) this.pending.delete(entry.key);
    }
  }

  get(key: string, read: (key: string) => string | undefined): string | undefined {
    const p = this.pending.get(key);
    return p === undefined ? read(key) : p.value;
  }

  get pendingKeys(): number {
    return this.pending.size;
  }
}
