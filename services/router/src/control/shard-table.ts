import { KvError, type Logger } from '@shardkv/common';
import { placementOf, type Placement } from '../placement';
import type { MetaStore, Versioned } from './meta-store';
import { checkMap, COORDINATOR_KEY, coordinatorInfoSchema, initialRecord, MAP_KEY, mapFor, movedRecord, shardKey, shardMapSchema, shardRecordSchema, type CoordinatorInfo, type ShardAddress, type ShardMap, type ShardRecord } from './records';

/** A configured shard list that the stored map does not match: the router must not start. */
export class MapMismatchError extends Error {
  override name = 'MapMismatchError';
}

type Listener = (before: ShardRecord, after: ShardRecord) => void;
type MapListener = (map: ShardMap) => void;

/**
 * A router's copy of the control plane: the shard map and every shard's record, each with the
 * revision it was read at. Every router keeps one; it is refreshed on every change the store
 * reports (a watch) and after any refusal that shows it is behind, so routers are caches and the
 * store is the authority. Records only move forward: a read older than what is held is ignored.
 */
export class ShardTable {
  private readonly records = new Map<string, { record: ShardRecord; revision: number }>();
  private readonly listeners: Listener[] = [];
  private readonly mapListeners: MapListener[] = [];
  private current: { map: ShardMap; revision: number; placement: Placement };
  private coordinatorInfo: CoordinatorInfo | undefined;
  private unwatch: (() => void) | undefined;
  private reading: Promise<void> | undefined;
  private queued: Promise<void> | undefined;

  private constructor(
    private readonly store: MetaStore,
    map: ShardMap,
    mapRevision: number,
    private readonly log: Logger,
  ) {
    this.current = { map, revision: mapRevision, placement: placementOf(map) };
  }

  /** The shard map as last read: shards, slot owners, migration. It changes only by a conditional write (see migration/). */
  get map(): ShardMap {
    return this.current.map;
  }

  get mapRevision(): number {
    return this.current.revision;
  }

  /** Where each key goes under the current map. */
  get placement(): Placement {
    return this.current.placement;
  }

  onMapChange(listener: MapListener): void {
    this.mapListeners.push(listener);
  }

  /** Records a map this router wrote itself (the watch brings it too, a little later). */
  applyMap(map: ShardMap, revision: number): void {
    if (revision <= this.current.revision || map.version < this.current.map.version) return;
    this.current = { map, revision, placement: placementOf(map) };
    for (const l of this.mapListeners) l(map);
  }

  /**
   * Reads the control plane, creating the map and the shard records of a fresh cluster, and
   * checks this router's configured shards against the stored map. Creation is conditional (the
   * key must be absent), so routers starting together agree on one map.
   */
  static async load(store: MetaStore, addresses: readonly ShardAddress[], log: Logger, legacy: ShardRecord[] = []): Promise<ShardTable> {
    let kv = await store.list();
    if (!kv.has(MAP_KEY)) {
      await store.put(MAP_KEY, JSON.stringify(mapFor(addresses)), 0);
      kv = await store.list();
    }
    let map = shardMapSchema.parse(JSON.parse(kv.get(MAP_KEY)!.value));
    const check = checkMap(map, addresses);
    // With slots the stored map says where every key is, whatever this router was given: it is
    // the authority (shards are added and removed through the coordinator, not by configuration).
    if (check.refused !== undefined && map.slots === undefined) throw new MapMismatchError(check.refused);
    if (check.refused !== undefined) log.warn({ configured: addresses.map((a) => a.id), stored: map.shards.map((s) => s.id), mapVersion: map.version }, 'configured shards differ from the stored shard map: routing by the stored map (add or remove shards with kv shard add/remove)');
    if (check.moved.length > 0) {
      map = await adoptMoved(store, kv, map, check.moved, log);
      kv = await store.list();
    }
    const known = new Map(legacy.map((r) => [r.id, r]));
    for (const a of addresses) {
      if (!kv.has(shardKey(a.id))) await store.put(shardKey(a.id), JSON.stringify(known.get(a.id) ?? initialRecord(a)), 0);
    }
    kv = await store.list();
    const table = new ShardTable(store, map, kv.get(MAP_KEY)!.revision, log);
    table.absorb(kv);
    table.unwatch = store.watch(() => void table.refresh().catch((err: unknown) => log.warn({ err: String(err) }, 'control plane re-read failed; keeping the shard map we have')));
    return table;
  }

  onChange(listener: Listener): void {
    this.listeners.push(listener);
  }

  state(id: string): ShardRecord {
    const r = this.records.get(id);
    if (r === undefined) throw new KvError('bad_request', `unknown shard ${id}`);
    return r.record;
  }

  revisionOf(id: string): number {
    return this.records.get(id)?.revision ?? 0;
  }

  get all(): ShardRecord[] {
    return this.map.shards.map((s) => this.state(s.id));
  }

  get coordinator(): CoordinatorInfo | undefined {
    return this.coordinatorInfo;
  }

  /**
   * Re-reads the store. A call that arrives during a read waits for the next one (the read under
   * way may predate the change it wants to see), and every call arriving meanwhile shares that
   * next read: a burst costs two reads, and no caller waits for more than two.
   */
  refresh(): Promise<void> {
    if (this.reading === undefined) {
      this.reading = this.readOnce().finally(() => (this.reading = undefined));
      return this.reading;
    }
    this.queued ??= this.reading
      .catch(() => {})
      .then(() => {
        this.queued = undefined;
        return this.refresh();
      });
    return this.queued;
  }

  private async readOnce(): Promise<void> {
    this.absorb(await this.store.list());
  }

  /** Records a write this router made itself (the watch would bring it too, a little later). */
  apply(record: ShardRecord, revision: number): void {
    const held = this.records.get(record.id);
    if (held !== undefined && held.revision >= revision) return;
    this.records.set(record.id, { record, revision });
    if (held !== undefined) for (const l of this.listeners) l(held.record, record);
  }

  private absorb(kv: Map<string, Versioned>): void {
    this.absorbMap(kv.get(MAP_KEY));
    const coord = kv.get(COORDINATOR_KEY);
    const info = coord === undefined ? undefined : coordinatorInfoSchema.safeParse(parseJson(coord.value));
    this.coordinatorInfo = info?.success === true ? { ...info.data, generation: coord!.revision } : undefined;
    // Every shard's record, also of shards not (or no longer) in the map: a shard being added
    // has its record written before the map names it, a removed one keeps its record.
    for (const [key, v] of kv) {
      if (!key.startsWith(shardKey(''))) continue;
      const parsed = shardRecordSchema.safeParse(parseJson(v.value));
      if (!parsed.success) {
        this.log.error({ key, err: parsed.error.message }, 'unreadable shard record in the control plane; keeping the one we have');
        continue;
      }
      this.apply(parsed.data, v.revision);
    }
  }

  private absorbMap(v: Versioned | undefined): void {
    if (v === undefined || v.revision <= this.current.revision) return;
    const parsed = shardMapSchema.safeParse(parseJson(v.value));
    if (!parsed.success) return this.log.error({ err: parsed.error.message }, 'unreadable shard map in the control plane; keeping the one we have');
    this.applyMap(parsed.data, v.revision);
  }

  close(): void {
    this.unwatch?.();
  }
}

/**
 * Shards whose nodes now have other addresses (the same ids: nodes moved host, or a test
 * restarted on new ports). A single router (embedded) adopts them: each record's nodes are
 * renamed by position and the map's version grows. With etcd several routers share the map and
 * must agree, so a router configured differently from it is refused instead.
 */
async function adoptMoved(store: MetaStore, kv: Map<string, Versioned>, map: ShardMap, moved: ShardAddress[], log: Logger): Promise<ShardMap> {
  const describe = moved.map((a) => `${a.id}: ${map.shards.find((s) => s.id === a.id)!.nodes.join(', ')} -> ${a.leader}, ${a.follower}`).join('; ');
  if (store.kind !== 'embedded') throw new MapMismatchError(`the configured node addresses differ from the stored shard map (version ${map.version}): ${describe}. Every router must be given the same SHARDS as the map holds.`);
  for (const a of moved) {
    const v = kv.get(shardKey(a.id));
    if (v === undefined) continue;
    const record = movedRecord(shardRecordSchema.parse(JSON.parse(v.value)), map.shards.find((s) => s.id === a.id)!.nodes, a);
    await store.put(shardKey(a.id), JSON.stringify(record), v.revision);
  }
  const byId = new Map(moved.map((a) => [a.id, a]));
  const next: ShardMap = { ...map, version: map.version + 1, shards: map.shards.map((s) => (byId.has(s.id) ? { ...s, nodes: [byId.get(s.id)!.leader, byId.get(s.id)!.follower] } : s)) };
  const res = await store.put(MAP_KEY, JSON.stringify(next), kv.get(MAP_KEY)!.revision);
  if (!res.ok) throw new Error('the shard map changed while this router adopted new node addresses; start it again');
  log.warn({ moved: describe, mapVersion: next.version }, 'shard nodes have new addresses: adopted');
  return next;
}

/** A record that is not JSON reads as undefined (the schema then refuses it), never as a throw. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
