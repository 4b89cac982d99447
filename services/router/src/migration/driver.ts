import { KvError, type Logger, type MigrationView } from '@shardkv/common';
import { randomUUID } from 'node:crypto';
import type { Leadership, MetaStore } from '../control/meta-store';
import { initialRecord, shardKey, type Migration, type ShardAddress, type ShardMap } from '../control/records';
import type { ShardTable } from '../control/shard-table';
import type { Coordinator } from '../coordinator';
import type { Nodes } from '../shards';
import { copySlots, purgeSlots, type Endpoint, type Target } from './copy';
import { writeMap } from './map-writer';
import { migrationPlan, slotCount } from './plan';

export interface MigrationLimits {
  /** The longest a slot stays frozen: past it the cutover is abandoned (the slots thaw) and tried again. */
  freezeMaxMs: number;
  /** A tail round of at most this many entries means the target is close enough behind to freeze. */
  cutoverLagEntriesMax: number;
  /** Tail rounds before the cutover is tried anyway (a source that never goes quiet). */
  tailRoundsMax: number;
  /** Wait after a failed step before the migration is driven again. */
  retryBackoffMs: number;
  /** How often a coordinator looks for a migration to drive. */
  pollMs: number;
  /**
   * A failpoint (etcd's gofail idea) for the fault harness: the cutover waits this long with the
   * slots frozen, so a test can kill the coordinator inside that window. 0 (the default) in use.
   */
  failpointFrozenPauseMs: number;
}

interface Progress {
  keysCopied: number;
  entriesTailed: number;
  lagEntries: number | null;
  phase: string;
}

/**
 * Drives the migration stored in the shard map, on the router that coordinates (see DESIGN.md,
 * "Resharding"). Its whole state is the map: a coordinator that takes over finds the migration
 * there and drives it on — a copy is started again from the snapshot (it is cheap next to
 * correctness: the target first purges what an earlier copy left), a freeze it did not start is
 * thawed first, a cleanup is finished. Each step changes the map with one conditional write.
 */
export class MigrationDriver {
  private progress: Progress | undefined;
  /** The copy under way into each target (its id was named by the purge that started it). */
  private readonly targets = new Map<string, Target>();
  /** Keys the sources have purged so far, per migration (its cleanup may take several attempts). */
  private readonly purged = new Map<string, number>();
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly table: ShardTable,
    private readonly store: MetaStore,
    private readonly nodes: Nodes,
    private readonly coordinator: Coordinator,
    private readonly limits: MigrationLimits,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
  }

  /** `POST /admin/shards`: records the new shard and the migration of its slots; the driver does the rest. */
  async add(a: ShardAddress): Promise<MigrationView> {
    const leadership = this.coordinator.requireLeadership();
    const before = this.table.map;
    const next = migrationPlan.add(before, a, Date.now());
    await this.coordinator.probeNew(a, leadership);
    await this.writeRecord(a, leadership);
    await writeMap(this.store, this.table, leadership, before, next, `add ${a.id}`, this.log);
    return this.view()!;
  }

  /** `DELETE /admin/shards/<id>`: the migration of its slots to the others. */
  async remove(id: string): Promise<MigrationView> {
    const leadership = this.coordinator.requireLeadership();
    const before = this.table.map;
    await writeMap(this.store, this.table, leadership, before, migrationPlan.remove(before, id, Date.now()), `remove ${id}`, this.log);
    return this.view()!;
  }

  /** The migration in progress, as /cluster/map shows it (progress only here, on its driver). */
  view(): MigrationView | null {
    const m = this.table.map.migration;
    if (m === undefined) return null;
    const moves = m.moves.map((mv) => ({ source: mv.source, target: mv.target, slots: slotCount(mv.slots) }));
    return { id: m.id, kind: m.kind, shard: m.shard, state: m.state, slotsMoving: moves.reduce((n, mv) => n + mv.slots, 0), moves, startedAt: new Date(m.startedAtMs).toISOString(), progress: this.progress === undefined ? null : { ...this.progress } };
  }

  private async run(): Promise<void> {
    while (!this.stopping.signal.aborted) {
      const leadership = this.coordinator.currentLeadership;
      const m = this.table.map.migration;
      if (leadership === undefined || m === undefined) {
        this.progress = undefined;
        await this.sleep(this.limits.pollMs);
        continue;
      }
      try {
        await this.drive(leadership, m);
      } catch (err) {
        if (this.stopping.signal.aborted) return;
        this.log.warn({ migration: m.id, state: this.table.map.migration?.state ?? null, err: err instanceof Error ? err.message : String(err) }, 'migration step failed; driving it again shortly');
        await this.sleep(this.limits.retryBackoffMs);
      }
    }
  }

  private async drive(leadership: Leadership, m: Migration): Promise<void> {
    if (m.state === 'frozen') return this.thaw(leadership, 'found frozen (a cutover that did not finish)');
    if (m.state === 'copying') {
      await this.announce(leadership, m);
      const seqs = await this.copyAll(m);
      await this.cutover(leadership, m, seqs);
    }
    if (this.table.map.migration?.state === 'cleanup') await this.cleanup(leadership, this.table.map.migration);
  }

  /** Every node of the shards involved takes the map first: a target imports only slots it was told are incoming. */
  private async announce(leadership: Leadership, m: Migration): Promise<void> {
    for (const id of new Set(m.moves.map((mv) => mv.target))) {
      const s = this.table.state(id);
      const answer = await this.coordinator.pushOrThrow(leadership, s, s.leader);
      if (answer.mapVersion !== this.table.map.version) throw new KvError('not_ready', `${s.leader} did not take shard map version ${this.table.map.version}`);
    }
    await this.pushShards(leadership, [...new Set(m.moves.flatMap((mv) => [mv.source, mv.target]))]);
  }

  /** Every move copied from a snapshot, then tailed until the target is close behind its source. */
  private async copyAll(m: Migration): Promise<number[]> {
    this.progress = { keysCopied: 0, entriesTailed: 0, lagEntries: null, phase: 'copying' };
    const seqs: number[] = [];
    // One copy id per target for this attempt: imports of an earlier, abandoned one are refused.
    this.targets.clear();
    for (const id of new Set(m.moves.map((mv) => mv.target))) this.targets.set(id, { ...this.leaderOf(id), copy: randomUUID() });
    for (const move of m.moves) {
      const target = this.targets.get(move.target)!;
      await purgeSlots(target, move.slots, this.stopping.signal, target.copy);
      const snap = await copySlots(this.leaderOf(move.source), target, move.slots, 0, this.stopping.signal, (n) => (this.progress!.keysCopied += n));
      seqs.push(snap.seq);
    }
    this.progress.phase = 'tailing';
    for (let round = 0; round < this.limits.tailRoundsMax; round += 1) {
      const tailed = await this.tailAll(m, seqs);
      this.progress.lagEntries = tailed;
      if (tailed <= this.limits.cutoverLagEntriesMax) break;
    }
    return seqs;
  }

  /** One tail round of every move; `seqs` advance. Returns the entries applied. */
  private async tailAll(m: Migration, seqs: number[]): Promise<number> {
    let items = 0;
    for (const [i, move] of m.moves.entries()) {
      const r = await copySlots(this.leaderOf(move.source), this.targets.get(move.target)!, move.slots, seqs[i]! + 1, this.stopping.signal, (n) => (this.progress!.entriesTailed += n));
      if (r.restart) throw new KvError('internal', `the log of ${move.source} no longer reaches seq ${seqs[i]! + 1}: copying again`);
      seqs[i] = r.seq;
      items += r.items;
    }
    return items;
  }

  /**
   * The fenced cutover, holding the decision locks of every shard involved (no failover can
   * interleave): freeze the moving slots (one map write, pushed to the sources; each source
   * leader answers its last seq, past which no write of those slots can be), tail every move
   * through its source's freeze point, then one map write makes the targets the owners. Past
   * `freezeMaxMs`, or on any failure before that write, the slots thaw and it is tried again.
   */
  private async cutover(leadership: Leadership, m: Migration, seqs: number[]): Promise<void> {
    const ids = [...new Set(m.moves.flatMap((mv) => [mv.source, mv.target]))];
    await this.coordinator.lockedAll(ids, async () => {
      const startedMs = Date.now();
      this.progress!.phase = 'cutover';
      const frozen = migrationPlan.freeze(this.table.map);
      await writeMap(this.store, this.table, leadership, this.table.map, frozen, 'freeze', this.log);
      try {
        const points = await this.freezePoints(leadership, m);
        if (this.limits.failpointFrozenPauseMs > 0) await this.sleep(this.limits.failpointFrozenPauseMs);
        while (m.moves.some((mv, i) => seqs[i]! < points.get(mv.source)!)) {
          if (Date.now() - startedMs > this.limits.freezeMaxMs) throw new KvError('migrating', `cutover took over ${this.limits.freezeMaxMs} ms`);
          await this.tailAll(m, seqs);
        }
        await writeMap(this.store, this.table, leadership, frozen, migrationPlan.cutover(frozen), 'cutover', this.log);
      } catch (err) {
        if (this.table.map.migration?.state === 'frozen') await this.thaw(leadership, err instanceof Error ? err.message : String(err));
        throw err;
      }
      this.log.warn({ migration: m.id, frozenMs: Date.now() - startedMs }, 'cutover committed: the moved slots are served by their new shards');
    });
    await this.pushShards(leadership, ids);
  }

  /** Pushes the frozen map to the sources; each leader's answer is its freeze point. */
  private async freezePoints(leadership: Leadership, m: Migration): Promise<Map<string, number>> {
    const points = new Map<string, number>();
    for (const id of new Set(m.moves.map((mv) => mv.source))) {
      const s = this.table.state(id);
      const answer = await this.coordinator.pushOrThrow(leadership, s, s.leader);
      if (answer.role !== 'leader' || answer.lastSeq === undefined || answer.mapVersion !== this.table.map.version) throw new KvError('not_leader', `${s.leader} did not take the freeze as leader of ${id}`);
      points.set(id, answer.lastSeq);
      // The follower serves no writes; it learns of the freeze now or from the next health round.
      await this.coordinator.pushOrThrow(leadership, s, s.follower).catch(() => undefined);
    }
    return points;
  }

  private async thaw(leadership: Leadership, why: string): Promise<void> {
    const ids = [...new Set(this.table.map.migration!.moves.map((mv) => mv.source))];
    await writeMap(this.store, this.table, leadership, this.table.map, migrationPlan.unfreeze(this.table.map), `thaw: ${why}`, this.log);
    await this.pushShards(leadership, ids);
  }

  /** The sources delete what moved (through their logs), then the migration ends. */
  private async cleanup(leadership: Leadership, m: Migration): Promise<void> {
    if (this.progress !== undefined) this.progress.phase = 'cleanup';
    // Counted over every attempt of this cleanup (a retried purge finds only what is left).
    let deleted = this.purged.get(m.id) ?? 0;
    for (const move of m.moves) {
      const n = await purgeSlots(this.leaderOf(move.source), move.slots, this.stopping.signal);
      this.purged.set(m.id, (deleted += n));
    }
    const ids = this.table.map.shards.map((s) => s.id);
    await writeMap(this.store, this.table, leadership, this.table.map, migrationPlan.finish(this.table.map), 'finished', this.log);
    this.purged.delete(m.id);
    this.log.warn({ migration: m.id, kind: m.kind, shard: m.shard, keysCopied: this.progress?.keysCopied ?? null, movedKeysDeleted: deleted }, 'migration finished');
    await this.pushShards(leadership, ids);
  }

  private async pushShards(leadership: Leadership, ids: readonly string[]): Promise<void> {
    const map = this.table.map;
    const present = new Set(map.shards.map((s) => s.id));
    // A removed shard's nodes hear once that they serve nothing (its record stays, for its nodes' sake).
    await Promise.all(ids.flatMap((id) => {
      const s = this.table.state(id);
      return present.has(id) || map.migration === undefined ? [s.leader, s.follower].map((url) => this.coordinator.pushOrThrow(leadership, s, url).catch(() => undefined)) : [];
    }));
  }

  private leaderOf(id: string): Endpoint {
    const s = this.table.state(id);
    return { node: this.nodes.ensure(s.leader), epoch: s.epoch };
  }

  private async writeRecord(a: ShardAddress, leadership: Leadership): Promise<void> {
    const held = this.table.revisionOf(a.id);
    const fresh = initialRecord(a);
    const res = await this.store.put(shardKey(a.id), JSON.stringify({ ...fresh, epoch: held === 0 ? 1 : this.table.state(a.id).epoch + 1 }), held, leadership);
    if (!res.ok) throw new KvError('coordinator_unavailable', `could not record shard ${a.id}: ${res.reason}`);
    await this.table.refresh();
  }

  private sleep(ms: number): Promise<void> {
    const signal = this.stopping.signal;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      signal.addEventListener('abort', done);
    });
  }
}
