import { KvError, type Logger } from '@shardkv/common';
import type { KvStore } from '../store';
import { LeaderLog, type LogLimits, type Op } from './log';
import { replicateBody, type PeerTransport, type ReplicateReply } from './messages';
import { installSnapshot } from './snapshot';

export interface LeaderOptions {
  shardId: string;
  /** How long a write waits for its commit before the client gets 504 replication_timeout. */
  replicationTimeoutMs: number;
  /** An idle leader contacts its follower this often, so a lost or restarted follower is noticed. */
  heartbeatIntervalMs: number;
  /** Pause between attempts after a failed contact or a failed recovery. */
  retryBackoffMs: number;
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

export type LeaderState = 'recovering' | 'serving' | 'stopped';

/**
 * The leader of one shard: the only writer. A write is sequenced in the LeaderLog, sent to the
 * follower by a single replication loop, and applied to the store (made visible) and answered
 * only when the follower has acknowledged it.
 *
 * The loop keeps at most one request in flight; writes that arrive meanwhile queue in the log and
 * travel together in the next request (pipelining by batching).
 */
export class Leader {
  private state: LeaderState = 'recovering';
  private log: LeaderLog;
  private readonly waiters = new Map<number, Waiter>();
  private nextSeq = 1;
  private lastSentAt = 0;
  private wake: (() => void) | undefined;
  private readonly shardJson: string;
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
  ) {
    this.log = new LeaderLog(store.seq, opts.limits);
    this.shardJson = JSON.stringify(opts.shardId);
  }

  get status() {
    return {
      state: this.state,
      lastSeq: this.log.lastSeq,
      queue: { entries: this.log.queuedEntries, bytes: this.log.queuedBytes },
    };
  }

  get serving(): boolean {
    return this.state === 'serving';
  }

  /** Recovers if needed, then runs the replication loop until `stop`. */
  async start(): Promise<void> {
    await this.recover();
    if (this.state === 'stopped') return;
    this.log = new LeaderLog(this.store.seq, this.opts.limits);
    this.nextSeq = this.log.startSeq;
    this.state = 'serving';
    this.logger.info({ seq: this.store.seq, keys: this.store.size }, 'leader serving');
    await this.replicationLoop();
  }

  async stop(): Promise<void> {
    this.state = 'stopped';
    this.wake?.();
    for (const [seq, w] of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new KvError('replication_timeout', `leader stopping; write ${seq} may or may not commit`));
    }
    this.waiters.clear();
  }

  get(key: string): string | undefined {
    this.assertServing();
    return this.store.get(key);
  }

  /** Sequences a write and resolves once it is committed (on the follower and applied here). */
  async write(op: Op): Promise<WriteResult> {
    this.assertServing();
    this.assertReplicaAvailable();
    const { entry } = this.log.append(op);
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
    const f = this.follower;
    if (f.diverged) throw new KvError('no_replica', 'follower history diverged from this leader (see leader log)');
    if (!f.reachable) throw new KvError('no_replica', `follower ${this.peer.url} is unreachable: ${f.lastError ?? 'unknown'}`);
    if (f.catchingUp) throw new KvError('no_replica', `follower ${this.peer.url} is catching up (state transfer)`);
  }

  /**
   * A leader that starts with an empty store (the in-memory engine after a restart) must not
   * serve that emptiness: every acknowledged write is on its follower, so it first takes the
   * follower's state. Until then it answers 503 not_ready.
   */
  private async recover(): Promise<void> {
    if (this.store.seq > 0) return;
    while (this.state === 'recovering') {
      try {
        const { seq, keys } = await installSnapshot(await this.peer.snapshot(), this.store, this.opts.shardId);
        this.logger.info({ seq, keys, from: this.peer.url }, 'recovered state from follower');
        return;
      } catch (err) {
        this.logger.warn({ err: String(err), from: this.peer.url }, 'recovery from follower failed; retrying');
        await this.sleep(this.opts.retryBackoffMs);
      }
    }
  }

  private async replicationLoop(): Promise<void> {
    while (this.state === 'serving') {
      // A follower behind the log start gets nothing but heartbeats until its state transfer ends.
      const batch = this.nextSeq >= this.log.startSeq ? this.log.batchFrom(this.nextSeq) : [];
      if (batch.length === 0 && Date.now() - this.lastSentAt < this.opts.heartbeatIntervalMs) {
        await this.sleep(this.opts.heartbeatIntervalMs - (Date.now() - this.lastSentAt));
        continue;
      }
      this.lastSentAt = Date.now();
      try {
        this.onReply(await this.peer.replicate(replicateBody(this.shardJson, this.log.startSeq, this.log.lastSeq, batch)));
        // A diverged follower will answer the same way again: do not spin on it.
        if (this.follower.diverged) await this.sleep(this.opts.retryBackoffMs);
      } catch (err) {
        this.onFailure(err);
        await this.sleep(this.opts.retryBackoffMs);
      }
    }
  }

  private onReply(reply: ReplicateReply): void {
    const f = this.follower;
    if (!f.reachable) this.logger.info({ follower: this.peer.url, seq: reply.seq }, 'follower reachable');
    f.reachable = true;
    f.lastContactAt = Date.now();
    f.lastError = undefined;
    f.catchingUp = reply.catchingUp;
    if (reply.seq > this.log.lastSeq) {
      // Never adopt or ignore a history we did not write: refuse writes and say so loudly.
      if (!f.diverged) this.logger.error({ followerSeq: reply.seq, lastSeq: this.log.lastSeq }, 'follower is ahead of leader: diverged history');
      f.diverged = true;
      return;
    }
    f.diverged = false;
    f.ackedSeq = reply.seq;
    this.nextSeq = reply.seq + 1;
    if (reply.seq > this.log.committedSeq) this.commitThrough(reply.seq);
  }

  private commitThrough(seq: number): void {
    for (const { entry } of this.log.commitThrough(seq)) {
      const existed = this.store.apply(entry);
      const w = this.waiters.get(entry.seq);
      if (w === undefined) continue;
      this.waiters.delete(entry.seq);
      clearTimeout(w.timer);
      w.resolve({ seq: entry.seq, existed });
    }
  }

  private onFailure(err: unknown): void {
    const f = this.follower;
    const message = err instanceof Error ? err.message : String(err);
    if (f.reachable) this.logger.warn({ follower: this.peer.url, err: message }, 'follower unreachable; refusing writes');
    f.reachable = false;
    f.lastError = message;
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
