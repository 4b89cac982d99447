import { DigestSum } from './digest';
import { isReservedKey, storedOf } from './stored';
import type { LogRecord } from './replication/log';

/**
 * The storage engine behind a node. A store holds the node's applied state, the sequence number
 * of the last entry it applied and a bounded window of the most recent entries (the log a peer
 * that fell behind catches up from). `apply` changes all three in one atomic step, so they can
 * never disagree, not even after a crash.
 */
export interface KvStore {
  /** Survives a restart: `lmdb` does, `memory` does not. */
  readonly durable: boolean;
  /** Sequence number of the last applied entry (0 for an empty store). */
  readonly seq: number;
  /** The highest configuration epoch this node has accepted (0: never configured); kept across restarts. */
  readonly epoch: number;
  /** Raises the epoch; a lower one than held is ignored (two callers may race). */
  setEpoch(epoch: number): Promise<void>;
  /** The newest coordinator generation this node has heard of (0: none); kept across restarts. */
  readonly coordinatorGeneration: number;
  /** Raises it; a lower one than held is ignored. */
  setCoordinatorGeneration(generation: number): Promise<void>;
  /**
   * The leader term (one Leader instance) whose history this node's entries follow, once checked
   * against it (see Follower); kept across restarts, so a restarted follower need not check again.
   */
  readonly term: string | undefined;
  setTerm(term: string): Promise<void>;
  readonly size: number;
  /** Bytes the engine uses on disk (LMDB's pages in use), read at metrics scrapes; undefined when nothing is on disk. */
  readonly diskBytes: number | undefined;
  /** The key's stored value: its value, version and expiry encoded (see stored.ts), expired or not. */
  get(key: string): string | undefined;
  /**
   * Applies entries `seq + 1 ...` in order, as one transaction that is durable when the promise
   * resolves; resolves with whether each key existed just before its entry. If it rejects,
   * nothing was applied. Calls must not overlap: each waits for the previous one.
   */
  apply(records: readonly LogRecord[]): Promise<boolean[]>;
  /**
   * A hash of the whole key/value state (see digest.ts): equal on two stores whose states are
   * equal, different otherwise except with probability about 2^-128.
   */
  digest(): string;
  /** Up to `max` pairs of a pass over the state (the leader's expiry sweep); `cursor` undefined: the pass is over. */
  scan(cursor: string | undefined, max: number): { pairs: Array<[string, string]>; cursor: string | undefined };
  /** A consistent point-in-time view, for a state transfer. Must be closed. */
  view(): StoreView;
  /** Starts replacing the whole state (full state transfer); the old state serves until `commit`. */
  restore(): Promise<StoreRestore>;
  close(): Promise<void>;
}

export interface StoreView {
  readonly seq: number;
  readonly size: number;
  readonly digest: string;
  /** The first entry still held in the log window (`seq + 1` when the window is empty). */
  readonly logStartSeq: number;
  /**
   * Whether the view stays valid while the store takes writes (an LMDB read transaction does),
   * so that a long read may yield to the event loop between its pieces. A view that is not
   * (the memory store's live Map) is read in one synchronous pass.
   */
  readonly stable: boolean;
  pairs(): Iterable<[string, string]>;
  /** The logged entries `fromSeq ... seq`, JSON-encoded as they were sequenced. */
  entries(fromSeq: number): Iterable<string>;
  close(): void;
}

export interface StoreRestore {
  /** Adds pairs to the state being built; each call is one bounded write. */
  put(pairs: readonly [string, string][]): Promise<void>;
  /** The digest of what has been put so far, to verify a transfer before it is committed. */
  digest(): string;
  /** Swaps the restored state in, as of `seq`, with an empty log window. */
  commit(seq: number): Promise<void>;
}

/** The log window a store keeps: whichever limit is reached first trims the oldest entries. */
export interface LogWindow {
  entriesMax: number;
  bytesMax: number;
}

/** The store-side invariant every engine checks before it writes anything: entries follow `lastSeq` exactly. */
export function assertSequence(lastSeq: number, records: readonly LogRecord[]): void {
  let last = lastSeq;
  for (const { entry } of records) {
    if (entry.seq !== last + 1) throw new Error(`store invariant: applying seq ${entry.seq} after ${last}`);
    last = entry.seq;
  }
}

/** `STORAGE=memory`: a Map. Nothing survives a restart; a node recovers from its peer. */
export class MemoryStore implements KvStore {
  readonly durable = false;
  private map = new Map<string, string>();
  /** Keys of the store's own (isReservedKey) among the map's: not counted in `size`. */
  private reserved = 0;
  private sum = new DigestSum();
  private lastSeq = 0;
  private lastEpoch = 0;
  private generation = 0;
  private checkedTerm: string | undefined;
  /** The log window, oldest first. Records are immutable, so a view can share them. */
  private log: LogRecord[] = [];
  private logBytes = 0;

  constructor(private readonly window: LogWindow) {}

  get seq(): number {
    return this.lastSeq;
  }

  get size(): number {
    return this.map.size - this.reserved;
  }

  get diskBytes(): undefined {
    return undefined;
  }

  get epoch(): number {
    return this.lastEpoch;
  }

  async setEpoch(epoch: number): Promise<void> {
    this.lastEpoch = Math.max(this.lastEpoch, epoch);
  }

  get coordinatorGeneration(): number {
    return this.generation;
  }

  async setCoordinatorGeneration(generation: number): Promise<void> {
    this.generation = Math.max(this.generation, generation);
  }

  get term(): string | undefined {
    return this.checkedTerm;
  }

  async setTerm(term: string): Promise<void> {
    this.checkedTerm = term;
  }

  get(key: string): string | undefined {
    return this.map.get(key);
  }

  /** In the Map's order; the cursor is a position (a pass may skip or repeat keys while the Map changes: it is only a sweep). */
  scan(cursor: string | undefined, max: number): { pairs: Array<[string, string]>; cursor: string | undefined } {
    const from = cursor === undefined ? 0 : Number(cursor);
    const pairs: Array<[string, string]> = [];
    let i = 0;
    for (const pair of this.map) {
      if (i++ < from) continue;
      if (pairs.length === max) return { pairs, cursor: String(from + max) };
      pairs.push(pair);
    }
    return { pairs, cursor: undefined };
  }

  async apply(records: readonly LogRecord[]): Promise<boolean[]> {
    assertSequence(this.lastSeq, records);
    const existed = records.map((record) => this.applyOne(record));
    // Once per batch: trimming copies the window, and the tail it keeps is the same either way.
    this.trimLog();
    return existed;
  }

  private applyOne(record: LogRecord): boolean {
    const { entry } = record;
    const old = this.map.get(entry.key);
    if (old !== undefined) this.sum.remove(entry.key, old);
    if (isReservedKey(entry.key)) this.reserved += (entry.op === 'put' ? 1 : 0) - (old !== undefined ? 1 : 0);
    if (entry.op === 'put') {
      const stored = storedOf(entry);
      this.map.set(entry.key, stored);
      this.sum.add(entry.key, stored);
    } else {
      this.map.delete(entry.key);
    }
    this.lastSeq = entry.seq;
    this.log.push(record);
    this.logBytes += record.bytes;
    return old !== undefined;
  }

  private trimLog(): void {
    let drop = 0;
    while (drop < this.log.length && (this.log.length - drop > this.window.entriesMax || this.logBytes > this.window.bytesMax)) {
      this.logBytes -= this.log[drop]!.bytes;
      drop += 1;
    }
    if (drop > 0) this.log = this.log.slice(drop);
  }

  digest(): string {
    return this.sum.hex();
  }

  /** The Map is live, so the view fails (truncating a transfer) if the state moves under it. */
  view(): StoreView {
    const seq = this.lastSeq;
    const log = this.log;
    const logStartSeq = log[0]?.entry.seq ?? seq + 1;
    const assertUnchanged = () => {
      if (this.lastSeq !== seq) throw new Error(`state changed during transfer (seq ${seq} -> ${this.lastSeq})`);
    };
    const map = this.map;
    return {
      seq,
      size: this.map.size - this.reserved,
      digest: this.sum.hex(),
      logStartSeq,
      stable: false,
      *pairs() {
        let n = 0;
        for (const pair of map) {
          if ((n += 1) % 1024 === 0) assertUnchanged();
          yield pair;
        }
        assertUnchanged();
      },
      *entries(fromSeq) {
        // The array may have grown since (appends are in place): stop at the view's seq.
        for (let i = Math.max(0, fromSeq - logStartSeq); i < log.length && log[i]!.entry.seq <= seq; i += 1) yield log[i]!.json;
      },
      close() {},
    };
  }

  async restore(): Promise<StoreRestore> {
    const map = new Map<string, string>();
    const sum = new DigestSum();
    return {
      put: async (pairs) => {
        for (const [key, value] of pairs) {
          const old = map.get(key);
          if (old !== undefined) sum.remove(key, old);
          map.set(key, value);
          sum.add(key, value);
        }
      },
      digest: () => sum.hex(),
      commit: async (seq) => {
        this.map = map;
        this.reserved = [...map.keys()].filter(isReservedKey).length;
        this.sum = sum;
        this.lastSeq = seq;
        this.log = [];
        this.logBytes = 0;
      },
    };
  }

  async close(): Promise<void> {}
}
