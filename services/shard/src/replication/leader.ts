import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { KvError, type Logger } from '@shardkv/common';
import { catchUpFailures, commitSeconds, recordCatchUp, replication, secondsSince } from '../metrics';
import type { KvStore } from '../store';
import { AckClock } from './ack-clock';
import type { Command } from './commands';
import { LeaderCore, type CommandResult, type CommitMode, type FollowerView, type LeaderCoreOptions, type LeaderEffect, type LeaderEvent, type Report, type WriteResult } from './leader-core';
import type { LogRecord } from './log';
import { StaleEpochError, type PeerTransport } from './messages';
import { catchUpFrom, DivergedError } from './transfer';
import { ExpirySweeper, type ExpiryLimits } from './expiry';
import { CommittedReads } from './visible';
import { expiredKeys } from '../metrics';

export type { CommandResult, CommitMode, WriteResult } from './leader-core';
export { REJOIN_LAG_ENTRIES_MAX } from './leader-core';

export interface LeaderOptions extends LeaderCoreOptions {
  /**
   * A starting leader that has not reached its follower yet reports it lost (and may go on
   * alone) only this long after it started (FOLLOWER_STARTUP_GRACE_MS; 0: at once). At a cold
   * start every process comes up at once, and a follower slower to listen, or after a restart
   * still in standby until the coordinator configures it, is not lost. Meanwhile the leader
   * serves nothing, so nothing is acknowledged without the follower.
   */
  followerStartupGraceMs?: number;
  /** How expired keys are deleted (see expiry.ts); without it they are only hidden from reads. */
  expiry?: ExpiryLimits;
}

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

/**
 * The clock tick of the core: heartbeats, retries and write deadlines are checked this often at
 * most (a deadline may pass by up to one tick; the router waits UPSTREAM_TIMEOUT_MS, well beyond).
 * Each tick wakes an idle process: at 10 ms an idle leader spent ~3% of a core on them here.
 */
const TICK_INTERVAL_MS_MAX = 50;

interface Waiter {
  resolve: (r: CommandResult[]) => void;
  reject: (e: Error) => void;
}

/**
 * The leader of one shard: the shell around LeaderCore (leader-core.ts), which decides
 * everything. This file owns what the core may not: the socket to the follower, the store, the
 * clock, the term's random id and the waiting clients. Before the core exists the leader
 * recovers: it takes what its follower has beyond its own seq, and waits out the read lease of
 * the leader it replaced.
 */
export class Leader {
  private phase: 'recovering' | 'running' | 'stopped' = 'recovering';
  private core: LeaderCore | undefined;
  private readonly reads = new CommittedReads();
  private readonly waiters = new Map<number, Waiter>();
  private nextWriteId = 1;
  private flushScheduled = false;
  private ticker: NodeJS.Timeout | undefined;
  /** The store transaction in progress, if any (the core allows one at a time). */
  private persisting: Promise<void> = Promise.resolve();
  /** Set when start-up reconciliation found a different history on the follower: an operator must decide. */
  private recoveryError: string | undefined;
  private recovery: Promise<void> | undefined;
  private readonly stopping = new AbortController();
  private stopped: () => void = () => {};
  private mode: CommitMode;
  private epoch: number;
  private readonly reconcile: boolean;
  private readonly serveNotBeforeMs: number;
  /** When the entries the follower has not acknowledged were first sent (replication lag in time). */
  private readonly acks = new AckClock();
  private sweeper: ExpirySweeper | undefined;

  constructor(
    private readonly store: KvStore,
    private readonly peer: PeerTransport,
    private readonly opts: LeaderOptions,
    private readonly logger: Logger,
    start: LeaderStart = { epoch: 0, mode: 'sync', reconcile: true },
    private readonly events: LeaderEvents = NO_EVENTS,
  ) {
    this.epoch = start.epoch;
    this.mode = start.mode;
    this.reconcile = start.reconcile;
    this.serveNotBeforeMs = start.serveNotBeforeMs ?? 0;
  }

  get commitMode(): CommitMode {
    return this.core?.commitMode ?? this.mode;
  }

  /** A new configuration for this leader (same node, same role). */
  setMode(mode: CommitMode, epoch: number): void {
    if (this.core !== undefined) return this.step({ type: 'configure', mode, epoch, nowMs: performance.now() });
    this.mode = mode;
    this.epoch = epoch;
  }

  get follower(): FollowerView {
    return this.core?.follower ?? { reachable: false, catchingUp: false, diverged: false, ackedSeq: 0, lastContactAtMs: undefined, lastError: 'not contacted yet' };
  }

  get status() {
    const recovering = { state: this.phase, epoch: this.epoch, commitMode: this.mode, lastSeq: this.store.seq, committedSeq: this.store.seq, persistedSeq: this.store.seq, messagesInFlight: 0, storageError: null, queue: { entries: 0, bytes: 0 } };
    return { ...(this.core?.status ?? recovering), recoveryError: this.recoveryError ?? null, pendingKeys: this.reads.pendingKeys };
  }

  /** Age of the oldest entry sent and not yet acknowledged by the follower (see AckClock). */
  get replicationLagMs(): number {
    return this.acks.lagMs(performance.now());
  }

  get serving(): boolean {
    return this.core?.serving ?? false;
  }

  /** Replaced by a newer epoch: it serves nothing until the node is reconfigured. */
  get fenced(): boolean {
    return this.core?.fenced ?? false;
  }

  /** Recovers if needed, then runs the core until `stop`. */
  async start(): Promise<void> {
    this.recovery = this.recover();
    await this.recovery;
    if (this.phase !== 'recovering') return;
    await this.waitOutOldLease();
    if (this.phase !== 'recovering') return;
    const nowMs = performance.now();
    this.core = new LeaderCore(this.opts, { epoch: this.epoch, mode: this.mode, term: { term: randomUUID(), seq: this.store.seq, digest: this.store.digest() } }, (k) => this.store.get(k));
    this.phase = 'running';
    this.logger.info({ seq: this.store.seq, keys: this.store.size }, 'leader serving');
    const tickMs = Math.max(1, Math.min(TICK_INTERVAL_MS_MAX, Math.floor(this.opts.heartbeatIntervalMs / 2), Math.floor(this.opts.replicationTimeoutMs / 20)));
    this.ticker = setInterval(() => this.step({ type: 'tick', nowMs: performance.now() }), tickMs);
    if (this.opts.expiry !== undefined) {
      this.sweeper = new ExpirySweeper((c, max) => this.store.scan(c, max), (cmds) => this.writeBatch(cmds), this.opts.expiry, (n) => expiredKeys.inc(n));
      this.sweeper.start();
    }
    const done = new Promise<void>((resolve) => (this.stopped = resolve));
    this.step({ type: 'flush', nowMs });
    await done;
  }

  /**
   * A node promoted from follower starts serving only once the read lease of the leader it
   * followed has run out: that leader may not know yet that it was replaced (cut off from the
   * coordinator, or paused), and until then it may serve a read to a router with an old map.
   */
  private async waitOutOldLease(): Promise<void> {
    const waitMs = this.serveNotBeforeMs - performance.now();
    if (waitMs > 0) this.logger.info({ waitMs }, 'waiting for the previous leader\'s read lease to run out before serving');
    while (this.phase === 'recovering' && performance.now() < this.serveNotBeforeMs) await this.pause(this.serveNotBeforeMs - performance.now());
  }

  /** Stops the core and answers every waiting write; resolves when no store transaction is running. */
  async stop(): Promise<void> {
    if (this.core !== undefined) this.step({ type: 'stop', nowMs: performance.now() });
    this.phase = 'stopped';
    clearInterval(this.ticker);
    this.sweeper?.stop();
    this.stopping.abort();
    this.stopped();
    for (const w of this.waiters.values()) w.reject(new KvError('replication_timeout', 'leader stopping; the write may or may not commit'));
    this.waiters.clear();
    await Promise.all([this.persisting, this.recovery]);
  }

  /** A newer epoch exists (the coordinator said so): stop serving; the coordinator reassigns us. */
  fence(why: string): void {
    if (this.core !== undefined) this.step({ type: 'fence', why, nowMs: performance.now() });
  }

  get(key: string): string | undefined {
    this.assertReadable();
    return this.reads.get(key, (k) => this.store.get(k));
  }

  /** A read found `key` expired at `version`: the next sweep deletes it (replicated), unless it was written again. */
  expired(key: string, version: number): void {
    this.sweeper?.expired(key, version);
  }

  /** Throws the reason this leader may not serve a read now (see LeaderCore.readRefusal). */
  assertReadable(): void {
    if (this.core === undefined) throw new KvError('not_ready', `leader is ${this.phase}`);
    const refusal = this.core.readRefusal(performance.now());
    if (refusal !== undefined) throw refusal;
  }

  /** One command; resolves once committed, rejects with its refusal if its condition failed. */
  async write(cmd: Command): Promise<WriteResult> {
    const r = (await this.writeBatch([cmd]))[0]!;
    if ('refused' in r) throw r.refused;
    return r;
  }

  /**
   * Decides and sequences the commands in the order given, together (all or none: a definite
   * failure sequences nothing; a command refused by its own condition is answered with its
   * refusal), and resolves once all are committed; a timeout is indeterminate for all of them.
   */
  writeBatch(commands: readonly Command[]): Promise<CommandResult[]> {
    if (this.core === undefined) return Promise.reject(new KvError('not_ready', `leader is ${this.phase}`));
    const id = this.nextWriteId++;
    const done = new Promise<CommandResult[]>((resolve, reject) => this.waiters.set(id, { resolve, reject }));
    this.step({ type: 'write', id, commands, nowMs: performance.now(), wallMs: Date.now() });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.step({ type: 'flush', nowMs: performance.now() });
      });
    }
    return done;
  }

  private step(ev: LeaderEvent): void {
    if (this.core === undefined) return;
    for (const effect of this.core.step(ev)) this.perform(effect);
  }

  private perform(e: LeaderEffect): void {
    switch (e.type) {
      case 'send': return this.send(e.msgId, e.body, e.fromSeq, e.toSeq);
      case 'persist': return this.persist(e.records);
      case 'committed': return this.reads.onCommit(e.records);
      case 'answer': return this.settle(e.id, (w) => w.resolve(e.results));
      case 'fail': return this.settle(e.id, (w) => w.reject(new KvError(e.code, e.message)));
      case 'report': return this.report(e.event, e.epoch);
      case 'log': return this.logger[e.level](e.fields ?? {}, e.msg);
    }
  }

  /** Sends one message the core built; counted here (messages, bytes, entries), the core keeps no metrics. */
  private send(msgId: number, body: string, fromSeq: number, toSeq: number): void {
    const bytes = Buffer.byteLength(body);
    replication.messagesSent.inc();
    replication.bytesSent.inc(bytes);
    if (toSeq >= fromSeq) replication.entriesSent.inc(toSeq - fromSeq + 1);
    this.acks.sent(toSeq, performance.now());
    this.peer.replicate(body).then(
      (reply) => {
        replication.messagesAcked.inc();
        replication.bytesAcked.inc(bytes);
        this.step({ type: 'replied', msgId, reply, local: { seq: this.store.seq, digest: this.store.digest() }, nowMs: performance.now() });
        this.acks.acked(this.follower.ackedSeq);
      },
      (err: unknown) => {
        replication.sendFailures.inc();
        this.step({ type: 'sendFailed', msgId, error: err instanceof Error ? err.message : String(err), staleEpoch: err instanceof StaleEpochError, nowMs: performance.now() });
      },
    );
  }

  private persist(records: readonly LogRecord[]): void {
    this.reads.beforePersist(records, (k) => this.store.get(k));
    const throughSeq = records[records.length - 1]!.entry.seq;
    const startMs = performance.now();
    this.persisting = this.store.apply(records).then(
      (existed) => {
        commitSeconds.observe({ role: 'leader' }, secondsSince(startMs));
        this.step({ type: 'persisted', throughSeq, existed, nowMs: performance.now() });
      },
      (err: unknown) => this.step({ type: 'persistFailed', error: err instanceof Error ? err.message : String(err), nowMs: performance.now() }),
    );
  }

  private settle(id: number, how: (w: Waiter) => void): void {
    const w = this.waiters.get(id);
    if (w === undefined) return;
    this.waiters.delete(id);
    how(w);
  }

  private report(event: Report, epoch: number): void {
    if (event === 'fenced') this.stopped();
    this.events[event](epoch);
  }

  /**
   * Before it serves anything, a starting leader takes whatever its follower has beyond its own
   * `seq`. The follower can be ahead: it may persist an entry before the leader does, so a leader
   * killed in between restarts without entries that are committed on the follower (and an
   * in-memory leader restarts with nothing). Serving before this could show a client an older
   * state than one it already saw. Until then reads and writes get 503 not_ready. A follower
   * that does not answer is reported lost only after the start-up grace (see LeaderOptions).
   */
  private async recover(): Promise<void> {
    const graceUntilMs = performance.now() + (this.opts.followerStartupGraceMs ?? 0);
    let lastLogged = '';
    // A promoted follower has every committed entry, and an out-of-sync follower cannot have one
    // we lack: only a leader whose follower is in sync needs to ask it.
    while (this.phase === 'recovering' && this.reconcile && this.mode === 'sync') {
      try {
        const startMs = performance.now();
        const result = await catchUpFrom(this.peer, this.store, this.opts.shardId, { signal: this.stopping.signal });
        recordCatchUp('leader', result.kind, startMs);
        this.logger.info({ ...result, from: this.peer.url }, 'reconciled with follower');
        return;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (err instanceof DivergedError) {
          // Which history is right cannot be known here; serving either could lose acknowledged
          // writes. Stay unavailable (503 not_ready, reason in /status) until an operator acts.
          this.recoveryError = message;
          this.logger.error({ err: message, from: this.peer.url }, 'follower history differs from ours: not serving; fix by hand (wipe the wrong node)');
          while (this.phase === 'recovering') await this.pause(this.opts.heartbeatIntervalMs);
          return;
        }
        const graceLeftMs = graceUntilMs - performance.now();
        catchUpFailures.inc({ role: 'leader' });
        lastLogged = this.reconcileFailed(message, graceLeftMs, lastLogged);
        // Woken at the end of the grace at the latest: a follower still silent then is reported at once.
        await this.pause(graceLeftMs > 0 ? Math.min(this.opts.retryBackoffMs, graceLeftMs) : this.opts.retryBackoffMs);
      }
    }
  }

  /**
   * A failed reconciliation: within the start-up grace the follower is waited for (it has not
   * answered yet: a start, not a loss; logged as info, not reported); after it, reported lost on
   * every attempt (the node reports once per REPORT_RETRY_MS) and logged as a warning. Logged
   * once per distinct reason and level: a follower down for minutes is one line, not thousands.
   * Returns what was logged last.
   */
  private reconcileFailed(message: string, graceLeftMs: number, lastLogged: string): string {
    const waiting = graceLeftMs > 0;
    const logged = `${waiting ? 'info' : 'warn'} ${message}`;
    if (logged !== lastLogged && waiting) this.logger.info({ err: message, from: this.peer.url, graceLeftMs: Math.round(graceLeftMs) }, 'follower not answering yet; waiting for it before serving');
    if (logged !== lastLogged && !waiting) this.logger.warn({ err: message, from: this.peer.url }, 'cannot reconcile with follower yet; not serving until it answers');
    if (!waiting) this.events.followerLost(this.epoch);
    return logged;
  }

  /** Sleeps up to `ms` while recovering; `stop` ends it early. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.stopping.signal;
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      signal.addEventListener('abort', done);
    });
  }
}
