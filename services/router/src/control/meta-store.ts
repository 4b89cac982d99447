import type { CoordinatorInfo } from './records';

/**
 * The control plane's storage: a small versioned key space under one cluster prefix, with
 * conditional writes, change notification and a coordinator election. Two backends implement it
 * and pass the same contract tests (test/meta-store.test.ts):
 *
 * - `FileMetaStore` (embedded, the default): one fsynced JSON file in the router's data
 *   directory. Only one router can use it (a lock file says so), and that router is always the
 *   coordinator.
 * - `EtcdMetaStore` (`ETCD_ENDPOINTS`): etcd 3.4+. Any number of routers share it; one at a time
 *   holds the coordinator election, under a lease.
 *
 * A revision is the store's modification counter of a key (etcd's mod_revision): 0 means "absent".
 */
export interface Versioned {
  value: string;
  revision: number;
}

export type PutResult = { ok: true; revision: number } | { ok: false; reason: 'conflict' | 'deposed' };

export interface Candidate {
  id: string;
  url: string;
}

/**
 * The right to coordinate, held until `valid()` turns false. A write fenced by it commits only
 * while the store itself still counts this holder as elected, so a coordinator that was paused
 * past its lease, or cut off, can never commit a decision.
 */
export interface Leadership {
  /** Grows with every election: nodes refuse commands from an older coordinator than one they have seen. */
  readonly generation: number;
  /** Judged on this process's clock, ending before the lease can have expired on the server. */
  valid(): boolean;
  /** Resolves when the leadership ends (lease lost, resigned or store closed). */
  readonly ended: Promise<void>;
  /** Steps down at once; another candidate can be elected without waiting for the lease. */
  resign(): Promise<void>;
}

export interface MetaStore {
  readonly kind: 'embedded' | 'etcd';
  /** Every key under the cluster prefix (keys relative to it). */
  list(): Promise<Map<string, Versioned>>;
  /**
   * Writes `value` only if the key's revision is still `expectedRevision` (0: the key must be
   * absent) and, with `fence`, only while that leadership holds in the store. A write that times
   * out may still have committed: callers re-read before they decide again.
   */
  put(key: string, value: string, expectedRevision: number, fence?: Leadership): Promise<PutResult>;
  /** Calls `onChange` (coalesced) after changes under the prefix and after a reconnect; returns the unsubscribe. */
  watch(onChange: () => void): () => void;
  /** Resolves once this candidate is elected coordinator; rejects if `signal` aborts first. */
  campaign(candidate: Candidate, signal: AbortSignal): Promise<Leadership>;
  /** The coordinator now, as the store says; undefined when none is elected. */
  coordinator(): Promise<CoordinatorInfo | undefined>;
  close(): Promise<void>;
}
