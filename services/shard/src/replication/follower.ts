import { KvError, type Logger } from '@shardkv/common';
import type { KvStore } from '../store';
import { assertContiguous, needsStateTransfer, planApply } from './log';
import { PeerNotReadyError, type PeerTransport, type ReplicateReply, type ReplicateRequest } from './messages';
import { installSnapshot } from './snapshot';

/**
 * - `waiting`: started, not yet contacted by the leader; its state may be stale, so it serves no reads.
 * - `catching_up`: loading a state transfer from the leader; serves no reads, applies nothing.
 * - `replicating`: applying the log, but behind the leader's last entry.
 * - `in_sync`: has applied every entry the leader had sequenced at the last contact.
 */
export type FollowerState = 'waiting' | 'catching_up' | 'replicating' | 'in_sync' | 'stopped';

export interface FollowerOptions {
  shardId: string;
  retryBackoffMs: number;
}

/**
 * The follower of one shard. It applies the leader's entries strictly in sequence order, and
 * takes a full state transfer when it is behind the start of the leader's log (after a restart
 * with an empty store). Entries are applied, and so durable on this node, before they are
 * acknowledged: the leader makes them visible only after that acknowledgement.
 */
export class Follower {
  private state: FollowerState = 'waiting';
  private lastContactAt = 0;
  private leaderLastSeq = 0;

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
    };
  }

  /** Ready to serve reads: contacted by the leader and not in the middle of a state transfer. */
  get readable(): boolean {
    return this.state === 'replicating' || this.state === 'in_sync';
  }

  /** The state may be served to a recovering leader only when it is not being replaced. */
  get snapshotable(): boolean {
    return this.state !== 'catching_up' && this.state !== 'stopped';
  }

  get(key: string): string | undefined {
    if (!this.readable) throw new KvError('not_ready', `follower is ${this.state}`);
    return this.store.get(key);
  }

  stop(): void {
    this.state = 'stopped';
  }

  /** The single entry point for replication messages. */
  onReplicate(req: ReplicateRequest): ReplicateReply {
    if (this.state === 'stopped') throw new KvError('not_ready', 'follower stopping');
    if (req.shard !== this.opts.shardId) {
      throw new KvError('wrong_shard', `replication for shard ${req.shard} sent to a follower of ${this.opts.shardId}`);
    }
    assertContiguous(req.entries);
    this.lastContactAt = Date.now();
    this.leaderLastSeq = req.lastSeq;
    if (this.state === 'catching_up') return this.reply(false);
    if (needsStateTransfer(this.store.seq, req.logStartSeq)) {
      void this.catchUp(req.logStartSeq);
      return this.reply(false);
    }
    const plan = planApply(this.store.seq, req.entries);
    for (const entry of plan.apply) this.store.apply(entry);
    this.state = this.store.seq >= req.lastSeq ? 'in_sync' : 'replicating';
    return this.reply(plan.gap);
  }

  private reply(gap: boolean): ReplicateReply {
    return { seq: this.store.seq, catchingUp: this.state === 'catching_up', gap };
  }

  /** Replaces the whole state with the leader's; the leader then resends its log from there. */
  private async catchUp(leaderLogStartSeq: number): Promise<void> {
    this.state = 'catching_up';
    this.logger.info({ seq: this.store.seq, leaderLogStartSeq }, 'behind the leader log: starting state transfer');
    while (this.state === 'catching_up') {
      try {
        const { seq, keys } = await installSnapshot(await this.leader.snapshot(), this.store, this.opts.shardId);
        this.logger.info({ seq, keys }, 'state transfer done; replaying log tail');
        if (this.state === 'catching_up') this.state = 'replicating';
        return;
      } catch (err) {
        if (err instanceof PeerNotReadyError) {
          // The leader is itself recovering, from us: waiting for it would deadlock the shard.
          // Our old state is intact (a transfer swaps only when complete), so stand by with it
          // and let the leader take it; the leader's next message says whether we are behind.
          this.logger.warn({ err: err.message }, 'leader cannot serve a state transfer; standing by');
          if (this.state === 'catching_up') this.state = 'waiting';
          return;
        }
        this.logger.warn({ err: String(err) }, 'state transfer failed; retrying');
        await new Promise((r) => setTimeout(r, this.opts.retryBackoffMs));
      }
    }
  }
}
