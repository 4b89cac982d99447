import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { KvError, type Logger } from '@shardkv/common';
import type { KvStore } from '../store';
import { LeaderLog, type LogLimits, type LogRecord, type Op } from './log';
import { replicateBody, StaleEpochError, termFields, type PeerTransport, type ReplicateReply } from './messages';
import { catchUpFrom, DivergedError } from './transfer';

export interface LeaderOptions {
  shardId: string;
  /** How long a write waits for its commit before the client gets 504 replication_timeout. */
  replicationTimeoutMs: number;
  /** An idle leader contacts its follower this often, so a lost or restarted follower is noticed. */
  heartbeatIntervalMs: number;
  /** Pause between attempts after a failed contact or a failed recovery. */
  retryBackoffMs: number;
  /** How long after a message its acknowledgement lets this leader serve reads in sync mode (see READ_LEASE_MS). */
  readLeaseMs: number;
  limits: LogLimits;
}

export interface WriteResult {
  seq: number;
  /** Whether the key existed just before this entry was applied (in sequence order). */
  existed: boolean;
}

interface Waiter {
  resolve: (r: WriteResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** What the leader knows of its follower; only the replication loop changes it. */
export interface FollowerView {
  reachable: boolean;
  catchingUp: boolean;
  /** The follower claims entries this leader never sequenced: a configuration error. */
  diverged: boolean;
  ackedSeq: number;
  lastContactAt: number;
  lastError: string | undefined;
}

export type LeaderState = 'recovering' | 'serving' | 'fenced' | 'stopped';

/**
 * How writes commit, as the coordinator's configuration says:
 * - `sync`: only with the follower's acknowledgement (the follower is in sync and may be promoted);
 * - `alone`: on this node alone (the follower is out of sync; MIN_INSYNC_REPLICAS=1);
 * - `refuse`: not at all, 503 no_replica (the follower is out of sync; MIN_INSYNC_REPLICAS=2).
 */
export type CommitMode = 'sync' | 'alone' | 'refuse';

/** How a leader starts: its epoch, commit mode, and whether it first takes what its follower has beyond its own seq. */
export interface LeaderStart {
  epoch: number;
  mode: CommitMode;
  reconcile: boolean;
  /** Serve nothing before this time (performance.now()): an old leader's read lease may still run. */
  serveNotBeforeMs?: number;
}

/** What the leader tells the node that runs it; the node talks to the coordinator. */
export interface LeaderEvents {
  /** Replication to an in-sync follower failed: ask to go on alone (the follower leaves the in-sync set). */
  followerLost(epoch: number): void;
  /** An out-of-sync follower has caught up; this leader already waits for it: ask to mark it in sync. */
  followerCaughtUp(epoch: number): void;
  /** A peer knows a newer epoch: this leader was replaced and has stopped serving. */
  fenced(epoch: number): void;
}

const NO_EVENTS: LeaderEvents = { followerLost: () => {}, followerCaughtUp: () => {}, fenced: () => {} };

/** How far behind (entries) an out-of-sync follower may be when the leader starts waiting for it again. */
export const REJOIN_LAG_ENTRIES_MAX = 1000;

/**
 * The leader of one shard: the only writer. A write is sequenced in the LeaderLog, sent to the
 * follower by a single replication loop, and applied to the store (made visible and durable here)
 * and answered only when the follower has acknowledged it, i.e. has it durably too.
 *
 * The loop keeps at most one request in flight; writes that arrive meanwhile queue in the log and
 * travel together in the next request (pipelining by batching). Acknowledged entries are applied
 * by one chain of store transactions, one per acknowledgement, in order: that is the group commit.
 */
export class Leader {
  private state: LeaderState = 'recovering';
  private log: LeaderLog;
  private readonly waiters = new Map<number, Waiter>();
  private nextSeq = 1;
  private lastSentAt = 0;
  private wake: (() => void) | undefined;
  private readonly shardJson: string;
  /** The tail of the apply chain: each store transaction starts after the previous one ends. */
  private applying: Promise<void> = Promise.resolve();
  /** Set while the store refuses writes (disk full, I/O error): new writes are refused, definitely. */
  private storageError: string | undefined;
  /** Set when start-up reconciliation found a different history on the follower: an operator must decide. */
  private recoveryError: string | undefined;
  /** The follower's state differs from ours: the next message asks it to take our full state. */
  private resync = false;
  private recovery: Promise<void> | undefined;
  private readonly stopping = new AbortController();
  private mode: CommitMode;
  private epoch: number;
  /** Whether start-up asks the follower for entries it has beyond ours (not after a promotion). */
  private readonly reconcile: boolean;
  /** Writes committed alone are applied in one transaction per event-loop turn. */
  private flushScheduled = false;
  /** Rejoining: the last entry committed alone. Once the follower has it, it holds every acknowledged write. */
  private rejoinSeq: number | undefined;
  /** This instance's term (see Follower.strayEntries), as message fields: set when it starts serving. */
  private termJson = '';
  /**
   * When the last message the follower acknowledged was sent (performance.now(): leases are
   * durations on one process's monotonic clock, never wall-clock times): reads in sync mode are
   * served until this plus the lease.
   */
  private leaseFromMs = Number.NEGATIVE_INFINITY;
  private readonly serveNotBeforeMs: number;
  readonly follower: FollowerView = {
    reachable: false,
    catchingUp: false,
    diverged: false,
    ackedSeq: 0,
    lastContactAt: 0,
    lastError: 'not contacted yet',
  };

  constructor(
    private readonly store: KvStore,
    private readonly peer: PeerTransport,
    private readonly opts: LeaderOptions,
    private readonly logger: Logger,
    start: LeaderStart = { epoch: 0, mode: 'sync', reconcile: true },
    private readonly events: LeaderEvents = NO_EVENTS,
  ) {
    this.log = new LeaderLog(store.seq, opts.limits);
    this.shardJson = JSON.stringify(opts.shardId);
    this.epoch = start.epoch;
    this.mode = start.mode;
    this.reconcile = start.reconcile;
    this.serveNotBeforeMs = start.serveNotBeforeMs ?? 0;
  }

  get commitMode(): CommitMode {
    return this.mode;
  }

  /**
   * A new configuration for this leader (same node, same role). Going `alone` commits whatever
   * waits for the lost follower; going `sync` first applies what was committed alone.
   */
  setMode(mode: CommitMode, epoch: number): void {
    // The same epoch's "alone" again, while rejoining: we already know we may commit alone and
    // chose to wait for the follower; going back would undo the rejoin we asked to record.
    if (epoch === this.epoch && mode !== 'sync' && this.rejoinSeq !== undefined) return;
    this.epoch = epoch;
    // The coordinator's word: in sync (stop asking) or not (stop waiting for a rejoin).
    this.rejoinSeq = undefined;
    this.changeMode(mode);
  }

  private changeMode(mode: CommitMode): void {
    if (mode !== this.mode) this.logger.info({ from: this.mode, to: mode, epoch: this.epoch }, 'commit mode changed');
    if (mode === 'sync') this.flushAlone();
    this.mode = mode;
    if (mode === 'alone') this.scheduleFlush();
    this.wake?.();
  }

  get status() {
    return {
      state: this.state,
      epoch: this.epoch,
      commitMode: this.mode,
      lastSeq: this.log.lastSeq,
      appliedSeq: this.log.appliedSeq,
      storageError: this.storageError ?? null,
      recoveryError: this.recoveryError ?? null,
      queue: { entries: this.log.queuedEntries, bytes: this.log.queuedBytes },
    };
  }

  get serving(): boolean {
    return this.state === 'serving';
  }

  /** Replaced by a newer epoch: it serves nothing until the node is reconfigured. */
  get fenced(): boolean {
    return this.state === 'fenced';
  }

  /** Recovers if needed, then runs the replication loop until `stop`. */
  async start(): Promise<void> {
    this.recovery = this.recover();
    await this.recovery;
    if (this.state !== 'recovering') return;
    await this.waitOutOldLease();
    if (this.state !== 'recovering') return;
    this.log = new LeaderLog(this.store.seq, this.opts.limits);
    this.nextSeq = this.log.startSeq;
    this.termJson = termFields({ term: randomUUID(), seq: this.store.seq, digest: this.store.digest() });
    this.state = 'serving';
    this.logger.info({ seq: this.store.seq, keys: this.store.size }, 'leader serving');
    await this.replicationLoop();
  }

  /**
   * A node promoted from follower starts serving only once the read lease of the leader it
   * followed has run out: that leader may not know yet that it was replaced (cut off from the
   * coordinator, or paused), and until then it may serve a read to a router with an old map.
   */
  private async waitOutOldLease(): Promise<void> {
    const waitMs = this.serveNotBeforeMs - performance.now();
    if (waitMs > 0) this.logger.info({ waitMs }, 'waiting for the previous leader\'s read lease to run out before serving');
    // A loop, because the sleep ends early when woken (stop() wakes it).
    while (this.state === 'recovering' && performance.now() < this.serveNotBeforeMs) await this.sleep(this.serveNotBeforeMs - performance.now());
  }

  /** Stops the loop and answers every waiting write; resolves when no store transaction is running. */
  async stop(): Promise<void> {
    if (this.state !== 'fenced') this.state = 'stopped';
    this.stopping.abort();
    this.wake?.();
    this.rejectWaiters('leader stopping');
    await Promise.all([this.applying, this.recovery]);
  }

  /** Their entries may still commit (a promoted follower may hold them): indeterminate. */
  private rejectWaiters(why: string): void {
    for (const [seq, w] of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new KvError('replication_timeout', `${why}; write ${seq} may or may not commit`));
    }
    this.waiters.clear();
  }

  get(key: string): string | undefined {
    this.assertReadable();
    return this.store.get(key);
  }

  /**
   * Reads are linearizable only while no other node can have been promoted. With the follower
   * in sync that is what its recent acknowledgement proves: a promoted follower refuses our
   * messages, and waits out this lease before it serves (waitOutOldLease). Committing alone or
   * refusing, the follower is out of sync and cannot be promoted, so no lease is needed.
   */
  assertReadable(): void {
    this.assertServing();
    const sinceMs = performance.now() - this.leaseFromMs;
    if (this.mode !== 'sync' || sinceMs < this.opts.readLeaseMs) return;
    const since = Number.isFinite(sinceMs) ? `for ${Math.round(sinceMs)} ms` : 'yet';
    throw new KvError('not_ready', `leader has had no acknowledgement from its follower ${since}: it cannot be sure it still leads, so it serves no reads until it hears from it`);
  }

  /** Sequences a write and resolves once it is committed (on the follower and applied here). */
  async write(op: Op): Promise<WriteResult> {
    this.assertServing();
    this.assertReplicaAvailable();
    const { entry } = this.log.append(op);
    if (this.mode === 'alone') this.scheduleFlush();
    return new Promise<WriteResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(entry.seq);
        // The entry stays in the log: it commits when the follower acknowledges it.
        reject(new KvError('replication_timeout', `write ${entry.seq} was not acknowledged by the follower within ${this.opts.replicationTimeoutMs} ms; it may still commit`, { seq: entry.seq }));
      }, this.opts.replicationTimeoutMs);
      this.waiters.set(entry.seq, { resolve, reject, timer });
      this.wake?.();
    });
  }

  private assertServing(): void {
    if (this.state !== 'serving') throw new KvError('not_ready', `leader is ${this.state}`);
  }

  /** Fails fast, before anything is sequenced, when the write could not commit in time. */
  private assertReplicaAvailable(): void {
    if (this.storageError !== undefined) throw new KvError('storage_unavailable', `leader cannot persist writes: ${this.storageError}`);
    if (this.mode === 'alone') return;
    if (this.mode === 'refuse') throw new KvError('no_replica', 'the follower is out of sync and MIN_INSYNC_REPLICAS=2: writes need both nodes');
    const f = this.follower;
    if (f.diverged) throw new KvError('no_replica', 'follower state differs from this leader; it is being resynced (see leader log)');
    if (!f.reachable) throw new KvError('no_replica', `follower ${this.peer.url} is unreachable: ${f.lastError ?? 'unknown'}`);
    if (f.catchingUp) throw new KvError('no_replica', `follower ${this.peer.url} is catching up (log tail or full transfer)`);
  }

  /**
   * Before it serves anything, a starting leader takes whatever its follower has beyond its own
   * `seq`. The follower can be ahead: it acknowledges an entry before the leader applies it, so a
   * leader killed in between restarts without entries that are committed on the follower (and an
   * in-memory leader restarts with nothing). Serving before this could show a client an older
   * state than one it already saw. Until then reads and writes get 503 not_ready.
   */
  private async recover(): Promise<void> {
    let lastError = '';
    // A promoted follower has every committed entry, and an out-of-sync follower cannot have one
    // we lack: only a leader whose follower is in sync needs to ask it.
    while (this.state === 'recovering' && this.reconcile && this.mode === 'sync') {
      try {
        const result = await catchUpFrom(this.peer, this.store, this.opts.shardId, { signal: this.stopping.signal });
        this.logger.info({ ...result, from: this.peer.url }, 'reconciled with follower');
        return;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (err instanceof DivergedError) {
          // Which history is right cannot be known here; serving either could lose acknowledged
          // writes. Stay unavailable (503 not_ready, reason in /status) until an operator acts.
          this.recoveryError = message;
          this.logger.error({ err: message, from: this.peer.url }, 'follower history differs from ours: not serving; fix by hand (wipe the wrong node)');
          while (this.state === 'recovering') await this.sleep(this.opts.heartbeatIntervalMs);
          return;
        }
        // Logged once per distinct reason: a follower that is down for minutes is one line, not thousands.
        if (message !== lastError) this.logger.warn({ err: message, from: this.peer.url }, 'cannot reconcile with follower yet; not serving until it answers');
        lastError = message;
        this.events.followerLost(this.epoch);
        await this.sleep(this.opts.retryBackoffMs);
      }
    }
  }

  private async replicationLoop(): Promise<void> {
    while (this.state === 'serving') {
      // A follower behind the in-memory log gets nothing but heartbeats until its catch-up ends.
      const batch = this.nextSeq >= this.log.startSeq ? this.log.batchFrom(this.nextSeq) : [];
      if (batch.length === 0 && Date.now() - this.lastSentAt < this.opts.heartbeatIntervalMs) {
        await this.sleep(this.opts.heartbeatIntervalMs - (Date.now() - this.lastSentAt));
        continue;
      }
      this.lastSentAt = Date.now();
      const sentAtMs = performance.now();
      try {
        this.onReply(sentAtMs, await this.peer.replicate(replicateBody(this.shardJson, this.epoch, this.termJson, this.log.startSeq, this.log.lastSeq, batch, this.resync)));
        // A diverged or catching-up follower will answer the same way again: do not spin on it,
        // not even when new writes arrive (they would wake an ordinary sleep).
        if (this.follower.diverged || this.follower.catchingUp) await new Promise((r) => setTimeout(r, this.opts.retryBackoffMs));
      } catch (err) {
        this.onFailure(err);
        await this.sleep(this.opts.retryBackoffMs);
      }
    }
  }

  private onReply(sentAtMs: number, reply: ReplicateReply): void {
    const f = this.follower;
    // The follower answered a message of our epoch: as of then it was not promoted.
    this.leaseFromMs = Math.max(this.leaseFromMs, sentAtMs);
    if (!f.reachable) this.logger.info({ follower: this.peer.url, seq: reply.seq }, 'follower reachable');
    f.reachable = true;
    f.lastContactAt = Date.now();
    f.lastError = undefined;
    f.catchingUp = reply.catchingUp;
    if (!reply.catchingUp && this.differs(reply)) {
      // Never adopt or keep a history we did not write: refuse writes, and have the follower
      // replace its state with ours (it cannot hold an acknowledged write we lack: we reconciled
      // with it at start-up, and since then only we have written to it).
      if (!f.diverged) this.logger.error({ followerSeq: reply.seq, lastSeq: this.log.lastSeq }, 'follower state differs from ours: asking it to resync');
      f.diverged = true;
      this.resync = true;
      return;
    }
    this.resync = false;
    // Below what it acknowledged: it lost its disk (or runs in memory and restarted). It cannot
    // count as in sync any more, whatever it catches up to later.
    if (reply.seq < f.ackedSeq && this.mode === 'sync') this.events.followerLost(this.epoch);
    // While we commit alone a follower is always catching up (each tail ends behind the next
    // writes); once it is close, writes wait for it again and it catches the rest from memory.
    if (this.mode !== 'sync' && reply.seq >= this.log.appliedSeq - REJOIN_LAG_ENTRIES_MAX) this.rejoin();
    if (reply.catchingUp) return;
    f.diverged = false;
    f.ackedSeq = reply.seq;
    this.nextSeq = reply.seq + 1;
    if (this.mode === 'sync') this.commitAcked(this.log.ackThrough(reply.seq));
    if (this.rejoinSeq !== undefined && reply.seq >= this.rejoinSeq) this.events.followerCaughtUp(this.epoch);
  }

  private commitAcked(acked: LogRecord[]): void {
    if (acked.length > 0) this.applying = this.applying.then(() => this.applyAcked(acked));
  }

  /** Applies what was sequenced while committing alone (one transaction per event-loop turn). */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flushAlone();
    });
  }

  private flushAlone(): void {
    if (this.mode === 'alone') this.commitAcked(this.log.ackThrough(this.log.lastSeq));
  }

  /**
   * The out-of-sync follower is close behind: from now on writes wait for it again, so nothing
   * commits without it any more. Only when it also has the last entry committed alone is the
   * coordinator asked to count it in sync (promotable). Until then waiting for it is only ever
   * extra safety.
   */
  private rejoin(): void {
    if (this.mode === 'sync') return;
    this.logger.info({ appliedSeq: this.log.appliedSeq }, 'follower close behind: waiting for it again');
    this.changeMode('sync');
    this.rejoinSeq = this.log.lastSeq;
  }

  /** The follower is ahead of us, or at our seq with another state. */
  private differs(reply: ReplicateReply): boolean {
    return reply.seq > this.log.lastSeq || (reply.seq === this.store.seq && reply.digest !== this.store.digest());
  }

  /**
   * Applies acknowledged entries (one durable transaction), then answers their writers. If the
   * store fails (disk full), the entries are committed on the follower, so they are retried until
   * they apply; meanwhile new writes are refused and the waiting ones time out as indeterminate.
   */
  private async applyAcked(records: LogRecord[]): Promise<void> {
    let existed: boolean[] | undefined;
    while (existed === undefined) {
      try {
        existed = await this.store.apply(records);
      } catch (err) {
        if (this.storageError === undefined) this.logger.error({ err: String(err) }, 'store cannot apply committed entries; refusing writes and retrying');
        this.storageError = err instanceof Error ? err.message : String(err);
        if (this.state === 'stopped') return;
        await new Promise((r) => setTimeout(r, this.opts.retryBackoffMs));
      }
    }
    if (this.storageError !== undefined) this.logger.info('store writable again');
    this.storageError = undefined;
    this.log.appliedThrough(records[records.length - 1]!.entry.seq);
    for (let i = 0; i < records.length; i += 1) {
      const seq = records[i]!.entry.seq;
      const w = this.waiters.get(seq);
      if (w === undefined) continue;
      this.waiters.delete(seq);
      clearTimeout(w.timer);
      w.resolve({ seq, existed: existed[i]! });
    }
  }

  private onFailure(err: unknown): void {
    if (err instanceof StaleEpochError) return this.fence(err.message);
    const f = this.follower;
    const message = err instanceof Error ? err.message : String(err);
    if (this.mode === 'sync') this.events.followerLost(this.epoch);
    if (f.reachable) this.logger.warn({ follower: this.peer.url, err: message }, 'follower unreachable; refusing writes');
    f.reachable = false;
    f.lastError = message;
  }

  /** A newer epoch exists: another node leads now. Stop serving; the coordinator reassigns us. */
  fence(why: string): void {
    if (this.state === 'fenced' || this.state === 'stopped') return;
    this.logger.warn({ epoch: this.epoch, why }, 'replaced by a newer epoch: no longer serving');
    this.state = 'fenced';
    this.rejectWaiters('leader replaced');
    this.wake?.();
    this.events.fenced(this.epoch);
  }

  /** Sleeps up to `ms`; a new write wakes the loop early. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      const self = this;
      function done() {
        clearTimeout(timer);
        if (self.wake === done) self.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }
}
