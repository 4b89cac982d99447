import { performance } from 'node:perf_hooks';
import { KvError, type Logger, type NodeConfig, type ShardEvent } from '@shardkv/common';
import { Follower, type FollowerOptions } from './replication/follower';
import type { Command } from './replication/commands';
import { Leader, type CommandResult, type CommitMode, type LeaderEvents, type LeaderOptions, type WriteResult } from './replication/leader';
import type { PeerTransport, ReplicateReply, ReplicateRequest } from './replication/messages';
import { Ownership, type Access } from './migration/ownership';
import type { KvStore } from './store';

export type NodeRole = { kind: 'leader'; leader: Leader } | { kind: 'follower'; follower: Follower } | { kind: 'standby' };

/** How a node reaches the coordinator; absent when the cluster runs without one (fixed roles). */
export interface CoordinatorClient {
  /** Reports a leader's event; resolves with the node's new configuration, rejects if refused or unreachable. */
  report(event: ShardEvent): Promise<NodeConfig>;
  /** The coordinator that sent the latest configuration: reports go there first. */
  prefer?(url: string | undefined): void;
}

export interface ShardNodeOptions {
  shardId: string;
  nodeName: string;
  leader: LeaderOptions;
  follower: FollowerOptions;
  /** A reported event is not reported again for the same epoch sooner than this. */
  reportRetryMs: number;
  /** See READ_LEASE_MS: a promoted follower waits this long after its last acknowledgement to the old leader. */
  readLeaseMs: number;
}

/**
 * One shard node: its store, and the role it plays now. Roles change only through `configure`
 * (a configuration from the coordinator, or the fixed role from the environment at start-up),
 * one at a time. Every replication message passes `onReplicate`, the one place that checks the
 * epoch: a message from an older epoch is refused (its sender was replaced), so a deposed leader
 * can never get an entry acknowledged.
 */
export class ShardNode {
  private current: NodeRole = { kind: 'standby' };
  private config: NodeConfig | undefined;
  private peer: PeerTransport | undefined;
  private configuring: Promise<void> = Promise.resolve();
  /** The last report of each event, so that a failure seen on every heartbeat is reported once per retry period. */
  private readonly reported = new Map<ShardEvent['event'], { epoch: number; at: number }>();
  /**
   * No leader role starts serving before this (performance.now()): a lease after the last
   * acknowledgement this node sent to a leader, and after its own start (it may have acknowledged
   * one just before a restart).
   */
  private serveNotBeforeMs: number;
  /** The slots this shard serves; undefined until configured with a slot map (then every key is served). */
  private owned: Ownership | undefined;

  constructor(
    private readonly store: KvStore,
    private readonly opts: ShardNodeOptions,
    private readonly transport: (url: string) => PeerTransport,
    private readonly coordinator: CoordinatorClient | undefined,
    private readonly logger: Logger,
  ) {
    this.serveNotBeforeMs = performance.now() + opts.readLeaseMs;
  }

  get role(): NodeRole {
    return this.current;
  }

  get epoch(): number {
    return this.store.epoch;
  }

  get peerUrl(): string | undefined {
    return this.config?.peerUrl;
  }

  /**
   * Without a coordinator the node plays its fixed role. With one, a node that has been
   * configured before (epoch > 0) waits in standby for its current role: the role it had may
   * have been given away while it was down.
   */
  async start(fixed: { role: 'leader' | 'follower'; peerUrl: string }): Promise<void> {
    if (this.coordinator !== undefined && this.store.epoch > 0) {
      this.logger.info({ epoch: this.store.epoch }, 'standby: waiting for the coordinator to configure this node');
      return;
    }
    await this.configure({ shard: this.opts.shardId, epoch: Math.max(1, this.store.epoch), role: fixed.role, peerUrl: fixed.peerUrl, inSync: true, minInsync: 1, coordinator: 0 });
  }

  /** Applies a configuration, after any in progress. A stale one is refused. */
  configure(cfg: NodeConfig): Promise<void> {
    const run = this.configuring.then(() => this.apply(cfg));
    this.configuring = run.catch(() => {});
    return run;
  }

  private async apply(cfg: NodeConfig): Promise<void> {
    if (cfg.shard !== this.opts.shardId) throw new KvError('wrong_shard', `configuration for shard ${cfg.shard} sent to a node of ${this.opts.shardId}`);
    // A deposed coordinator may still be sending (resumed after a pause): once a newer one has
    // configured this node, the old one is not obeyed, whatever epoch it names.
    const generation = this.store.coordinatorGeneration;
    if (cfg.coordinator < generation) throw new KvError('stale_coordinator', `configuration from coordinator generation ${cfg.coordinator}; this node obeys generation ${generation} or newer`);
    if (cfg.epoch < this.store.epoch) throw new KvError('stale_epoch', `configuration epoch ${cfg.epoch} is older than this node's ${this.store.epoch}`);
    await this.store.setCoordinatorGeneration(cfg.coordinator);
    this.coordinator?.prefer?.(cfg.coordinatorUrl);
    // Before any role change: a promoted leader must never serve a slot it lost or one frozen.
    if (cfg.slots !== undefined && (this.owned === undefined || cfg.slots.mapVersion >= this.owned.mapVersion)) this.owned = new Ownership(this.opts.shardId, cfg.slots);
    if (cfg.epoch > this.store.epoch) await this.store.setEpoch(cfg.epoch);
    const now = this.current;
    // A fenced leader is replaced even by a configuration that names the same role.
    const sameRole = this.config !== undefined && now.kind === cfg.role && this.config.peerUrl === cfg.peerUrl && !(now.kind === 'leader' && now.leader.fenced);
    this.config = cfg;
    if (sameRole && now.kind === 'leader') return now.leader.setMode(commitMode(cfg), cfg.epoch);
    if (sameRole) return;
    await this.become(cfg);
  }

  private async become(cfg: NodeConfig): Promise<void> {
    await this.stopRole();
    this.peer = this.transport(cfg.peerUrl);
    this.logger.info({ role: cfg.role, epoch: cfg.epoch, peer: cfg.peerUrl, inSync: cfg.inSync }, `now ${cfg.role}`);
    if (cfg.role === 'follower') {
      this.current = { kind: 'follower', follower: new Follower(this.store, this.peer, this.opts.follower, this.logger.child({ component: 'follower' })) };
      return;
    }
    // A leader whose follower is in sync asks it first for anything it lacks; a promoted one has it all.
    const start = { epoch: cfg.epoch, mode: commitMode(cfg), reconcile: cfg.inSync, serveNotBeforeMs: this.serveNotBeforeMs };
    const leader = new Leader(this.store, this.peer, this.opts.leader, this.logger.child({ component: 'leader' }), start, this.leaderEvents());
    this.current = { kind: 'leader', leader };
    leader.start().catch((err: unknown) => {
      this.logger.fatal({ err }, 'replication loop failed');
      process.exit(1);
    });
  }

  private async stopRole(): Promise<void> {
    const was = this.current;
    this.current = { kind: 'standby' };
    if (was.kind === 'leader') await was.leader.stop();
    if (was.kind === 'follower') await was.follower.stop();
    await this.peer?.close();
    this.peer = undefined;
  }

  private leaderEvents(): LeaderEvents {
    return {
      followerLost: (epoch) => this.report('follower_lost', epoch),
      followerCaughtUp: (epoch) => this.report('follower_caught_up', epoch),
      fenced: (epoch) => this.report('fenced', epoch),
    };
  }

  /** Asks the coordinator, at most once per event and epoch per `reportRetryMs`, and applies its answer. */
  private report(event: ShardEvent['event'], epoch: number): void {
    if (this.coordinator === undefined) return;
    const last = this.reported.get(event);
    if (last !== undefined && last.epoch === epoch && Date.now() - last.at < this.opts.reportRetryMs) return;
    this.reported.set(event, { epoch, at: Date.now() });
    this.coordinator
      .report({ shard: this.opts.shardId, epoch, event, peer: this.config?.peerUrl })
      .then((cfg) => this.configure(cfg))
      .catch((err: unknown) => {
        this.logger.warn({ event, epoch, err: err instanceof Error ? err.message : String(err) }, 'coordinator did not act on the report');
        if (err instanceof KvError && err.code === 'stale_epoch' && this.current.kind === 'leader') this.current.leader.fence(err.message);
      });
  }

  /**
   * A coordinator's health probe names its generation: from then on an older coordinator is not
   * obeyed, even before the new one has had anything to configure here.
   */
  async observeCoordinator(generation: number): Promise<void> {
    await this.store.setCoordinatorGeneration(generation);
  }

  /** The single entry point of replication messages: the epoch check, then the follower. */
  async onReplicate(req: ReplicateRequest): Promise<ReplicateReply> {
    if (req.epoch < this.store.epoch) throw new KvError('stale_epoch', `replication from epoch ${req.epoch}; this node is at epoch ${this.store.epoch}`);
    const now = this.current;
    if (now.kind !== 'follower') throw new KvError('not_follower', `this node is ${now.kind === 'leader' ? 'a leader' : 'in standby'}`);
    // A leader of a newer epoch than we were told of: the coordinator made it; its push to us is late.
    if (req.epoch > this.store.epoch) await this.store.setEpoch(req.epoch);
    const reply = await now.follower.onReplicate(req);
    this.serveNotBeforeMs = Math.max(this.serveNotBeforeMs, performance.now() + this.opts.readLeaseMs);
    return reply;
  }

  /**
   * The node is the final fence of routing: a router that routed a request by an older epoch
   * than this node knows has an old map, and is refused (nothing done) so that it re-reads.
   */
  checkRoutedEpoch(epoch: number): void {
    if (epoch >= this.store.epoch) return;
    const leader = this.current.kind === 'leader' ? 'self' : this.config?.peerUrl;
    throw new KvError('stale_epoch', `routed with epoch ${epoch}; this node is at epoch ${this.store.epoch}: re-read the shard map`, { epoch: this.store.epoch, leader: leader ?? null });
  }

  /** The slot map version this node serves by (0: none yet). */
  get mapVersion(): number {
    return this.owned?.mapVersion ?? 0;
  }

  get ownership(): Ownership | undefined {
    return this.owned;
  }

  /** Throws `wrong_shard` or `migrating` when this shard may not serve `key` now (see Ownership). */
  checkKey(key: string, access: Access): void {
    const refusal = this.owned?.refusal(key, access);
    if (refusal !== undefined) throw refusal;
  }

  get(key: string): string | undefined {
    const now = this.current;
    if (now.kind === 'leader') return now.leader.get(key);
    if (now.kind === 'follower') return now.follower.get(key);
    throw new KvError('not_ready', `${this.opts.nodeName} is in standby (not configured yet)`);
  }

  write(cmd: Command): Promise<WriteResult> {
    return this.assertLeader().write(cmd);
  }

  /** Commands decided and sequenced together, in order; all commit or the whole batch fails (see Leader.writeBatch). */
  writeBatch(commands: readonly Command[]): Promise<CommandResult[]> {
    return this.assertLeader().writeBatch(commands);
  }

  /**
   * The leader role serving now, for a request routed by `routedEpoch` (the x-shardkv-epoch
   * header; '' when absent): refused with stale_epoch when this node knows a newer epoch, with
   * not_leader or not_ready when it is not a serving leader.
   */
  servingLeader(routedEpoch: string): Leader {
    if (routedEpoch !== '') this.checkRoutedEpoch(Number(routedEpoch) || 0);
    const leader = this.assertLeader();
    if (!leader.serving) throw new KvError('not_ready', `leader is ${leader.status.state}`);
    return leader;
  }

  /** The leader role, or the error a client should get: 409 not_leader (naming it) or 503 not_ready. */
  assertLeader(): Leader {
    const now = this.current;
    if (now.kind === 'leader') return now.leader;
    if (now.kind === 'follower') {
      throw new KvError('not_leader', `this node is a follower; write to the leader at ${this.config?.peerUrl}`, { leader: this.config?.peerUrl });
    }
    throw new KvError('not_ready', `${this.opts.nodeName} is in standby (not configured yet)`);
  }

  /** Healthy: a serving leader, or a follower whose state may be transferred (not mid catch-up). */
  get healthy(): boolean {
    const now = this.current;
    if (now.kind === 'leader') return now.leader.serving;
    if (now.kind === 'follower') return now.follower.transferable;
    return false;
  }

  async stop(): Promise<void> {
    await this.configuring;
    await this.stopRole();
  }
}

function commitMode(cfg: NodeConfig): CommitMode {
  if (cfg.inSync) return 'sync';
  return cfg.minInsync >= 2 ? 'refuse' : 'alone';
}
