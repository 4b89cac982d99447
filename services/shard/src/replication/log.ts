import { KvError } from '@shardkv/common';

/**
 * The pure sequencing core: no sockets, no timers, no storage. The leader's LeaderLog assigns
 * sequence numbers and tracks what the follower has acknowledged; `planApply` decides what a
 * follower does with a batch. Both are tested with plain function calls.
 */
/** What is sequenced: a put (`exp`: its wall-clock expiry in ms, decided by the leader) or a delete. Its seq is the value's version. */
export type Op = { op: 'put'; key: string; value: string; exp?: number } | { op: 'del'; key: string };
export type Entry = Op & { seq: number };

/** An entry as held in the leader's log: serialised once, when it is sequenced. */
export interface LogRecord {
  entry: Entry;
  json: string;
  bytes: number;
}

export interface LogLimits {
  /** Entries sequenced but not yet committed; a full queue refuses writes (503). */
  queueEntriesMax: number;
  queueBytesMax: number;
  /** One leader->follower request carries at most this much (but always at least one entry). */
  batchEntriesMax: number;
  batchBytesMax: number;
}

/**
 * The leader's in-memory log: entries sequenced but not yet committed. An entry is committed when
 * it is durable on both nodes (or, committing alone, here); it is then dropped. Sequence numbers
 * are assigned here and nowhere else, so every write, whatever order requests arrive in, has
 * exactly one place in the shard's history.
 */
export class LeaderLog {
  private records: LogRecord[] = [];
  private bytesQueued = 0;
  /** Each key's last uncommitted entry: the key's latest state, which conditional writes are decided on. */
  private readonly latestByKey = new Map<string, LogRecord>();

  constructor(
    private committed: number,
    private readonly limits: LogLimits,
  ) {}

  /** The last committed sequence number. */
  get appliedSeq(): number {
    return this.committed;
  }

  get lastSeq(): number {
    return this.committed + this.records.length;
  }

  /** The first sequence number the leader can still send from memory. */
  get startSeq(): number {
    return this.committed + 1;
  }

  get queuedEntries(): number {
    return this.records.length;
  }

  get queuedBytes(): number {
    return this.bytesQueued;
  }

  /** Gives the operation the next sequence number; refuses when the queue is at its limit. */
  append(op: Op): LogRecord {
    this.appendAll([op]);
    return this.records[this.records.length - 1]!;
  }

  /**
   * Sequences the operations in the order given, all or none: refused whole (nothing sequenced)
   * when they do not fit the queue. Returns the first one's sequence number.
   */
  appendAll(ops: readonly Op[]): number {
    const first = this.lastSeq + 1;
    const fresh = ops.map((op, i) => record({ ...op, seq: first + i } as Entry));
    const bytes = fresh.reduce((n, r) => n + r.bytes, 0);
    if (this.records.length + fresh.length > this.limits.queueEntriesMax || this.bytesQueued + bytes > this.limits.queueBytesMax) {
      throw new KvError('replication_queue_full', 'replication queue is full; nothing was applied, retry later');
    }
    for (const r of fresh) {
      this.records.push(r);
      this.latestByKey.set(r.entry.key, r);
    }
    this.bytesQueued += bytes;
    return first;
  }

  /** The key's last entry not committed yet, if it has one. */
  latest(key: string): LogRecord | undefined {
    return this.latestByKey.get(key);
  }

  /** The contiguous run of entries starting at `fromSeq`, within the batch limits. */
  batchFrom(fromSeq: number): LogRecord[] {
    if (fromSeq < this.startSeq) throw new Error(`log invariant: seq ${fromSeq} is already committed`);
    const batch: LogRecord[] = [];
    let bytes = 0;
    for (let i = fromSeq - this.startSeq; i < this.records.length; i += 1) {
      const r = this.records[i]!;
      if (batch.length > 0 && (batch.length >= this.limits.batchEntriesMax || bytes + r.bytes > this.limits.batchBytesMax)) break;
      batch.push(r);
      bytes += r.bytes;
    }
    return batch;
  }

  /** The entries `fromSeq..toSeq`, which must be in the log. */
  slice(fromSeq: number, toSeq: number): LogRecord[] {
    if (fromSeq < this.startSeq || toSeq > this.lastSeq) throw new Error(`log invariant: ${fromSeq}..${toSeq} not in ${this.startSeq}..${this.lastSeq}`);
    return this.records.slice(fromSeq - this.startSeq, toSeq - this.startSeq + 1);
  }

  /** Drops the entries up to `seq`: they are committed. */
  commitThrough(seq: number): void {
    if (seq > this.lastSeq) throw new Error(`log invariant: commit ${seq} beyond last ${this.lastSeq}`);
    if (seq <= this.committed) return;
    for (const r of this.records.splice(0, seq - this.committed)) {
      this.bytesQueued -= r.bytes;
      if (this.latestByKey.get(r.entry.key) === r) this.latestByKey.delete(r.entry.key);
    }
    this.committed = seq;
  }
}

/** An entry serialised once, when it is sequenced: every message and store write reuses the JSON. */
export function record(entry: Entry): LogRecord {
  const json = JSON.stringify(entry);
  return { entry, json, bytes: Buffer.byteLength(json) };
}

export interface ApplyPlan {
  /** Entries to apply now, in order: exactly those with seq > lastApplied, if contiguous with it. */
  apply: Entry[];
  /** True when the batch starts beyond lastApplied + 1: the follower must ask for what it lacks. */
  gap: boolean;
}

/**
 * What a follower does with a batch. It applies strictly `seq === lastApplied + 1`: entries it
 * already has are skipped (a resend after a lost ack), a batch that starts beyond the next
 * sequence number is a gap and nothing is applied. A batch that is not contiguous is a protocol
 * error: the leader never sends one.
 */
export function planApply(lastApplied: number, entries: readonly Entry[]): ApplyPlan {
  assertContiguous(entries);
  const first = entries[0];
  if (first === undefined) return { apply: [], gap: false };
  if (first.seq > lastApplied + 1) return { apply: [], gap: true };
  return { apply: entries.slice(lastApplied + 1 - first.seq), gap: false };
}

/** A batch the leader could not have sent is refused whole, before anything acts on it. */
export function assertContiguous(entries: readonly Entry[]): void {
  for (let i = 1; i < entries.length; i += 1) {
    if (entries[i]!.seq !== entries[i - 1]!.seq + 1) {
      throw new KvError('invalid_body', `replication batch is not contiguous at seq ${entries[i]!.seq}`);
    }
  }
}

/**
 * A follower whose next entry the leader no longer holds in memory must pull what it lacks (the
 * leader's durable log window, or its full state when even that does not reach back far enough).
 */
export function needsCatchUp(lastApplied: number, leaderLogStartSeq: number): boolean {
  return lastApplied + 1 < leaderLogStartSeq;
}
