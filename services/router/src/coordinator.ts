import { KvError, type Logger, type NodeConfig, type ShardEvent, type SlotConfig } from '@shardkv/common';
import type { Candidate, Leadership, MetaStore, PutResult } from './control/meta-store';
import { sameRecord, shardKey, type ShardRecord } from './control/records';
import type { ShardTable } from './control/shard-table';
import { decisionReason, decisions, failovers, type DecisionOutcome } from './metrics';
import { slotConfigFor } from './migration/plan';

/**
 * The coordinator of every shard's configuration: which node leads, which follows, whether the
 * follower is in sync, and the epoch that numbers each such decision. Kafka's in-sync replicas
 * with leader epochs are the model:
 *
 * - A leader commits alone only after the coordinator has taken its follower out of the in-sync
 *   set (epoch + 1); the coordinator promotes a follower only while it is in that set. Those two
 *   decisions are made here, one at a time per shard, and recorded in the control plane by a
 *   conditional write before anyone acts on them, so they exclude each other: a promoted
 *   follower always has every acknowledged write.
 * - Every decision bumps the epoch. Nodes refuse configurations and replication from older
 *   epochs, so a deposed leader (restarted, or resumed after a pause) cannot commit anything.
 * - Every router runs one, but only the router holding the election acts; each of its writes is
 *   fenced by that election, and each command it sends carries its generation, which nodes
 *   check: a deposed coordinator can neither record nor impose a decision.
 */
export type ShardState = ShardRecord;

export interface CoordinatorOptions {
  /** How often every node's /status is read. */
  healthIntervalMs: number;
  /** Deadline of one health check. */
  healthTimeoutMs: number;
  /** Consecutive failed checks after which a node counts as down. */
  healthFailures: number;
  /** 2: a leader without an in-sync follower refuses writes instead of committing alone. */
  minInsync: 1 | 2;
  /**
   * A leader this coordinator has never seen answer is not declared down before this much time
   * into its leadership: at a cold start every process comes up at once, and a leader slower to
   * open its store than three health rounds must not lose its role to its (empty) follower.
   */
  startupGraceMs: number;
}

/** What the coordinator needs from a node: its status, and to take a configuration. */
export interface NodeApi {
  /** The node's /status; the probe names this coordinator's generation (nodes then refuse older ones). */
  status(url: string, timeoutMs: number, generation: number): Promise<NodeReport>;
  configure(url: string, cfg: NodeConfig): Promise<ConfigAnswer>;
}

/** A node's answer to a configuration: what it is now, and (a leader) its last sequenced entry. */
export interface ConfigAnswer {
  role: string;
  epoch: number;
  mapVersion?: number;
  lastSeq?: number;
}

/** The part of a node's /status the coordinator reads. */
export interface NodeReport {
  role: 'leader' | 'follower' | 'standby';
  epoch: number;
  state?: string;
  commitMode?: string;
  seq: number;
  lastSeq?: number;
  /** The slot map version it serves by (0: none yet). */
  mapVersion?: number;
}

interface Health {
  failures: number;
  /** This outage was logged as a warning (once per outage). */
  downLogged: boolean;
  /** Answered at least once during this leadership. */
  seen: boolean;
  /** Has taken a configuration from this leadership (so it refuses the previous coordinator's). */
  announced: boolean;
  /** The highest `seq` (applied, so committed, on a leader) it reported during this leadership; kept while it is down. */
  seenSeq: number;
  report: NodeReport | undefined;
}

/** A node as a new leadership first knows it: nothing seen yet. */
function freshHealth(): Health {
  return { failures: 0, downLogged: false, seen: false, announced: false, seenSeq: 0, report: undefined };
}

/** Pure decisions: the next state of a shard, or the same state when nothing changes. */
export const decide = {
  /** The leader is down: promote an in-sync follower; an out-of-sync one never. */
  leaderLost(s: ShardState): ShardState {
    if (!s.inSync) return s;
    return { ...s, epoch: s.epoch + 1, leader: s.follower, follower: s.leader, inSync: false };
  },
  /**
   * Always a new epoch, even when the record already says out of sync: the reporting leader is
   * waiting for its follower (it was rejoining) and must be told at a new epoch that it may go
   * alone again; the same epoch's "alone" it would ignore (Leader.setMode).
   */
  followerLost(s: ShardState): ShardState {
    return { ...s, epoch: s.epoch + 1, inSync: false };
  },
  followerCaughtUp(s: ShardState): ShardState {
    return s.inSync ? s : { ...s, epoch: s.epoch + 1, inSync: true };
  },
  /** The configuration each node of the shard should hold, as sent by coordinator `generation`. */
  configFor(s: ShardState, url: string, minInsync: 1 | 2, generation: number, coordinatorUrl?: string, slots?: SlotConfig): NodeConfig {
    const leader = url === s.leader;
    return { shard: s.id, epoch: s.epoch, role: leader ? 'leader' : 'follower', peerUrl: leader ? s.follower : s.leader, inSync: s.inSync, minInsync, coordinator: generation, ...(coordinatorUrl === undefined ? {} : { coordinatorUrl }), ...(slots === undefined ? {} : { slots }) };
  },
  /** A running node whose report differs from what it should be needs the configuration pushed. */
  needsPush(s: ShardState, url: string, r: NodeReport, mapVersion = 0): boolean {
    const role = url === s.leader ? 'leader' : 'follower';
    if (r.epoch > s.epoch) return false; // it knows a newer epoch than we do: never push an older one
    if (r.epoch < s.epoch || r.role !== role) return true;
    if ((r.mapVersion ?? 0) < mapVersion) return true;
    if (role === 'leader' && r.state === 'fenced') return true;
    // Only a leader that must start waiting for its follower is told so. One that waits although
    // the record says out of sync is rejoining on purpose (it has asked to count the follower in
    // sync); telling it to go alone again could let it acknowledge writes alone just as that
    // request commits, and the follower be counted in sync without them.
    return role === 'leader' && r.commitMode !== undefined && r.commitMode !== 'sync' && s.inSync;
  },
};

export class Coordinator {
  private readonly health = new Map<string, Health>();
  /** One decision at a time per shard. */
  private readonly locks = new Map<string, Promise<unknown>>();
  private leadership: Leadership | undefined;
  private leadingSinceMs = 0;
  private readonly stopping = new AbortController();

  constructor(
    private readonly table: ShardTable,
    private readonly store: MetaStore,
    private readonly api: NodeApi,
    private readonly opts: CoordinatorOptions,
    private readonly self: Candidate,
    private readonly log: Logger,
  ) {
    for (const s of table.all) for (const url of [s.leader, s.follower]) this.health.set(url, freshHealth());
  }

  /** Campaigns for the election, coordinates while it holds it, and campaigns again when it ends. */
  start(): void {
    void this.run().catch((err: unknown) => {
      if (!this.stopping.signal.aborted) this.log.fatal({ err }, 'coordinator loop failed');
    });
  }

  private async run(): Promise<void> {
    while (!this.stopping.signal.aborted) {
      const leadership = await this.store.campaign(this.self, this.stopping.signal).catch(() => undefined);
      if (leadership === undefined) continue;
      try {
        // The previous coordinator's last decisions may not have reached us by watch yet.
        await this.table.refresh();
      } catch (err) {
        this.log.warn({ err: String(err) }, 'elected, but cannot read the control plane; stepping down');
        await leadership.resign();
        continue;
      }
      this.lead(leadership);
      // Info: being elected is how every router starts coordinating, and nothing needs doing. What
      // may need an operator is a coordinator losing its role (below), or a router dying (its
      // supervisor says so); the nodes' own faults are warned about as they are seen.
      this.log.info({ router: this.self.id, generation: leadership.generation }, 'elected coordinator');
      await this.healthLoop(leadership);
      this.leadership = undefined;
      // A warning only when it was not asked for: a lease lost (control plane unreachable, a
      // pause) or a deposed write. Resigning because this router stops is the end of a clean run.
      const asked = this.stopping.signal.aborted;
      this.log[asked ? 'info' : 'warn']({ router: this.self.id, generation: leadership.generation, ...(asked ? { why: 'router stopping' } : {}) }, 'no longer the coordinator');
    }
  }

  private lead(leadership: Leadership): void {
    this.leadership = leadership;
    this.leadingSinceMs = Date.now();
    for (const h of this.health.values()) Object.assign(h, freshHealth());
  }

  private async healthLoop(leadership: Leadership): Promise<void> {
    while (leadership.valid() && !this.stopping.signal.aborted) {
      await this.checkAll(leadership).catch((err: unknown) => this.log.error({ err }, 'health round failed'));
      await Promise.race([new Promise((r) => setTimeout(r, this.opts.healthIntervalMs)), leadership.ended]);
    }
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.leadership?.resign();
  }

  /** Whether this router coordinates now. */
  get leading(): boolean {
    return this.leadership?.valid() === true;
  }

  /** The election this router holds now, if it holds one (the migration driver acts only under it). */
  get currentLeadership(): Leadership | undefined {
    return this.leadership?.valid() === true ? this.leadership : undefined;
  }

  /**
   * Checks the two nodes of a shard about to be added: both answer, both were started as nodes
   * of that shard, and both are empty (keys of slots it will not get would never be served).
   */
  async probeNew(a: { id: string; leader: string; follower: string }, leadership: Leadership): Promise<void> {
    for (const url of [a.leader, a.follower]) {
      let r: NodeReport & { shard?: string; keys?: number };
      try {
        r = await this.api.status(url, this.opts.healthTimeoutMs * 3, leadership.generation);
      } catch (err) {
        throw new KvError('bad_request', `the new shard's node ${url} does not answer (${err instanceof Error ? err.message : String(err)}): start it first`);
      }
      if (r.shard !== a.id) throw new KvError('bad_request', `${url} is a node of ${r.shard ?? 'no shard'}, not of ${a.id} (start it with SHARD_ID=${a.id})`);
      if ((r.keys ?? 0) > 0) throw new KvError('bad_request', `${url} already holds ${r.keys} keys: a shard being added must start empty`);
    }
  }

  /** The coordinator's view of a node (its last health report), for migration progress. */
  lastReport(url: string): NodeReport | undefined {
    return this.health.get(url)?.report;
  }

  /** A leader's report. Acts only if this router coordinates and the report is from the shard's current epoch. */
  async onEvent(ev: ShardEvent): Promise<NodeConfig> {
    const leadership = this.requireLeadership();
    return this.locked(ev.shard, async () => {
      const s = this.table.state(ev.shard);
      // A fenced node asks what it is now. It is named by its peer: a node fenced by a report
      // answered late may still be the leader.
      if (ev.event === 'fenced') return this.configFor(s, ev.peer === s.leader ? s.follower : ev.peer === s.follower ? s.leader : s.follower, leadership);
      if (ev.epoch !== s.epoch) throw new KvError('stale_epoch', `shard ${s.id} is at epoch ${s.epoch}, the report is from epoch ${ev.epoch}`);
      const next = ev.event === 'follower_lost' ? decide.followerLost(s) : decide.followerCaughtUp(s);
      await this.commit(leadership, s, next, ev.event);
      return this.configFor(next, next.leader, leadership);
    });
  }

  /** A planned switch (admin), or the unsafe promotion of an out-of-sync follower when `unsafe`. */
  async failover(id: string, unsafe = false): Promise<ShardState> {
    const leadership = this.requireLeadership();
    return this.locked(id, async () => {
      const s = this.table.state(id);
      if (!s.inSync && !unsafe) throw new KvError('no_replica', `the follower of ${id} is not in sync: promoting it could lose acknowledged writes (add unsafe=true to do it anyway)`);
      const next = { ...s, epoch: s.epoch + 1, leader: s.follower, follower: s.leader, inSync: false };
      await this.commit(leadership, s, next, unsafe ? 'unsafe failover (admin)' : 'failover (admin)');
      // The old leader first (best effort): told at once, it stops serving before the new one starts.
      await this.push(leadership, next, next.follower);
      await this.push(leadership, next, next.leader);
      return next;
    });
  }

  requireLeadership(): Leadership {
    const l = this.leadership;
    if (l !== undefined && l.valid()) return l;
    const c = this.table.coordinator;
    const other = c !== undefined && c.id !== this.self.id ? c : undefined;
    const why = other === undefined ? 'no router is the coordinator right now (an election is under way, or the control plane is unreachable); retry' : `this router is not the coordinator; ${other.id} at ${other.url} is`;
    throw new KvError('not_coordinator', why, { coordinator: other?.url ?? null });
  }

  private configFor(s: ShardState, url: string, leadership: Leadership): NodeConfig {
    return decide.configFor(s, url, this.opts.minInsync, leadership.generation, this.self.url, slotConfigFor(this.table.map, s.id));
  }

  private async checkAll(leadership: Leadership): Promise<void> {
    this.trackNodes();
    await Promise.all([...this.health.keys()].map((url) => this.check(url, leadership.generation)));
    await Promise.all(this.table.all.map((s) => this.locked(s.id, () => this.reconcile(leadership, s.id))));
  }

  /** Health is kept for the nodes of every shard in the map: shards come and go with migrations. */
  private trackNodes(): void {
    const urls = new Set(this.table.all.flatMap((s) => [s.leader, s.follower]));
    for (const url of urls) if (!this.health.has(url)) this.health.set(url, freshHealth());
    for (const url of this.health.keys()) if (!urls.has(url)) this.health.delete(url);
  }

  private async check(url: string, generation: number): Promise<void> {
    const h = this.health.get(url)!;
    try {
      h.report = await this.api.status(url, this.opts.healthTimeoutMs, generation);
      h.failures = 0;
      h.downLogged = false;
      h.seen = true;
      h.seenSeq = Math.max(h.seenSeq, h.report.seq);
    } catch (err) {
      h.failures += 1;
      h.report = undefined;
      // Logged once per outage, when it starts to count: a node down for minutes is one line.
      // A node never seen to answer, early in this leadership, is starting (a cold start brings
      // every process up at once), not down: it is warned about once the start-up grace is over.
      if (h.failures >= this.opts.healthFailures && !h.downLogged && this.outageCounts(h)) {
        h.downLogged = true;
        this.log.warn({ node: url, failures: h.failures, seenBefore: h.seen, err: err instanceof Error ? err.message : String(err) }, 'node not answering health checks');
      }
    }
  }

  /** Whether a node's failed checks count: it answered before in this leadership, or the start-up grace is over. */
  private outageCounts(h: Health): boolean {
    return h.seen || Date.now() - this.leadingSinceMs >= this.opts.startupGraceMs;
  }

  private leaderDown(url: string): boolean {
    const h = this.health.get(url)!;
    return h.failures >= this.opts.healthFailures && this.outageCounts(h);
  }

  /**
   * A follower that may be promoted: it answers, and holds at least every entry its leader was
   * seen to have applied (a leader applies only what its in-sync follower has; a follower that
   * reports less lost its disk, and promoting it would lose acknowledged writes).
   */
  private promotable(s: ShardState): boolean {
    const f = this.health.get(s.follower)!;
    return f.failures === 0 && f.report !== undefined && f.report.seq >= this.health.get(s.leader)!.seenSeq;
  }

  /** Promotes when the leader is down, then pushes configurations that nodes are missing. */
  private async reconcile(leadership: Leadership, id: string): Promise<void> {
    let s = this.table.state(id);
    if (this.leaderDown(s.leader) && this.promotable(s)) {
      const next = decide.leaderLost(s);
      if (next !== s && (await this.commit(leadership, s, next, 'leader down: promoting its in-sync follower').then(() => true, () => false))) s = next;
    }
    // A new coordinator also sends every node its current configuration once: from then on the
    // node refuses the previous coordinator's commands, should that one still be talking.
    // The follower first: a leader configured with an in-sync follower at once asks it for what
    // it lacks, and a follower still in standby (a restart) would refuse; the leader would have
    // to wait for it. (The nodes check epochs themselves: the order is for speed, not safety.)
    for (const url of [s.follower, s.leader]) {
      const h = this.health.get(url)!;
      if (h.report !== undefined && (!h.announced || decide.needsPush(s, url, h.report, this.table.map.slots === undefined ? 0 : this.table.map.version))) await this.push(leadership, s, url);
    }
  }

  private async push(leadership: Leadership, s: ShardState, url: string): Promise<ConfigAnswer | undefined> {
    try {
      return await this.pushOrThrow(leadership, s, url);
    } catch (err) {
      this.log.warn({ shard: s.id, node: url, err: err instanceof Error ? err.message : String(err) }, 'configuration push failed; retrying next round');
      return undefined;
    }
  }

  /** A configuration push whose failure the caller handles (a migration's freeze must reach the leader). */
  async pushOrThrow(leadership: Leadership, s: ShardState, url: string): Promise<ConfigAnswer> {
    // Checked before every command, on our own clock: a coordinator whose lease may have run
    // out says nothing more (the node would refuse it anyway once it has heard the new one).
    if (!leadership.valid()) throw new KvError('coordinator_unavailable', 'this router is no longer the coordinator');
    const answer = await this.api.configure(url, this.configFor(s, url, leadership));
    const h = this.health.get(url);
    if (h !== undefined) h.announced = true;
    return answer;
  }

  /**
   * Records a decision in the control plane before anyone acts on it: a write conditional on the
   * record being the one we decided from, fenced by our election. If it fails, or its outcome is
   * unknown (a timeout may have committed), nothing is acted on: the table is re-read and the
   * next round decides again from what is really stored.
   */
  private async commit(leadership: Leadership, before: ShardState, next: ShardState, why: string): Promise<void> {
    if (next === before) return;
    let res: PutResult | undefined;
    let failure = '';
    try {
      res = await this.store.put(shardKey(next.id), JSON.stringify(next), this.table.revisionOf(next.id), leadership);
    } catch (err) {
      failure = err instanceof Error ? err.message : String(err);
    }
    if (res?.ok === true) this.table.apply(next, res.revision);
    else if (await this.landedAnyway(next)) res = { ok: true, revision: this.table.revisionOf(next.id) };
    const reason = decisionReason(why);
    const outcome: DecisionOutcome = res?.ok === true ? 'committed' : res === undefined ? 'unknown' : 'refused';
    decisions.inc({ reason, outcome });
    if (res?.ok !== true) {
      if (res?.reason === 'deposed') void leadership.resign();
      // A write that threw may still commit later (etcd may apply it after we gave up).
      if (res === undefined) throw new KvError('decision_unknown', `the control plane did not confirm the decision for ${next.id} (${why}): ${failure}; it may or may not take effect`);
      throw new KvError('coordinator_unavailable', `the decision for ${next.id} (${why}) was not recorded: ${res.reason === 'deposed' ? 'this router is no longer the coordinator' : 'the shard record changed meanwhile'}`);
    }
    if (next.leader !== before.leader) failovers.inc({ shard: next.id, reason });
    // A warning means a fault was found (a node lost, data at risk); recovery and an operator's safe failover are news, not alarms.
    const level = reason === 'follower_caught_up' || reason === 'admin_failover' ? 'info' : 'warn';
    this.log[level]({ shard: next.id, epoch: next.epoch, leader: next.leader, follower: next.follower, inSync: next.inSync, why }, 'shard configuration changed');
  }

  /**
   * After a write that failed or threw: whether the store holds our decision anyway (a timed-out
   * attempt that committed, then a retry that lost its comparison to it).
   */
  private async landedAnyway(next: ShardState): Promise<boolean> {
    try {
      await this.table.refresh();
    } catch {
      return false;
    }
    return sameRecord(this.table.state(next.id), next);
  }

  /** Runs `fn` holding the decision locks of several shards (taken in id order, so two callers cannot deadlock). */
  lockedAll<T>(ids: readonly string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(ids)].sort();
    const nest = (i: number): Promise<T> => (i === sorted.length ? fn() : this.locked(sorted[i]!, () => nest(i + 1)));
    return nest(0);
  }

  private locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.locks.get(id) ?? Promise.resolve()).then(fn);
    this.locks.set(id, run.catch(() => {}));
    return run;
  }
}
