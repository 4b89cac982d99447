import { KvClient } from '@shardkv/client';
import { migrationEnded, ownersOf, SLOT_COUNT, slotOf, type ClusterMap, type MigrationStarted } from '@shardkv/common';
import { request } from 'undici';
import type { ScenarioContext, ScenarioFault } from './chaos';
import type { Cluster, ClusterShard } from './cluster';

/**
 * Resharding as the fault harness does it (test/reshard.test.ts, `npm run chaos -- --reshard`):
 * a shard added or removed online through the router's admin API while clients run, optionally
 * with a process killed at a chosen point of the migration, and the checks that must hold after.
 */
export type Trigger = 'copying' | 'frozen';
export type ReshardFault = 'killSourceLeader' | 'killTargetLeader' | 'killCoordinator';

export interface ReshardOptions {
  /** When the migration reaches this point (`copying`: keys are being copied; `frozen`: the cutover holds the slots), `fault` happens. */
  at?: Trigger;
  fault?: ReshardFault;
  /** The whole migration, fault and recovery included, must end within this. */
  timeoutMs?: number;
}

const POLL_MS = 10;
/** Admin calls refused because no router coordinates right now (an election, etcd without quorum) are sent again this long. */
const ADMIN_RETRY_MS = 30_000;
const ADMIN_RETRY_CODES: ReadonlySet<string> = new Set(['not_coordinator', 'coordinator_unavailable']);

/** An admin call, sent again while it is refused only because no coordinator can take it (definite: nothing done). */
async function adminCall<T>(call: () => Promise<T>, signal: AbortSignal): Promise<T> {
  const deadline = Date.now() + ADMIN_RETRY_MS;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      const e = err as { code?: string; outcome?: string };
      if (!ADMIN_RETRY_CODES.has(e.code ?? '') || e.outcome !== 'definite' || Date.now() > deadline || signal.aborted) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function admin(cluster: Cluster): KvClient {
  return new KvClient(cluster.routers.map((r) => r.url), { adminToken: cluster.token, timeoutMs: 5000 });
}

/** Starts a new pair, adds it to the map and waits until its migration has ended. */
export async function addOnline(cluster: Cluster, ctx: ScenarioContext, o: ReshardOptions = {}): Promise<ScenarioFault> {
  const shard = await cluster.addShard();
  const startMs = ctx.now();
  const client = admin(cluster);
  try {
    const started = await adminCall(() => client.addShard({ id: shard.id, leader: shard.leader.url, follower: shard.follower.url }), ctx.signal).catch(async (err: unknown) => {
      // Refused (definite): the pair never joined and goes. An unknown outcome leaves it running.
      if ((err as { outcome?: string }).outcome === 'definite') await cluster.removeShard(shard.id);
      throw err;
    });
    const { migration } = started;
    cluster.setInMap(shard.id, true);
    ctx.log(`reshard: adding ${shard.id}, ${migration.slotsMoving} slots moving`);
    const figures = await follow(cluster, client, started, ctx, o);
    return { kind: 'reshardAdd', name: `add ${shard.id}${o.fault === undefined ? '' : ` (${o.fault} while ${o.at})`}`, startMs, endMs: ctx.now(), figures: { ...figures, shard: shard.id, slotsMoving: migration.slotsMoving } };
  } finally {
    await client.close();
  }
}

/** Drains a shard into the others, waits until its migration has ended, then stops its pair. */
export async function removeOnline(cluster: Cluster, id: string, ctx: ScenarioContext, o: ReshardOptions = {}): Promise<ScenarioFault> {
  const startMs = ctx.now();
  const client = admin(cluster);
  try {
    const started = await adminCall(() => client.removeShard(id), ctx.signal);
    const { migration } = started;
    ctx.log(`reshard: removing ${id}, ${migration.slotsMoving} slots moving`);
    const figures = await follow(cluster, client, started, ctx, o);
    await cluster.removeShard(id);
    return { kind: 'reshardRemove', name: `remove ${id}${o.fault === undefined ? '' : ` (${o.fault} while ${o.at})`}`, startMs, endMs: ctx.now(), figures: { ...figures, shard: id, slotsMoving: migration.slotsMoving } };
  } finally {
    await client.close();
  }
}

/**
 * Polls the map until the migration has ended, doing the fault once at its trigger. Either
 * router may answer, and one that lags may show an older map: only a newer map than the one
 * that recorded the migration counts (migrationEnded).
 */
async function follow(cluster: Cluster, client: KvClient, started: MigrationStarted, ctx: ScenarioContext, o: ReshardOptions): Promise<Record<string, number | string | boolean>> {
  const id = started.migration.id;
  const deadline = Date.now() + (o.timeoutMs ?? 120_000);
  const figures: Record<string, number | string | boolean> = {};
  let faulted = o.fault === undefined;
  let copied = 0;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`migration ${id} did not end within ${o.timeoutMs ?? 120_000} ms`);
    ctx.signal.throwIfAborted();
    const map = await client.clusterMap().catch(() => undefined); // the router may be the one killed
    const m = map?.migration;
    if (map !== undefined && migrationEnded(map, started)) return { ...figures, keysCopied: copied, mapVersion: map.version };
    copied = Math.max(copied, m?.progress?.keysCopied ?? 0);
    if (!faulted && m !== undefined && m !== null && m.id === id && reached(m, o.at!)) {
      figures['faulted'] = await doFault(cluster, map!, o.fault!);
      figures['faultAtMs'] = ctx.now();
      ctx.log(`reshard: ${o.fault} (${figures['faulted']}) while ${o.at}`);
      faulted = true;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function reached(m: NonNullable<ClusterMap['migration']>, at: Trigger): boolean {
  return at === 'frozen' ? m.state === 'frozen' : m.state === 'copying' && (m.progress?.keysCopied ?? 0) > 0;
}

/** Kills (SIGKILL; the supervisor restarts it) the process the fault names; returns its name. */
async function doFault(cluster: Cluster, map: ClusterMap, fault: ReshardFault): Promise<string> {
  const move = map.migration!.moves[0]!;
  const nodeOf = (shardId: string) => {
    const url = map.shards.find((s) => s.id === shardId)!.leader;
    const s = cluster.shards.find((x) => x.id === shardId) as ClusterShard;
    return s.leader.url === url ? s.leader : s.follower;
  };
  const name = fault === 'killCoordinator' ? cluster.router.name : nodeOf(fault === 'killSourceLeader' ? move.source : move.target).name;
  cluster.process(name).signal('SIGKILL');
  return name;
}

export interface PlacementReport {
  mapVersion: number;
  migration: boolean;
  /** Per shard: slots in the map, what each node serves by, its key count and whether both nodes hold the same state. */
  shards: Array<{ id: string; slots: number; slotsServed: [number | null, number | null]; nodeMapVersions: [number, number]; keys: [number, number]; digestsEqual: boolean }>;
  totalKeys: number;
}

/**
 * What must hold once a migration is over: every slot has one owner in the map, both nodes of
 * every shard serve exactly the map's slots for it at its version, and hold the same state.
 * Polls (bounded) until followers have caught up and every node has been told the last map.
 */
export async function placementReport(routerUrl: string, timeoutMs = 20_000): Promise<PlacementReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await readPlacement(routerUrl);
    const settled = report.shards.every((s) => s.digestsEqual && s.nodeMapVersions.every((v) => v === report.mapVersion));
    if ((settled && !report.migration) || Date.now() > deadline) return report;
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function readPlacement(routerUrl: string): Promise<PlacementReport> {
  const map = (await (await request(`${routerUrl}/cluster/map`)).body.json()) as ClusterMap;
  const owners = ownersOf(map.slots!);
  const shards = await Promise.all(
    map.shards.map(async (s) => {
      const [l, f] = await Promise.all([s.leader, s.follower].map(async (url) => (await (await request(`${url}/status`)).body.json()) as { keys: number; digest: string; mapVersion: number; slotsOwned: number | null }));
      return { id: s.id, slots: owners.filter((o) => o === s.id).length, slotsServed: [l!.slotsOwned, f!.slotsOwned] as [number | null, number | null], nodeMapVersions: [l!.mapVersion, f!.mapVersion] as [number, number], keys: [l!.keys, f!.keys] as [number, number], digestsEqual: l!.digest === f!.digest };
    }),
  );
  return { mapVersion: map.version, migration: map.migration !== null, shards, totalKeys: shards.reduce((n, s) => n + s.keys[0], 0) };
}

/**
 * `npm run chaos -- --reshard`: beside the random nemesis, a shard is added and removed again,
 * over and over, each after `settleMs` of quiet, until the run ends (a migration the end
 * interrupts is left to the cluster's stop).
 */
export async function reshardLoop(cluster: Cluster, ctx: ScenarioContext, settleMs: number): Promise<void> {
  const settle = () => new Promise((r) => setTimeout(r, settleMs));
  while (!ctx.signal.aborted) {
    await settle();
    if (ctx.signal.aborted) return;
    const added = await addOnline(cluster, ctx);
    ctx.record(added);
    await settle();
    if (ctx.signal.aborted) return;
    ctx.record(await removeOnline(cluster, added.figures!['shard'] as string, ctx));
  }
}

/** A key a shard's leader holds although the map gives its slot to another shard: what a migration left behind. */
export interface StrayKey {
  key: string;
  heldBy: string;
  owner: string;
}

/**
 * Every key held by a shard that does not own its slot, by exporting every slot from each
 * leader. After a migration has ended there must be none: a stray key is storage no one serves,
 * and a value that would come back stale if its slot moved there again without a purge.
 */
export async function strayKeys(routerUrl: string, token: string): Promise<StrayKey[]> {
  const map = (await (await request(`${routerUrl}/cluster/map`)).body.json()) as ClusterMap;
  const owners = ownersOf(map.slots!);
  const stray: StrayKey[] = [];
  for (const s of map.shards) {
    const res = await request(`${s.leader}/internal/export`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ slots: [[0, SLOT_COUNT]], fromSeq: 0 }) });
    const lines = (await res.body.text()).split('\n').filter((l) => l !== '');
    if (res.statusCode !== 200 || !/"end":true/.test(lines[lines.length - 1] ?? '')) throw new Error(`export from ${s.leader}: HTTP ${res.statusCode}, incomplete`);
    for (const line of lines.slice(1, -1)) {
      const [key] = JSON.parse(line) as [string];
      const owner = owners[slotOf(key)]!;
      if (owner !== s.id) stray.push({ key, heldBy: s.id, owner });
    }
  }
  return stray;
}
