import { existsSync, mkdirSync, openSync, fsyncSync, closeSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { KvError, type Logger, type NodeConfig, type ShardEvent } from '@shardkv/common';
import { z } from 'zod';
import type { ShardAddress } from './config';

/**
 * The router is the coordinator of every shard's configuration: which node leads, which
 * follows, whether the follower is in sync, and the epoch that numbers each such decision. Kafka's
 * in-sync replicas with leader epochs are the model:
 *
 * - A leader commits alone only after the coordinator has taken its follower out of the in-sync
 *   set (epoch + 1); the coordinator promotes a follower only while it is in that set. Those two
 *   decisions are made here, one at a time per shard and persisted before anyone acts on them,
 *   so they exclude each other: a promoted follower always has every acknowledged write.
 * - Every decision bumps the epoch. Nodes refuse configurations and replication from older
 *   epochs, so a deposed leader (restarted, or resumed after a pause) cannot commit anything.
 */
export interface ShardState {
  id: string;
  epoch: number;
  leader: string;
  follower: string;
  inSync: boolean;
}

/** The file: per shard, its epoch, which configured node leads (0: the first of SHARDS, 1: the second) and the in-sync flag. */
const savedStateSchema = z.object({
  id: z.string(),
  epoch: z.number().int().positive(),
  leaderIndex: z.union([z.literal(0), z.literal(1)]),
  inSync: z.boolean(),
});
type SavedState = z.infer<typeof savedStateSchema>;

export interface CoordinatorOptions {
  /** How often every node's /status is read. */
  healthIntervalMs: number;
  /** Deadline of one health check. */
  healthTimeoutMs: number;
  /** Consecutive failed checks after which a node counts as down. */
  healthFailures: number;
  /** 2: a leader without an in-sync follower refuses writes instead of committing alone. */
  minInsync: 1 | 2;
}

/** What the coordinator needs from a node: its status, and to take a configuration. */
export interface NodeApi {
  status(url: string, timeoutMs: number): Promise<NodeReport>;
  configure(url: string, cfg: NodeConfig): Promise<void>;
}

/** The part of a node's /status the coordinator reads. */
export interface NodeReport {
  role: 'leader' | 'follower' | 'standby';
  epoch: number;
  state?: string;
  commitMode?: string;
  seq: number;
  lastSeq?: number;
}

interface Health {
  failures: number;
  report: NodeReport | undefined;
}

/** Pure decisions: the next state of a shard, or the same state when nothing changes. */
export const decide = {
  /** The leader is down: promote an in-sync follower; an out-of-sync one never. */
  leaderLost(s: ShardState): ShardState {
    if (!s.inSync) return s;
    return { ...s, epoch: s.epoch + 1, leader: s.follower, follower: s.leader, inSync: false };
  },
  followerLost(s: ShardState): ShardState {
    return s.inSync ? { ...s, epoch: s.epoch + 1, inSync: false } : s;
  },
  followerCaughtUp(s: ShardState): ShardState {
    return s.inSync ? s : { ...s, epoch: s.epoch + 1, inSync: true };
  },
  /** The configuration each node of the shard should hold. */
  configFor(s: ShardState, url: string, minInsync: 1 | 2): NodeConfig {
    const leader = url === s.leader;
    return { shard: s.id, epoch: s.epoch, role: leader ? 'leader' : 'follower', peerUrl: leader ? s.follower : s.leader, inSync: s.inSync, minInsync };
  },
  /** A running node whose report differs from what it should be needs the configuration pushed. */
  needsPush(s: ShardState, url: string, r: NodeReport): boolean {
    const role = url === s.leader ? 'leader' : 'follower';
    if (r.epoch > s.epoch) return false; // it knows a newer epoch than we do: never push an older one
    if (r.epoch < s.epoch || r.role !== role) return true;
    if (role === 'leader' && r.state === 'fenced') return true;
    return role === 'leader' && r.commitMode !== undefined && (r.commitMode === 'sync') !== s.inSync;
  },
};

export class Coordinator {
  private readonly shards = new Map<string, ShardState>();
  private readonly health = new Map<string, Health>();
  /** One decision at a time per shard. */
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly addresses: Map<string, ShardAddress>;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly listeners: Array<(before: ShardState, after: ShardState) => void> = [];

  constructor(
    addresses: readonly ShardAddress[],
    private readonly file: string,
    private readonly api: NodeApi,
    private readonly opts: CoordinatorOptions,
    private readonly log: Logger,
  ) {
    const saved = loadStates(file);
    this.addresses = new Map(addresses.map((a) => [a.id, a]));
    for (const a of addresses) {
      // A fresh cluster: the configured leader leads, both nodes empty, so the follower is in sync.
      const kept = saved.get(a.id);
      const swapped = kept?.leaderIndex === 1;
      const s = kept === undefined ? { id: a.id, epoch: 1, leader: a.leader, follower: a.follower, inSync: true } : { id: a.id, epoch: kept.epoch, leader: swapped ? a.follower : a.leader, follower: swapped ? a.leader : a.follower, inSync: kept.inSync };
      this.shards.set(a.id, s);
      for (const url of [a.leader, a.follower]) this.health.set(url, { failures: 0, report: undefined });
    }
    this.persist();
  }

  /** Called after every persisted change of a shard's configuration. */
  onChange(listener: (before: ShardState, after: ShardState) => void): void {
    this.listeners.push(listener);
  }

  start(): void {
    const tick = async () => {
      await this.checkAll().catch((err: unknown) => this.log.error({ err }, 'health round failed'));
      if (!this.stopped) this.timer = setTimeout(tick, this.opts.healthIntervalMs);
    };
    void tick();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  state(id: string): ShardState {
    const s = this.shards.get(id);
    if (s === undefined) throw new KvError('bad_request', `unknown shard ${id}`);
    return s;
  }

  get all(): ShardState[] {
    return [...this.shards.values()];
  }

  /** A leader's report. Acts only if it comes from the shard's current epoch. */
  onEvent(ev: ShardEvent): Promise<NodeConfig> {
    return this.locked(ev.shard, async () => {
      const s = this.state(ev.shard);
      // A replaced leader asks what it is now: the follower of the current configuration.
      if (ev.event === 'fenced') return decide.configFor(s, s.follower, this.opts.minInsync);
      if (ev.epoch !== s.epoch) throw new KvError('stale_epoch', `shard ${s.id} is at epoch ${s.epoch}, the report is from epoch ${ev.epoch}`);
      const next = ev.event === 'follower_lost' ? decide.followerLost(s) : decide.followerCaughtUp(s);
      this.commit(s, next, ev.event);
      return decide.configFor(next, next.leader, this.opts.minInsync);
    });
  }

  /** A planned switch (admin), or the unsafe promotion of an out-of-sync follower when `unsafe`. */
  failover(id: string, unsafe = false): Promise<ShardState> {
    return this.locked(id, async () => {
      const s = this.state(id);
      if (!s.inSync && !unsafe) throw new KvError('no_replica', `the follower of ${id} is not in sync: promoting it could lose acknowledged writes (add unsafe=true to do it anyway)`);
      const next = { ...s, epoch: s.epoch + 1, leader: s.follower, follower: s.leader, inSync: false };
      this.commit(s, next, unsafe ? 'unsafe failover (admin)' : 'failover (admin)');
      await this.push(next, next.leader);
      return next;
    });
  }

  private async checkAll(): Promise<void> {
    await Promise.all([...this.health.keys()].map((url) => this.check(url)));
    await Promise.all(this.all.map((s) => this.locked(s.id, () => this.reconcile(s.id))));
  }

  private async check(url: string): Promise<void> {
    const h = this.health.get(url)!;
    try {
      h.report = await this.api.status(url, this.opts.healthTimeoutMs);
      h.failures = 0;
    } catch {
      h.failures += 1;
      h.report = undefined;
    }
  }

  /** Promotes when the leader is down, then pushes configurations that nodes are missing. */
  private async reconcile(id: string): Promise<void> {
    let s = this.state(id);
    if (this.health.get(s.leader)!.failures >= this.opts.healthFailures && this.health.get(s.follower)!.failures === 0) {
      const next = decide.leaderLost(s);
      if (next !== s) {
        this.commit(s, next, 'leader down: promoting its in-sync follower');
        s = next;
      }
    }
    for (const url of [s.leader, s.follower]) {
      const r = this.health.get(url)!.report;
      if (r !== undefined && decide.needsPush(s, url, r)) await this.push(s, url);
    }
  }

  private async push(s: ShardState, url: string): Promise<void> {
    try {
      await this.api.configure(url, decide.configFor(s, url, this.opts.minInsync));
    } catch (err) {
      this.log.warn({ shard: s.id, node: url, err: err instanceof Error ? err.message : String(err) }, 'configuration push failed; retrying next round');
    }
  }

  /**
   * Records a decision durably before anyone acts on it. The write is synchronous on purpose:
   * decisions are rare (a failover, a follower leaving or rejoining), and a synchronous save keeps
   * the in-memory update and the file in one step, so two shards deciding at once cannot
   * interleave their saves and lose one.
   */
  private commit(before: ShardState, next: ShardState, why: string): void {
    if (next === before) return;
    this.shards.set(next.id, next);
    this.persist();
    for (const l of this.listeners) l(before, next);
    this.log.warn({ shard: next.id, epoch: next.epoch, leader: next.leader, follower: next.follower, inSync: next.inSync, why }, 'shard configuration changed');
  }

  /** Saved by position (which of the shard's two configured nodes leads), so addresses may change. */
  private persist(): void {
    saveStates(this.file, this.all.map((s) => ({ id: s.id, epoch: s.epoch, leaderIndex: s.leader === this.addresses.get(s.id)!.leader ? 0 : 1, inSync: s.inSync })));
  }

  private locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.locks.get(id) ?? Promise.resolve()).then(fn);
    this.locks.set(id, run.catch(() => {}));
    return run;
  }
}

function loadStates(file: string): Map<string, SavedState> {
  if (!existsSync(file)) return new Map();
  const list = z.array(savedStateSchema).parse(JSON.parse(readFileSync(file, 'utf8')));
  return new Map(list.map((s) => [s.id, s]));
}

/** Write to a temp file, fsync, rename over, fsync the directory: the file is old or new, never torn. */
function saveStates(file: string, states: SavedState[]): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = join(dirname(file), `.${Date.now()}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(states, null, 2)}\n`);
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, file);
  const dir = openSync(dirname(file), 'r');
  fsyncSync(dir);
  closeSync(dir);
}
