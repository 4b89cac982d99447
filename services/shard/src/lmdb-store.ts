import { mkdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Logger } from '@shardkv/common';
import { open, type Database, type RootDatabase } from 'lmdb';
import { DIGEST_ALGORITHM, DigestSum } from './digest';
import type { LogRecord } from './replication/log';
import { encodeStored, isReservedKey, storedOf } from './stored';
import { assertSequence, type KvStore, type LogWindow, type StoreRestore, type StoreView } from './store';

/** Who a data directory belongs to; a node refuses a directory that names someone else. */
export interface StoreIdentity {
  cluster: string;
  shard: string;
  node: string;
}

/** Everything a node needs after a restart, in one record updated in the same transaction as the data. */
interface PersistedState {
  seq: number;
  digest: string;
  /** Which function made `digest` (digest.ts); builds before XXH3-128 recorded none. */
  digestAlgorithm: string;
  keys: number;
  /** Which of the two data tables is live: a full state transfer fills the other, then flips this. */
  active: 0 | 1;
  logStartSeq: number;
  logBytes: number;
}

/** The data directory cannot be used at all (unwritable, or it belongs to another node). */
export class StorageConfigError extends Error {
  override name = 'StorageConfigError';
}

/** 2: values carry their version and expiry (stored.ts). */
const FORMAT = 2;
const UPGRADABLE_FORMATS: readonly number[] = [1];
const EMPTY_STATE: PersistedState = { seq: 0, digest: new DigestSum().hex(), digestAlgorithm: DIGEST_ALGORITHM, keys: 0, active: 0, logStartSeq: 1, logBytes: 0 };

/**
 * `STORAGE=lmdb` (the default): one LMDB environment per node, in its DATA_DIR.
 *
 * Tables: `kv0`/`kv1` (key -> value, one live), `log` (seq -> entry JSON: the recent-entries
 * window), `meta` (identity and PersistedState). `apply` writes the pairs, the log entries, the
 * trimmed window and the new state in ONE transaction, so after any crash the data, `seq` and
 * the log agree (a child transaction each, so a throw half-way writes nothing). Transactions
 * commit with `overlappingSync: false` and LMDB's default sync mode:
 * a commit returns only after fsync, so "applied" means "on disk". Concurrent writes are grouped
 * by the replication batches (one transaction per batch), so a burst costs one fsync, not one
 * per write.
 */
export class LmdbStore implements KvStore {
  readonly durable = true;
  private state: PersistedState;
  private sum: DigestSum;
  private lastEpoch: number;
  private generation: number;
  private checkedTerm: string | undefined;

  private constructor(
    private readonly env: RootDatabase,
    private readonly tables: [Database<string, string>, Database<string, string>],
    private readonly log: Database<string, number>,
    private readonly meta: Database<unknown, string>,
    private readonly window: LogWindow,
  ) {
    this.state = (meta.get('state') as PersistedState | undefined) ?? { ...EMPTY_STATE };
    this.sum = DigestSum.fromHex(this.state.digest);
    this.lastEpoch = (meta.get('epoch') as number | undefined) ?? 0;
    this.generation = (meta.get('coordinator') as number | undefined) ?? 0;
    this.checkedTerm = meta.get('term') as string | undefined;
  }

  /**
   * Opens (or creates) a node's data directory; refuses one that belongs to another node.
   * A state whose digest an older build made is given the current digest first (`logger` says so).
   */
  static async open(dir: string, identity: StoreIdentity, window: LogWindow, logger?: Pick<Logger, 'info'>): Promise<LmdbStore> {
    let env: RootDatabase;
    try {
      mkdirSync(dir, { recursive: true });
      env = open({ path: dir, maxDbs: 8, overlappingSync: false });
    } catch (err) {
      throw new StorageConfigError(`cannot open data directory ${dir}: ${(err as Error).message}`);
    }
    const tables: [Database<string, string>, Database<string, string>] = [
      env.openDB<string, string>({ name: 'kv0', encoding: 'string' }),
      env.openDB<string, string>({ name: 'kv1', encoding: 'string' }),
    ];
    const log = env.openDB<string, number>({ name: 'log', encoding: 'string' });
    const meta = env.openDB<unknown, string>({ name: 'meta', encoding: 'json' });
    try {
      if ((await claim(meta, dir, identity)) === 1) await upgradeValues(env, tables, meta, dir, logger);
      await upgradeDigest(env, tables, meta, dir, logger);
    } catch (err) {
      await env.close();
      throw err;
    }
    return new LmdbStore(env, tables, log, meta, window);
  }

  get seq(): number {
    return this.state.seq;
  }

  get size(): number {
    return this.state.keys;
  }

  get diskBytes(): number {
    // The pages in use up to the last one written: the data file's size, without a stat call.
    const stats = this.env.getStats() as { pageSize?: number; lastPageNumber?: number };
    return ((stats.lastPageNumber ?? -1) + 1) * (stats.pageSize ?? 0);
  }

  /** Read on every replication message: kept in memory, written through. */
  get epoch(): number {
    return this.lastEpoch;
  }

  async setEpoch(epoch: number): Promise<void> {
    if (epoch <= this.lastEpoch) return;
    this.lastEpoch = epoch;
    await this.raise('epoch', epoch);
  }

  get coordinatorGeneration(): number {
    return this.generation;
  }

  async setCoordinatorGeneration(generation: number): Promise<void> {
    if (generation <= this.generation) return;
    this.generation = generation;
    await this.raise('coordinator', generation);
  }

  /** Stores a counter that only grows: two raises racing leave the higher one. */
  private async raise(key: 'epoch' | 'coordinator', value: number): Promise<void> {
    await this.env.childTransaction(() => this.meta.put(key, Math.max(value, (this.meta.get(key) as number | undefined) ?? 0)));
  }

  get term(): string | undefined {
    return this.checkedTerm;
  }

  async setTerm(term: string): Promise<void> {
    await this.env.childTransaction(() => this.meta.put('term', term));
    this.checkedTerm = term;
  }

  get(key: string): string | undefined {
    return this.live.get(key);
  }

  /** In key order, from after the cursor (the last key of the previous piece). */
  scan(cursor: string | undefined, max: number): { pairs: Array<[string, string]>; cursor: string | undefined } {
    const pairs: Array<[string, string]> = [];
    for (const { key, value } of this.live.getRange({ start: cursor, limit: max + 1 })) {
      if (key === cursor) continue;
      if (pairs.length === max) break;
      pairs.push([key, value]);
    }
    return { pairs, cursor: pairs.length === max ? pairs[max - 1]![0] : undefined };
  }

  private get live(): Database<string, string> {
    return this.tables[this.state.active];
  }

  async apply(records: readonly LogRecord[]): Promise<boolean[]> {
    // Checked before the transaction starts, so a bad batch writes nothing at all.
    assertSequence(this.state.seq, records);
    const next = { ...this.state };
    const sum = new DigestSum(this.sum.value);
    // A child transaction: if anything in the callback throws, its writes are rolled back
    // (a plain lmdb-js `transaction` would commit what ran before the throw).
    const existed = await this.env.childTransaction(() => {
      const result = records.map((r) => this.write(r, next, sum));
      next.digest = sum.hex();
      this.meta.put('state', next);
      return result;
    });
    this.state = next;
    this.sum = sum;
    return existed;
  }

  /** Runs inside the write transaction: reads see the transaction's own writes. */
  private write({ entry, json, bytes }: LogRecord, next: PersistedState, sum: DigestSum): boolean {
    const kv = this.tables[next.active];
    const old = kv.get(entry.key);
    if (old !== undefined) sum.remove(entry.key, old);
    if (entry.op === 'put') {
      const stored = storedOf(entry);
      kv.put(entry.key, stored);
      sum.add(entry.key, stored);
    } else if (old !== undefined) {
      kv.remove(entry.key);
    }
    if (!isReservedKey(entry.key)) next.keys += (entry.op === 'put' ? 1 : 0) - (old !== undefined ? 1 : 0);
    next.seq = entry.seq;
    this.log.put(entry.seq, json);
    next.logBytes += bytes;
    this.trimLog(next);
    return old !== undefined;
  }

  private trimLog(next: PersistedState): void {
    while (next.logStartSeq <= next.seq && (next.seq - next.logStartSeq + 1 > this.window.entriesMax || next.logBytes > this.window.bytesMax)) {
      // Its stored bytes are its UTF-8 length: no need to decode the entry to count them.
      const stored = this.log.getBinaryFast(next.logStartSeq);
      if (stored !== undefined) next.logBytes -= stored.length;
      this.log.remove(next.logStartSeq);
      next.logStartSeq += 1;
    }
  }

  /** The hex form is kept in the state record, so replies and /status do not re-encode the sum. */
  digest(): string {
    return this.state.digest;
  }

  /** An LMDB read transaction: a consistent snapshot however long the transfer takes. */
  view(): StoreView {
    const transaction = this.env.useReadTransaction();
    const state = (this.meta.get('state', { transaction }) as PersistedState | undefined) ?? EMPTY_STATE;
    const kv = this.tables[state.active];
    const log = this.log;
    return {
      seq: state.seq,
      size: state.keys,
      digest: state.digest,
      logStartSeq: state.logStartSeq,
      stable: true,
      *pairs() {
        for (const { key, value } of kv.getRange({ transaction })) yield [key, value];
      },
      *entries(fromSeq) {
        for (const { value } of log.getRange({ start: fromSeq, end: state.seq + 1, transaction })) yield value;
      },
      close: () => transaction.done(),
    };
  }

  /** Fills the idle table in bounded transactions; `commit` flips to it in one transaction. */
  async restore(): Promise<StoreRestore> {
    const target = (1 - this.state.active) as 0 | 1;
    const table = this.tables[target];
    await table.clearAsync();
    const sum = new DigestSum();
    let keys = 0;
    return {
      put: async (pairs) => {
        await this.env.childTransaction(() => {
          for (const [key, value] of pairs) {
            const old = table.get(key);
            if (old !== undefined) sum.remove(key, old);
            else if (!isReservedKey(key)) keys += 1;
            table.put(key, value);
            sum.add(key, value);
          }
        });
      },
      digest: () => sum.hex(),
      commit: async (seq) => {
        const next: PersistedState = { seq, digest: sum.hex(), digestAlgorithm: DIGEST_ALGORITHM, keys, active: target, logStartSeq: seq + 1, logBytes: 0 };
        await this.env.childTransaction(() => {
          // The old window belongs to the replaced history: it goes in the same transaction.
          for (const s of this.log.getKeys()) this.log.remove(s);
          this.meta.put('state', next);
        });
        const old = this.live;
        this.state = next;
        this.sum = DigestSum.fromHex(next.digest);
        // Frees the space now; if this is interrupted, the next restore clears it first anyway.
        await old.clearAsync();
      },
    };
  }

  async close(): Promise<void> {
    await this.env.close();
  }
}

/** Writes the identity into a new directory, or checks the one it holds; also proves it is writable. */
async function claim(meta: Database<unknown, string>, dir: string, identity: StoreIdentity): Promise<number> {
  const stored = meta.get('identity') as (StoreIdentity & { format: number }) | undefined;
  if (stored !== undefined) {
    const mismatch = (['cluster', 'shard', 'node'] as const).filter((k) => stored[k] !== identity[k]);
    if (mismatch.length > 0) {
      const want = JSON.stringify(identity);
      const has = JSON.stringify({ cluster: stored.cluster, shard: stored.shard, node: stored.node });
      throw new StorageConfigError(`data directory ${dir} belongs to ${has}, not to this node ${want}: refusing to use it (check DATA_DIR, SHARD_ID, NODE_NAME, CLUSTER_ID)`);
    }
    if (stored.format !== FORMAT && !UPGRADABLE_FORMATS.includes(stored.format)) throw new StorageConfigError(`data directory ${dir} has format ${stored.format}; this build reads formats ${[...UPGRADABLE_FORMATS, FORMAT].join(', ')}`);
  }
  try {
    // An older format is written as the current one by its upgrade, in the same transaction.
    await meta.put('identity', { ...identity, format: stored?.format ?? FORMAT });
  } catch (err) {
    throw new StorageConfigError(`data directory ${dir} is not writable: ${(err as Error).message}`);
  }
  return stored?.format ?? FORMAT;
}

/**
 * Format 1 kept bare values; format 2 keeps each with its version and expiry (stored.ts). Values
 * written before versions existed get version 0 (the same on both nodes of a shard, so their
 * digests still agree) and no expiry. One full rewrite in one transaction, before the node
 * serves anything; the digest is recomputed with it.
 */
async function upgradeValues(env: RootDatabase, tables: [Database<string, string>, Database<string, string>], meta: Database<unknown, string>, dir: string, logger?: Pick<Logger, 'info'>): Promise<void> {
  const startMs = performance.now();
  const state = (meta.get('state') as PersistedState | undefined) ?? { ...EMPTY_STATE };
  const sum = new DigestSum();
  // Written into the idle table, which then becomes the live one: the old table is only read.
  const target = (1 - state.active) as 0 | 1;
  await env.childTransaction(() => {
    tables[target].clearSync();
    for (const { key, value } of tables[state.active].getRange()) {
      const stored = encodeStored(value, 0, undefined);
      tables[target].put(key, stored);
      sum.add(key, stored);
    }
    tables[state.active].clearSync();
    meta.put('state', { ...state, active: target, digest: sum.hex(), digestAlgorithm: DIGEST_ALGORITHM });
    meta.put('identity', { ...(meta.get('identity') as object), format: FORMAT });
  });
  logger?.info({ dir, keys: state.keys, from: 1, to: FORMAT, durationMs: Math.round(performance.now() - startMs) }, 'upgraded the data directory: every value now carries its version (0 for values written before versions)');
}

/**
 * A state whose digest was made by another algorithm (an older build's SHA-256 sum records none)
 * would look diverged from a peer that runs this build: its digest is recomputed from the live
 * table, one full scan in one transaction, before the node serves anything. It happens once: the
 * result is stored with the algorithm's name.
 */
async function upgradeDigest(env: RootDatabase, tables: [Database<string, string>, Database<string, string>], meta: Database<unknown, string>, dir: string, logger?: Pick<Logger, 'info'>): Promise<void> {
  const stored = meta.get('state') as (Omit<PersistedState, 'digestAlgorithm'> & { digestAlgorithm?: string }) | undefined;
  if (stored === undefined || stored.digestAlgorithm === DIGEST_ALGORITHM) return;
  const startMs = performance.now();
  const sum = new DigestSum();
  await env.childTransaction(() => {
    let keys = 0;
    for (const { key, value } of tables[stored.active].getRange()) {
      sum.add(key, value);
      if (!isReservedKey(key)) keys += 1;
    }
    // Both are kept in the same transactions: a difference means the directory is damaged.
    if (keys !== stored.keys) throw new Error(`store invariant: data directory ${dir} holds ${keys} keys, its state says ${stored.keys}`);
    meta.put('state', { ...stored, digest: sum.hex(), digestAlgorithm: DIGEST_ALGORITHM });
  });
  const was = stored.digestAlgorithm ?? 'sha256-sum (not recorded)';
  logger?.info({ dir, keys: stored.keys, was, now: DIGEST_ALGORITHM, durationMs: Math.round(performance.now() - startMs) }, 'recomputed the state digest (data written by an older build)');
}
