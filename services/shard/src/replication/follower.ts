import { KvError, type Logger } from '@shardkv/common';
import { performance } from 'node:perf_hooks';
import { catchUpFailures, commitSeconds, recordCatchUp, secondsSince } from '../metrics';
import type { KvStore } from '../store';
import { decideReplicate, stateAfterApply, type FollowerState } from './follower-core';
import { assertContiguous, record, type Entry } from './log';
import { PeerNotReadyError, type PeerTransport, type ReplicateReply, type ReplicateRequest } from './messages';
import { catchUpFrom, DivergedError, type CatchUpResult } from './transfer';

export type { FollowerState } from './follower-core';

export interface FollowerOptions {
  shardId: string;
  retryBackoffMs: number;
}

/**
 * The follower of one shard. It applies the leader's entries strictly in sequence order and
 * durably (one store transaction per batch) before it acknowledges them: the leader makes an
 * entry visible only after that acknowledgement. When it is behind the leader's in-memory log
 * (it was away, or lost its disk) it pulls a catch-up transfer first.
 */
interface Queued {
  req: ReplicateRequest;
  resolve: (r: ReplicateReply) => void;
  reject: (e: unknown) => void;
}

export class Follower {
  private state: FollowerState = 'waiting';
  private lastContactAt = 0;
  private leaderLastSeq = 0;
  private lastCatchUp: CatchUpResult | null = null;
  /**
   * Messages waiting for the store: they are handled in arrival order, each planned against the
   * seq the previous one leaves. Those that arrive during a store transaction (pipelined by the
   * leader) are applied together in the next one: one fsync for all (group commit).
   */
  private queue: Queued[] = [];
  private handling: Promise<void> = Promise.resolve();
  private draining = false;
  /** The catch-up in progress, if any: it runs beside the message chain and `stop` waits for it. */
  private catching: Promise<void> | undefined;
  private readonly stopping = new AbortController();

  constructor(
    private readonly store: KvStore,
    private readonly leader: PeerTransport,
    private readonly opts: FollowerOptions,
    private readonly logger: Logger,
  ) {}

  get status() {
    return {
      state: this.state,
      leaderLastSeq: this.leaderLastSeq,
      lastContactMsAgo: this.lastContactAt === 0 ? null : Date.now() - this.lastContactAt,
      lastCatchUp: this.lastCatchUp,
    };
  }

  /** Ready to serve reads: contacted by the leader and not in the middle of a catch-up. */
  get readable(): boolean {
    return this.state === 'replicating' || this.state === 'in_sync';
  }

  /** The state may be served to a recovering leader only when it is not being replaced. */
  get transferable(): boolean {
    return this.state !== 'catching_up' && this.state !== 'stopped';
  }

  get(key: string): string | undefined {
    if (!this.readable) throw new KvError('not_ready', `follower is ${this.state}`);
    return this.store.get(key);
  }

  /** Stops taking messages; resolves when nothing is writing to the store any more. */
  async stop(): Promise<void> {
    this.state = 'stopped';
    this.stopping.abort();
    await Promise.all([this.handling.catch(() => {}), this.catching]);
    for (const q of this.queue.splice(0)) q.reject(new KvError('not_ready', 'follower stopping'));
  }

  /** The single entry point for replication messages. */
  onReplicate(req: ReplicateRequest): Promise<ReplicateReply> {
    if (this.state === 'stopped') throw new KvError('not_ready', 'follower stopping');
    if (req.shard !== this.opts.shardId) {
      throw new KvError('wrong_shard', `replication for shard ${req.shard} sent to a follower of ${this.opts.shardId}`);
    }
    assertContiguous(req.entries);
    return new Promise<ReplicateReply>((resolve, reject) => {
      this.queue.push({ req, resolve, reject });
      if (!this.draining) this.handling = this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0) await this.handleGroup(this.queue.splice(0));
    } finally {
      this.draining = false;
    }
  }

  /**
   * The messages of one group whose entries simply follow ours (same term checked, no catch-up
   * or resync) share one transaction; any other message first flushes what is planned, then is
   * handled alone. Every reply carries the seq after the shared transaction: acknowledgements
   * are cumulative.
   */
  private async handleGroup(group: Queued[]): Promise<void> {
    const planned: { q: Queued; gap: boolean }[] = [];
    const entries: Entry[] = [];
    const flush = async () => {
      if (planned.length === 0) return;
      const done = planned.splice(0);
      try {
        if (entries.length > 0) await this.persist(entries.splice(0));
        this.state = stateAfterApply(this.store.seq, done[done.length - 1]!.q.req);
        for (const d of done) d.q.resolve(this.reply(d.gap));
      } catch (err) {
        for (const d of done) d.q.reject(err);
      }
    };
    for (const q of group) {
      const { req } = q;
      const simple = this.state !== 'catching_up' && this.state !== 'stopped' && req.term === this.store.term && req.resync !== true;
      const decision = simple ? decideReplicate({ state: this.state, seq: this.store.seq + entries.length, term: this.store.term, digest: () => this.store.digest() }, req) : undefined;
      if (decision?.kind !== 'apply') {
        await flush();
        await this.handle(req).then(q.resolve, q.reject);
        continue;
      }
      this.lastContactAt = Date.now();
      this.leaderLastSeq = req.lastSeq;
      for (const e of decision.entries) entries.push(e);
      planned.push({ q, gap: decision.gap });
    }
    await flush();
  }

  /** Performs what `decideReplicate` (follower-core.ts) decides for this message. */
  private async handle(req: ReplicateRequest): Promise<ReplicateReply> {
    this.lastContactAt = Date.now();
    this.leaderLastSeq = req.lastSeq;
    const store = this.store;
    const decision = decideReplicate({ state: this.state, seq: store.seq, term: store.term, digest: () => store.digest() }, req);
    if (decision.kind === 'busy') return this.reply(false);
    if (decision.kind === 'catchUp') {
      if (decision.why === 'stray') this.logger.warn({ seq: store.seq, termStartSeq: req.termStartSeq }, 'holding entries the new leader term never had: taking its full state');
      this.startCatchUp(decision.full, req.term);
      return this.reply(false);
    }
    if (decision.adoptTerm) await store.setTerm(req.term);
    if (decision.entries.length > 0) await this.persist(decision.entries);
    this.state = stateAfterApply(store.seq, req);
    return this.reply(decision.gap);
  }

  private async persist(entries: Entry[]): Promise<void> {
    const startMs = performance.now();
    try {
      await this.store.apply(entries.map(record));
      commitSeconds.observe({ role: 'follower' }, secondsSince(startMs));
    } catch (err) {
      this.logger.error({ err: String(err) }, 'cannot persist replicated entries');
      throw new KvError('storage_unavailable', `follower cannot persist entries: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private reply(gap: boolean): ReplicateReply {
    return { seq: this.store.seq, catchingUp: this.state === 'catching_up', gap, digest: this.store.digest() };
  }

  private startCatchUp(full: boolean, term: string): void {
    this.state = 'catching_up';
    this.catching = this.catchUp(full, term).finally(() => {
      this.catching = undefined;
    });
  }

  /**
   * Pulls what it lacks; the leader then resends its in-memory log from the new seq. `full`
   * replaces the whole state with the leader's: asked for by the leader when our state differs
   * from its own, and taken here when a tail ends with a different digest. Either means our
   * history differs from the leader's, and the leader's is the shard's.
   */
  private async catchUp(full: boolean, term: string): Promise<void> {
    // A follower out of sync chases a leader that commits alone with many small tails: debug level.
    if (full) this.logger.info({ seq: this.store.seq }, 'state differs from the leader: taking its full state');
    else this.logger.debug({ seq: this.store.seq }, 'behind the leader log: catching up');
    while (this.state === 'catching_up') {
      try {
        const startMs = performance.now();
        const result = await catchUpFrom(this.leader, this.store, this.opts.shardId, { full, signal: this.stopping.signal });
        recordCatchUp('follower', result.kind, startMs);
        // Our state is now the leader's at some seq: its history, whatever we held before.
        if (this.state === 'catching_up') await this.store.setTerm(term);
        this.lastCatchUp = result;
        this.logger[result.kind === 'tail' ? 'debug' : 'info'](result, 'caught up; replaying the live log');
        if (this.state === 'catching_up') this.state = 'replicating';
        return;
      } catch (err) {
        if (err instanceof PeerNotReadyError) {
          // The leader is itself recovering, from us: waiting for it would deadlock the shard.
          // Our old state is intact (a full transfer swaps only when complete, a tail applies
          // valid prefixes), so stand by with it and let the leader take it; the leader's next
          // message says whether we are still behind.
          this.logger.warn({ err: err.message }, 'leader cannot serve a transfer; standing by');
          if (this.state === 'catching_up') this.state = 'waiting';
          return;
        }
        if (err instanceof DivergedError) {
          this.logger.error({ err: err.message }, 'history differs from the leader: taking its full state');
          full = true;
          continue;
        }
        if (this.state !== 'catching_up') return;
        catchUpFailures.inc({ role: 'follower' });
        this.logger.warn({ err: String(err) }, 'catch-up failed; retrying');
        await new Promise((r) => setTimeout(r, this.opts.retryBackoffMs));
      }
    }
  }
}
