import { ownersOf, pointOf, SLOT_COUNT, slotMidpoint, slotOf, slotOfPoint } from '@shardkv/common';
import type { LoadPlacement } from './load';
import type { ShardMap } from './control/records';
import { ShardRing } from './ring';

/** Where keys go: the shard of a key, or of a point on the 32-bit continuum (bulk loads hash the key's bytes once). */
export interface Placement extends LoadPlacement {
  shardFor(key: string): string;
}

/**
 * The slot placement of a map: each key's slot (common/slots.ts), each slot's owner from the
 * map. Owners change only by a migration's cutover; the ring below only proposes assignments.
 */
export class SlotPlacement implements Placement {
  constructor(readonly owners: readonly string[]) {
    if (owners.length !== SLOT_COUNT) throw new Error(`a slot placement needs ${SLOT_COUNT} owners`);
  }

  shardFor(key: string): string {
    return this.owners[slotOf(key)]!;
  }

  pointOf(key: Uint8Array): number {
    return pointOf(key);
  }

  shardAt(point: number): string {
    return this.owners[slotOfPoint(point)]!;
  }
}

/** A map from before slot maps: keys placed by the ketama ring over shard ids, as then. */
class RingPlacement implements Placement {
  constructor(private readonly ring: ShardRing) {}

  shardFor(key: string): string {
    return this.ring.shardFor(key);
  }

  pointOf(key: Uint8Array): number {
    return pointOf(key);
  }

  shardAt(point: number): string {
    return this.ring.shardAt(point);
  }
}

export function placementOf(map: ShardMap): Placement {
  return map.slots === undefined ? new RingPlacement(new ShardRing(map.shards.map((s) => s.id))) : new SlotPlacement(ownersOf(map.slots));
}

/**
 * The owner of every slot that the ketama ring over `shardIds` proposes: each slot goes where
 * the ring puts the middle of its range. Consistent hashing gives the property resharding
 * needs: with one shard more, a slot either keeps its owner or goes to the new shard (about
 * 1/(N+1) of them); with one fewer, only the removed shard's slots move.
 */
export function assignSlots(shardIds: readonly string[]): string[] {
  const ring = new ShardRing(shardIds);
  return Array.from({ length: SLOT_COUNT }, (_, s) => ring.shardAt(slotMidpoint(s)));
}

/** The placement a fresh cluster of these shards has (tests and tools find a shard's keys with it). */
export function freshPlacement(shardIds: readonly string[]): Placement {
  return new SlotPlacement(assignSlots(shardIds));
}
