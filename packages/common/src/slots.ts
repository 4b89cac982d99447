import { hash } from 'node:crypto';
import { z } from 'zod';
import { dataKeyOfRecord } from './idempotency';

/**
 * Hash slots: the unit of placement and of migration (Redis Cluster's idea). Every key falls in
 * one of SLOT_COUNT slots, by a function every router, node and smart client computes alike:
 * the first 4 bytes of the key's MD5 (little-endian, the point `hashring` puts the key at on its
 * continuum), top 12 bits. The shard map assigns each slot to one shard; moving a shard's load
 * means moving slots, never re-hashing keys.
 */
export const SLOT_COUNT = 4096;
const SLOT_SHIFT = 20; // 32-bit point >>> 20 = 12 bits = 4096 slots

/** The key's point on the 32-bit continuum (as hashring computes it). */
export function pointOf(key: string | Uint8Array): number {
  const d = hash('md5', key, 'buffer');
  return ((d[3]! << 24) | (d[2]! << 16) | (d[1]! << 8) | d[0]!) >>> 0;
}

export function slotOf(key: string | Uint8Array): number {
  // A record of an applied idempotency key lives in its data key's slot, and moves with it.
  const data = typeof key === 'string' && key.charCodeAt(0) === 0 ? dataKeyOfRecord(key) : undefined;
  return pointOf(data ?? key) >>> SLOT_SHIFT;
}

export function slotOfPoint(point: number): number {
  return point >>> SLOT_SHIFT;
}

/** The point a slot is placed by when a ring assigns slots to shards: the middle of its range. */
export function slotMidpoint(slot: number): number {
  return slot * 2 ** SLOT_SHIFT + 2 ** (SLOT_SHIFT - 1); // not <<: slots from 2048 up would turn negative
}

/** Half-open ranges of slots `[from, to)`, sorted and not overlapping: how slot sets travel. */
export type SlotRanges = Array<[number, number]>;
export const slotRangesSchema = z.array(z.tuple([z.number().int().min(0).max(SLOT_COUNT), z.number().int().min(0).max(SLOT_COUNT)])).max(SLOT_COUNT);

/** Runs of a full assignment: `[from, to, shardId]`, covering 0..SLOT_COUNT in order. */
export type SlotRuns = Array<[number, number, string]>;
export const slotRunsSchema = z.array(z.tuple([z.number().int().min(0), z.number().int().max(SLOT_COUNT), z.string().min(1)])).min(1).max(SLOT_COUNT);

/** A set of slots as a bitmap, for O(1) membership on the hot path. */
export class SlotSet {
  private readonly bits = new Uint8Array(SLOT_COUNT);
  count = 0;

  constructor(ranges: SlotRanges = []) {
    for (const [from, to] of ranges) for (let s = from; s < to; s += 1) this.add(s);
  }

  add(slot: number): void {
    if (this.bits[slot] === 0) this.count += 1;
    this.bits[slot] = 1;
  }

  has(slot: number): boolean {
    return this.bits[slot] === 1;
  }

  ranges(): SlotRanges {
    const out: SlotRanges = [];
    for (let s = 0; s < SLOT_COUNT; s += 1) {
      if (!this.has(s)) continue;
      const last = out[out.length - 1];
      if (last !== undefined && last[1] === s) last[1] = s + 1;
      else out.push([s, s + 1]);
    }
    return out;
  }
}

/** Expands runs into one owner per slot; throws unless they cover every slot exactly once, in order. */
export function ownersOf(runs: SlotRuns): string[] {
  const owners: string[] = [];
  for (const [from, to, id] of runs) {
    if (from !== owners.length || to <= from) throw new Error(`slot runs must cover 0..${SLOT_COUNT} in order; got [${from}, ${to})`);
    for (let s = from; s < to; s += 1) owners.push(id);
  }
  if (owners.length !== SLOT_COUNT) throw new Error(`slot runs cover ${owners.length} of ${SLOT_COUNT} slots`);
  return owners;
}

/** The runs of one owner per slot. */
export function runsOf(owners: readonly string[]): SlotRuns {
  const runs: SlotRuns = [];
  owners.forEach((id, s) => {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[2] === id) last[1] = s + 1;
    else runs.push([s, s + 1, id]);
  });
  return runs;
}

/**
 * `GET /cluster/map` (any router, public): what a smart client routes by. `slots` is null for a
 * cluster created before slot maps (placed by the ketama ring over shard ids): such a client
 * then sends everything through a router.
 */
export interface ClusterMap {
  version: number;
  slotCount: number;
  /** How a key's slot is computed, named so that a client can refuse a scheme it does not know. */
  slotHash: 'md5-le32-top12';
  shards: Array<{ id: string; leader: string; follower: string; epoch: number }>;
  slots: SlotRuns | null;
  migration: MigrationView | null;
}

/** A migration as `/cluster/map` and `kv shard list` show it. */
export interface MigrationView {
  id: string;
  kind: 'add' | 'remove';
  shard: string;
  state: 'copying' | 'frozen' | 'cleanup';
  /** Slots changing owner. */
  slotsMoving: number;
  moves: Array<{ source: string; target: string; slots: number }>;
  startedAt: string;
  /** Known only on the coordinator driving it; null elsewhere. */
  progress: { keysCopied: number; entriesTailed: number; lagEntries: number | null; phase: string } | null;
}

/** The 202 answer of `POST /admin/shards` and `DELETE /admin/shards/<id>`: the migration, and the map version that recorded it. */
export interface MigrationStarted {
  migration: MigrationView;
  mapVersion: number;
}

/**
 * Whether `map` shows the migration `started` over. Only a map newer than the one that recorded
 * it counts: every router serves the map, and one that lags (not the coordinator) may still show
 * an older map with no migration in it.
 */
export function migrationEnded(map: ClusterMap, started: MigrationStarted): boolean {
  return map.version > started.mapVersion && (map.migration === null || map.migration.id !== started.migration.id);
}
