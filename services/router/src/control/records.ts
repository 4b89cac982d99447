import { runsOf, slotRangesSchema, slotRunsSchema } from '@shardkv/common';
import { z } from 'zod';
import { assignSlots } from '../placement';

/**
 * What the control plane stores, under one cluster prefix (see meta-store.ts). Two kinds of
 * record, each its own key so that one shard's decision never conflicts with another's:
 *
 * - `map`: the shard map — which shards exist and which two nodes make each one, which shard owns
 *   each hash slot (`slots`), and the migration in progress if any, with a version that grows on
 *   every change. Routers route by it; every change is one conditional write of this one key, so
 *   a cutover (slots change owner, migration ends its copy) is atomic. A map without `slots` was
 *   created before slot maps: its keys are placed by the ketama ring over shard ids, and routers
 *   then check their configured shard list against it at start-up (another list would hide keys).
 * - `shards/<id>`: one shard's configuration as the coordinator decided it: the epoch numbering
 *   that decision, which node leads, which follows, and whether the follower is in sync.
 */
export const MAP_KEY = 'map';
export const shardKey = (id: string) => `shards/${id}`;
export const COORDINATOR_KEY = 'coordinator';

const url = z.string().min(1);

/**
 * A migration of slots between shards (see migration/ and DESIGN.md, "Resharding"):
 * `copying` (targets import the moving slots while sources serve them), `frozen` (sources refuse
 * the moving slots while targets catch up to the freeze point), then one write changes their
 * owners and moves to `cleanup` (sources purge what moved). It ends by being removed from the map.
 */
export const migrationSchema = z.object({
  id: z.string().min(1),
  kind: z.enum(['add', 'remove']),
  /** The shard added or removed. */
  shard: z.string().min(1),
  state: z.enum(['copying', 'frozen', 'cleanup']),
  moves: z.array(z.object({ source: z.string(), target: z.string(), slots: slotRangesSchema })).min(1),
  startedAtMs: z.number(),
});
export type Migration = z.infer<typeof migrationSchema>;

export const shardMapSchema = z.object({
  version: z.number().int().positive(),
  shards: z.array(z.object({ id: z.string().min(1), nodes: z.tuple([url, url]) })).min(1),
  /** The owner of every slot, as runs; absent on a map from before slot maps (ketama placement). */
  slots: slotRunsSchema.optional(),
  migration: migrationSchema.optional(),
});
export type ShardMap = z.infer<typeof shardMapSchema>;

export const shardRecordSchema = z.object({
  id: z.string().min(1),
  epoch: z.number().int().positive(),
  leader: url,
  follower: url,
  inSync: z.boolean(),
});
export type ShardRecord = z.infer<typeof shardRecordSchema>;

export function sameRecord(a: ShardRecord, b: ShardRecord): boolean {
  return a.id === b.id && a.epoch === b.epoch && a.leader === b.leader && a.follower === b.follower && a.inSync === b.inSync;
}

/** Who coordinates now: written by the elected router under its lease. */
export const coordinatorInfoSchema = z.object({ id: z.string(), url: z.string(), since: z.number() });
export type CoordinatorInfo = z.infer<typeof coordinatorInfoSchema> & { generation: number };

/** A configured shard: its id and its two nodes (the first named leads in a fresh cluster). */
export interface ShardAddress {
  id: string;
  leader: string;
  follower: string;
}

/** A fresh cluster's map: every slot assigned by the ketama ring over the shard ids (see placement.ts). */
export function mapFor(addresses: readonly ShardAddress[]): ShardMap {
  return { version: 1, shards: addresses.map((a) => ({ id: a.id, nodes: [a.leader, a.follower] })), slots: runsOf(assignSlots(addresses.map((a) => a.id))) };
}

/** A fresh cluster: the configured leader leads, both nodes are empty, so the follower is in sync. */
export function initialRecord(a: ShardAddress): ShardRecord {
  return { id: a.id, epoch: 1, leader: a.leader, follower: a.follower, inSync: true };
}

export interface MapCheck {
  /** Why this router must not start (the shard ids differ), if it must not. */
  refused?: string;
  /** Shards whose two nodes have other addresses than the stored map says (moved hosts). */
  moved: ShardAddress[];
}

/**
 * Checks a router's configured shards against the stored map. Keys are placed by shard id, so
 * another set of ids would send existing keys to shards that do not hold them (they would
 * answer 404): that is refused. The same ids at other addresses are nodes that moved host; the
 * caller decides whether it may adopt them.
 */
export function checkMap(stored: ShardMap, configured: readonly ShardAddress[]): MapCheck {
  const want = new Map(configured.map((a) => [a.id, a]));
  const have = new Set(stored.shards.map((s) => s.id));
  const missing = [...have].filter((id) => !want.has(id));
  const extra = [...want.keys()].filter((id) => !have.has(id));
  const moved = stored.shards.flatMap((s) => {
    const a = want.get(s.id);
    return a !== undefined && (a.leader !== s.nodes[0] || a.follower !== s.nodes[1]) ? [a] : [];
  });
  if (missing.length === 0 && extra.length === 0) return { moved };
  const parts = [missing.length > 0 ? `missing from this router's configuration: ${missing.join(', ')}` : '', extra.length > 0 ? `not in the stored map: ${extra.join(', ')}` : ''].filter((p) => p !== '');
  const refused = `the configured shards differ from the stored shard map (version ${stored.version}: ${stored.shards.map((s) => s.id).join(', ')}): ${parts.join('; ')}. Starting would route keys to shards that do not hold them. Start with the same shards as before (SHARD_COUNT=${stored.shards.length}, or the same SHARDS), or start a new cluster with new data (npm run reset, or another DATA_DIR / ETCD_PREFIX). Moving keys between shards online is not supported yet.`;
  return { refused, moved };
}

/** A shard record with its nodes renamed by position, from the stored map's addresses to the configured ones. */
export function movedRecord(r: ShardRecord, storedNodes: readonly [string, string], a: ShardAddress): ShardRecord {
  const rename = (url: string) => (url === storedNodes[0] ? a.leader : url === storedNodes[1] ? a.follower : url);
  return { ...r, leader: rename(r.leader), follower: rename(r.follower) };
}
