import { KvError, ownersOf, runsOf, SlotSet, type SlotConfig } from '@shardkv/common';
import { randomUUID } from 'node:crypto';
import { assignSlots } from '../placement';
import type { Migration, ShardAddress, ShardMap } from '../control/records';

/**
 * Pure steps of a migration (see DESIGN.md, "Resharding"): each takes the stored map and gives
 * the next one, which the driver writes with one conditional write. Nothing here does IO.
 *
 *   (none) --add/remove--> copying --freeze--> frozen --cutover--> cleanup --finish--> (none)
 *                             ^                   |
 *                             +-----unfreeze------+   (the cutover missed its deadline, or a
 *                                                      coordinator found it frozen on taking over)
 */
export const migrationPlan = {
  /** Shard `a` joins: the slots the ring over every id gives it move there, from whoever owns them. */
  add(map: ShardMap, a: ShardAddress, nowMs: number): ShardMap {
    const owners = requireSlots(map);
    if (map.shards.some((s) => s.id === a.id)) throw new KvError('bad_request', `shard ${a.id} is already in the map`);
    const used = new Set(map.shards.flatMap((s) => s.nodes));
    if (used.has(a.leader) || used.has(a.follower) || a.leader === a.follower) throw new KvError('bad_request', 'the new shard needs two nodes of its own, not used by another shard');
    const proposed = assignSlots([...map.shards.map((s) => s.id), a.id]);
    const migration = start('add', a.id, movesBetween(owners, proposed), nowMs);
    return { ...map, version: map.version + 1, shards: [...map.shards, { id: a.id, nodes: [a.leader, a.follower] }], migration };
  },

  /** Shard `id` leaves: its slots go where the ring over the other ids puts them. */
  remove(map: ShardMap, id: string, nowMs: number): ShardMap {
    const owners = requireSlots(map);
    if (!map.shards.some((s) => s.id === id)) throw new KvError('bad_request', `shard ${id} is not in the map`);
    if (map.shards.length === 1) throw new KvError('resharding_unsupported', 'the last shard cannot be removed');
    const rest = assignSlots(map.shards.filter((s) => s.id !== id).map((s) => s.id));
    const proposed = owners.map((o, slot) => (o === id ? rest[slot]! : o));
    const moves = movesBetween(owners, proposed);
    return { ...map, version: map.version + 1, migration: start('remove', id, moves, nowMs) };
  },

  freeze(map: ShardMap): ShardMap {
    return withState(map, 'copying', 'frozen');
  },

  unfreeze(map: ShardMap): ShardMap {
    return withState(map, 'frozen', 'copying');
  },

  /** The moving slots change owner: from this version on only the targets serve them. */
  cutover(map: ShardMap): ShardMap {
    const m = requireState(map, 'frozen');
    const owners = ownersOf(map.slots!);
    for (const move of m.moves) for (const [from, to] of move.slots) for (let s = from; s < to; s += 1) owners[s] = move.target;
    return { ...map, version: map.version + 1, slots: runsOf(owners), migration: { ...m, state: 'cleanup' } };
  },

  /** The sources have purged what moved: the migration ends (a removed shard leaves the map). */
  finish(map: ShardMap): ShardMap {
    const m = requireState(map, 'cleanup');
    const shards = m.kind === 'remove' ? map.shards.filter((s) => s.id !== m.shard) : map.shards;
    const { migration: _, ...rest } = map;
    return { ...rest, version: map.version + 1, shards };
  },
};

/** What a node of `shardId` must know of the map: every slot's owner, its frozen and its incoming slots. */
export function slotConfigFor(map: ShardMap, shardId: string): SlotConfig | undefined {
  if (map.slots === undefined) return undefined;
  const m = map.migration;
  const frozen = new SlotSet();
  const incoming = new SlotSet();
  for (const move of m?.moves ?? []) {
    const set = move.source === shardId && m!.state === 'frozen' ? frozen : move.target === shardId && m!.state !== 'cleanup' ? incoming : undefined;
    for (const [from, to] of set === undefined ? [] : move.slots) for (let s = from; s < to; s += 1) set!.add(s);
  }
  return { mapVersion: map.version, owners: map.slots, frozen: frozen.ranges(), incoming: incoming.ranges() };
}

export function slotCount(ranges: ReadonlyArray<readonly [number, number]>): number {
  return ranges.reduce((n, [from, to]) => n + (to - from), 0);
}

function requireSlots(map: ShardMap): string[] {
  if (map.slots === undefined) throw new KvError('resharding_unsupported', 'this cluster was created before hash slots (its keys are placed by the ketama ring), so shards cannot be added or removed online; load its data into a new cluster');
  if (map.migration !== undefined) throw new KvError('migration_in_progress', `migration ${map.migration.id} (${map.migration.kind} ${map.migration.shard}) is ${map.migration.state}; one at a time`);
  return ownersOf(map.slots);
}

function requireState(map: ShardMap, state: Migration['state']): Migration {
  if (map.migration?.state !== state) throw new KvError('coordinator_unavailable', `migration is ${map.migration?.state ?? 'absent'}, expected ${state}`);
  return map.migration;
}

function withState(map: ShardMap, from: Migration['state'], to: Migration['state']): ShardMap {
  return { ...map, version: map.version + 1, migration: { ...requireState(map, from), state: to } };
}

function start(kind: Migration['kind'], shard: string, moves: Migration['moves'], nowMs: number): Migration {
  if (moves.length === 0) throw new KvError('resharding_unsupported', `no slot would move for ${kind} ${shard}`);
  return { id: randomUUID(), kind, shard, state: 'copying', moves, startedAtMs: nowMs };
}

/** The slots whose owner differs, grouped by (source, target). */
function movesBetween(before: readonly string[], after: readonly string[]): Migration['moves'] {
  const byPair = new Map<string, { source: string; target: string; set: SlotSet }>();
  before.forEach((source, slot) => {
    const target = after[slot]!;
    if (source === target) return;
    const k = `${source}\u0000${target}`;
    let m = byPair.get(k);
    if (m === undefined) byPair.set(k, (m = { source, target, set: new SlotSet() }));
    m.set.add(slot);
  });
  return [...byPair.values()].map((m) => ({ source: m.source, target: m.target, slots: m.set.ranges() }));
}
