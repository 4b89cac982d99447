import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshPlacement } from '@shardkv/router/dist/placement';
import { request } from 'undici';
import { rng, shuffle, sleep, type ScenarioContext, type ScenarioFault } from './chaos';
import { Cluster, type ClusterNode, type ClusterOptions } from './cluster';
import { EtcdCluster } from './etcd';
import { ensureIptables, loopbackAddress, Partitioner } from './partition';

/**
 * The faults that need more than one router: a control plane on a real 3-member etcd, routers
 * and nodes each on their own loopback address, and iptables partitions between them. Every
 * fault injects, holds, heals and waits for the cluster to settle, and records what it measured;
 * the chaos harness runs clients through every router meanwhile and checks the whole history.
 */
export interface HaEnv {
  cluster: Cluster;
  etcd: EtcdCluster;
  net: Partitioner;
  /** Per router (index): the addresses it reaches etcd at (cutting them cuts it from etcd). */
  etcdAliases: string[][];
  /** Every process's data (removed by stop() when startHaEnv made it). */
  dataRoot: string;
  stop(): Promise<void>;
}

export interface HaEnvOptions {
  shardCount?: number;
  routers?: number;
  env?: Record<string, string>;
  sink?: ClusterOptions['sink'];
  restart?: ClusterOptions['restart'];
  /** Ports: `free` (tests, chaos) or the documented ones (`npm run start:ha`). */
  ports?: 'free' | 'default';
  dataRoot?: string;
  etcdClientPorts?: number[];
  etcdPeerPorts?: number[];
  startTimeoutMs?: number;
}

/** etcd members listen at 127.0.0.110 and up; router r reaches member i at 127.0.0.(120 + 3r + i). */
const ETCD_HOST_INDEX = 100;
const ETCD_ALIAS_INDEX = 110;

export async function startHaEnv(o: HaEnvOptions = {}): Promise<HaEnv> {
  await ensureIptables();
  const routers = o.routers ?? 2;
  const ownsData = o.dataRoot === undefined;
  const dataRoot = o.dataRoot ?? mkdtempSync(join(tmpdir(), 'shardkv-ha-'));
  const aliases = Array.from({ length: routers }, (_, r) => [0, 1, 2].map((i) => loopbackAddress(ETCD_ALIAS_INDEX + 3 * r + i)));
  const cleanups: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    if (ownsData) rmSync(dataRoot, { recursive: true, force: true });
  };
  try {
    const net = await Partitioner.create('ha');
    cleanups.push(() => net.close());
    const etcd = await EtcdCluster.create({ members: 3, hosts: [0, 1, 2].map((i) => loopbackAddress(ETCD_HOST_INDEX + i)), aliases, dataRoot: join(dataRoot, 'etcd'), clientPorts: o.etcdClientPorts, peerPorts: o.etcdPeerPorts, sink: o.sink });
    cleanups.push(() => etcd.stop());
    await etcd.start();
    const cluster = await Cluster.create({ ports: o.ports ?? 'free', addresses: 'distinct', routers, shardCount: o.shardCount ?? 3, dataRoot, clusterId: 'ha', env: o.env, sink: o.sink, restart: o.restart, etcdEndpointsFor: (r) => etcd.aliasEndpoints[r]! });
    cleanups.push(() => cluster.stop());
    await cluster.start(o.startTimeoutMs ?? 60_000);
    return { cluster, etcd, net, etcdAliases: aliases, dataRoot, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// what the cluster says

interface RouterStatus {
  router: { id: string; coordinator: boolean };
  coordinator: { id: string; generation: number } | null;
  shards: Array<{ id: string; epoch: number; inSync: boolean; leader: { url: string; state?: string }; follower: { url: string } }>;
}

export async function routerStatus(r: ClusterNode, timeoutMs = 2500): Promise<RouterStatus | undefined> {
  try {
    const res = await request(`${r.url}/status`, { signal: AbortSignal.timeout(timeoutMs) });
    return res.statusCode === 200 ? ((await res.body.json()) as RouterStatus) : (await res.body.dump(), undefined);
  } catch {
    return undefined;
  }
}

/** The router that holds the election now, as the routers themselves say. */
export async function coordinatorNode(cluster: Cluster, timeoutMs = 15_000): Promise<{ node: ClusterNode; generation: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const r of cluster.routers) {
      const s = await routerStatus(r);
      if (s?.router.coordinator === true && s.coordinator?.id === r.name) return { node: r, generation: s.coordinator.generation };
    }
    if (Date.now() > deadline) throw new Error(`no router reports itself coordinator after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Every shard in sync, as the coordinator's table says, with a serving leader. */
export async function settled(cluster: Cluster, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { node } = await coordinatorNode(cluster, Math.max(1000, deadline - Date.now()));
    const s = await routerStatus(node);
    if (s !== undefined && s.shards.every((sh) => sh.inSync && sh.leader.state === 'serving')) return;
    if (Date.now() > deadline) throw new Error(`shards not in sync after ${timeoutMs} ms: ${JSON.stringify(s?.shards.map((x) => ({ id: x.id, epoch: x.epoch, inSync: x.inSync, leader: x.leader.state })))}`);
    await sleep(100);
  }
}

export function nodeByUrl(cluster: Cluster, url: string): ClusterNode {
  const n = cluster.nodes.find((x) => x.url === url);
  if (n === undefined) throw new Error(`no node at ${url}`);
  return n;
}

async function shardRoles(cluster: Cluster, shardId: string): Promise<{ leader: ClusterNode; follower: ClusterNode; epoch: number }> {
  const { node } = await coordinatorNode(cluster);
  const s = (await routerStatus(node))?.shards.find((x) => x.id === shardId);
  if (s === undefined) throw new Error(`no status for ${shardId}`);
  return { leader: nodeByUrl(cluster, s.leader.url), follower: nodeByUrl(cluster, s.follower.url), epoch: s.epoch };
}


async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!(await check().catch(() => false))) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(20);
  }
  return Date.now() - started;
}

// ---------------------------------------------------------------------------------------------
// the faults

export interface HaFaultOptions {
  /** How long a partition or an etcd outage lasts. */
  holdMs: number;
  /** A pause of the coordinator lasts this long (past its lease). */
  pauseMs: number;
  /** The shard a link fault is about (index). */
  shard: number;
}

export type HaFault = (env: HaEnv, ctx: ScenarioContext, o: HaFaultOptions) => Promise<ScenarioFault>;

/**
 * kill -9 the coordinator router: another router takes the election over. The killed one is kept
 * down until then (the supervisor would restart it at once, and it could win again), and started
 * again afterwards.
 */
export const killCoordinator: HaFault = async (env, ctx) => {
  const { node, generation } = await coordinatorNode(env.cluster);
  const proc = env.cluster.process(node.name);
  const startMs = ctx.now();
  proc.signal('SIGKILL');
  const held = proc.stop();
  ctx.log(`kill -9 coordinator ${node.name}`);
  let takeoverMs: number;
  try {
    takeoverMs = await untilAnotherCoordinates(env.cluster, node);
  } finally {
    await held;
    proc.start();
  }
  const next = await coordinatorNode(env.cluster);
  await env.cluster.waitHealthy(20_000, [node]);
  await settled(env.cluster);
  return { name: `kill -9 coordinator ${node.name}`, startMs, endMs: ctx.now(), figures: { takeoverMs, killed: node.name, newCoordinator: next.node.name, generationBefore: generation, generationAfter: next.generation } };
};

/**
 * SIGSTOP the coordinator past its lease: another router is elected; on SIGCONT the old one
 * must find itself deposed, and a command carrying its generation must be refused by a node.
 */
export const pauseCoordinator: HaFault = async (env, ctx, o) => {
  const { node, generation } = await coordinatorNode(env.cluster);
  const proc = env.cluster.process(node.name);
  const startMs = ctx.now();
  proc.signal('SIGSTOP');
  ctx.log(`SIGSTOP coordinator ${node.name} for ${o.pauseMs} ms`);
  let takeoverMs: number;
  try {
    takeoverMs = await untilAnotherCoordinates(env.cluster, node);
    await sleep(Math.max(0, o.pauseMs - takeoverMs));
  } finally {
    proc.signal('SIGCONT');
  }
  ctx.log(`SIGCONT ${node.name}`);
  const next = await coordinatorNode(env.cluster);
  const stepDownMs = await until(`${node.name} no longer says it coordinates`, async () => (await routerStatus(node, 300))?.router.coordinator === false, 5000);
  const refusal = await staleCoordinatorRefused(env, generation);
  await settled(env.cluster);
  return { name: `SIGSTOP coordinator ${node.name} ${o.pauseMs} ms`, startMs, endMs: ctx.now(), figures: { takeoverMs, stepDownMs, newCoordinator: next.node.name, generationBefore: generation, generationAfter: next.generation, oldGenerationRefusedWith: refusal } };
};

/**
 * The deposed coordinator's generation on a configuration: a node must refuse it (409
 * stale_coordinator). The configuration is otherwise the leader's current one, so a node that
 * wrongly took it would change nothing.
 */
async function staleCoordinatorRefused(env: HaEnv, generation: number): Promise<string> {
  const shard = env.cluster.shards[0]!.id;
  const { node } = await coordinatorNode(env.cluster);
  const s = (await routerStatus(node))!.shards.find((x) => x.id === shard)!;
  const leader = nodeByUrl(env.cluster, s.leader.url);
  // The new coordinator announces itself to every node within a health round or two.
  await sleep(1000);
  const cfg = { shard, epoch: s.epoch, role: 'leader', peerUrl: s.follower.url, inSync: s.inSync, minInsync: 1, coordinator: generation };
  const res = await request(`${leader.url}/internal/config`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${env.cluster.token}` }, body: JSON.stringify(cfg), signal: AbortSignal.timeout(2000) });
  const body = (await res.body.json()) as { error?: { code?: string } };
  return `${res.statusCode} ${body.error?.code ?? 'ok'}`;
}

/** kill -9 a router that does not coordinate: its clients move to the other one. */
export const killRouter: HaFault = async (env, ctx) => {
  const { node: coordinator } = await coordinatorNode(env.cluster);
  const victim = env.cluster.routers.find((r) => r !== coordinator)!;
  const proc = env.cluster.process(victim.name);
  const restarts = proc.restarts;
  const startMs = ctx.now();
  proc.signal('SIGKILL');
  ctx.log(`kill -9 router ${victim.name}`);
  const backMs = await until(`${victim.name} restarted`, async () => proc.restarts > restarts && (await routerStatus(victim, 300)) !== undefined, 20_000);
  return { name: `kill -9 router ${victim.name}`, startMs, endMs: ctx.now(), figures: { backMs } };
};

/** SIGSTOP a router that does not coordinate: its clients' requests hang until their deadline, then they move on. */
export const pauseRouter: HaFault = async (env, ctx, o) => {
  const { node: coordinator } = await coordinatorNode(env.cluster);
  const victim = env.cluster.routers.find((r) => r !== coordinator)!;
  const proc = env.cluster.process(victim.name);
  const startMs = ctx.now();
  proc.signal('SIGSTOP');
  ctx.log(`SIGSTOP router ${victim.name} for ${o.holdMs} ms`);
  try {
    await sleep(o.holdMs);
  } finally {
    proc.signal('SIGCONT');
  }
  return { name: `SIGSTOP router ${victim.name} ${o.holdMs} ms`, startMs, endMs: ctx.now() };
};

/** A router that does not coordinate cut off from one shard's leader: only that router's requests to that shard fail. */
export const partitionRouterFromLeader: HaFault = async (env, ctx, o) => {
  const shardId = env.cluster.shards[o.shard]!.id;
  const { node: coordinator } = await coordinatorNode(env.cluster);
  const router = env.cluster.routers.find((r) => r !== coordinator)!;
  const { leader } = await shardRoles(env.cluster, shardId);
  const startMs = ctx.now();
  const cut = await env.net.cut(router.host, leader.host);
  ctx.log(`partition ${router.name} <-/-> ${leader.name} (leader of ${shardId})`);
  try {
    await sleep(o.holdMs);
  } finally {
    await env.net.healLink(cut);
  }
  await settled(env.cluster);
  return { name: `partition ${router.name} | leader of ${shardId}`, shard: shardId, startMs, endMs: ctx.now() };
};

/** Only the follower -> leader direction dropped: the leader's messages arrive, its acknowledgements do not. */
export const oneWayFollowerToLeader: HaFault = async (env, ctx, o) => {
  const shardId = env.cluster.shards[o.shard]!.id;
  const { leader, follower } = await shardRoles(env.cluster, shardId);
  const startMs = ctx.now();
  const cut = await env.net.cut(follower.host, leader.host, { oneWay: true });
  ctx.log(`one-way partition ${follower.name} -/-> ${leader.name}`);
  try {
    await sleep(o.holdMs);
  } finally {
    await env.net.healLink(cut);
  }
  await settled(env.cluster);
  return { name: `one-way cut follower -> leader of ${shardId}`, shard: shardId, startMs, endMs: ctx.now() };
};

/** The leader cut off from the coordinator, but not from its follower: the coordinator promotes the follower; the old leader is fenced by it. */
export const partitionLeaderFromCoordinator: HaFault = async (env, ctx, o) => {
  const shardId = env.cluster.shards[o.shard]!.id;
  const { node: coordinator } = await coordinatorNode(env.cluster);
  const { leader, epoch } = await shardRoles(env.cluster, shardId);
  const startMs = ctx.now();
  const cut = await env.net.cut(coordinator.host, leader.host);
  ctx.log(`partition ${coordinator.name} <-/-> ${leader.name} (leader of ${shardId})`);
  let promotedMs: number;
  try {
    promotedMs = await untilPromoted(coordinator, shardId, leader, epoch);
    await sleep(o.holdMs);
  } finally {
    await env.net.healLink(cut);
  }
  ctx.log(`healed ${coordinator.name} <-> ${leader.name}`);
  await settled(env.cluster);
  return { name: `partition coordinator | leader of ${shardId}`, shard: shardId, startMs, endMs: ctx.now(), figures: { promotedMs } };
};

/** The leader <-> follower link cut: the leader asks to commit alone; healed, the follower catches up and is in sync again. */
export const partitionLeaderFollower: HaFault = async (env, ctx, o) => {
  const shardId = env.cluster.shards[o.shard]!.id;
  const { leader, follower, epoch } = await shardRoles(env.cluster, shardId);
  const startMs = ctx.now();
  const cut = await env.net.cut(leader.host, follower.host);
  ctx.log(`partition ${leader.name} <-/-> ${follower.name}`);
  let during: { inSync: boolean; epoch: number; leader: string } | undefined;
  try {
    await sleep(o.holdMs);
    // What the control plane says at the end of the cut: the follower out of sync, the same leader.
    const { node } = await coordinatorNode(env.cluster);
    const s = (await routerStatus(node))?.shards.find((x) => x.id === shardId);
    if (s !== undefined) during = { inSync: s.inSync, epoch: s.epoch, leader: s.leader.url };
  } finally {
    await env.net.healLink(cut);
  }
  ctx.log(`healed ${leader.name} <-> ${follower.name}`);
  const rejoinMs = await until(`${shardId} in sync again`, async () => {
    await settled(env.cluster, 500);
    return true;
  }, 30_000);
  return { name: `partition leader | follower of ${shardId}`, shard: shardId, startMs, endMs: ctx.now(), figures: { rejoinMs, epochBefore: epoch, epochDuring: during?.epoch ?? -1, inSyncDuring: during?.inSync ?? 'unknown', sameLeader: during?.leader === leader.url } };
};

/**
 * A router cut off from etcd (its map goes stale) while a failover is made through the
 * coordinator: the nodes refuse its old epoch, and it follows their hint to the new leader.
 */
export const staleRouterAfterFailover: HaFault = async (env, ctx, o) => {
  const shardId = env.cluster.shards[o.shard]!.id;
  const { node: coordinator } = await coordinatorNode(env.cluster);
  const stale = env.cluster.routers.find((r) => r !== coordinator)!;
  const aliases = env.etcdAliases[env.cluster.routers.indexOf(stale)]!;
  const startMs = ctx.now();
  const cuts: string[] = [];
  const figures: Record<string, string | number> = {};
  try {
    // The etcd client connects from 127.0.0.1 (it cannot bind a source address), so the cut is
    // by the addresses only this router reaches etcd at.
    for (const a of aliases) cuts.push(await env.net.cut('127.0.0.1', a));
    ctx.log(`partition ${stale.name} <-/-> etcd`);
    const res = await request(`${coordinator.url}/admin/failover?shard=${shardId}`, { method: 'POST', headers: { authorization: `Bearer ${env.cluster.token}` }, signal: AbortSignal.timeout(5000) });
    figures['failover'] = `${res.statusCode}`;
    await res.body.dump();
    ctx.log(`failover of ${shardId} through ${coordinator.name}: HTTP ${figures['failover']}`);
    await sleep(o.holdMs);
    // Proof that the router is stale and still serves the shard: its map's epoch is behind, and a
    // write and a read of a key of that shard through it succeed.
    figures['staleEpoch'] = (await routerStatus(stale))?.shards.find((x) => x.id === shardId)?.epoch ?? -1;
    figures['currentEpoch'] = (await routerStatus(coordinator))?.shards.find((x) => x.id === shardId)?.epoch ?? -1;
    figures['throughStaleRouter'] = await putAndGet(stale, keyOn(env.cluster, shardId));
  } finally {
    for (const c of cuts) await env.net.healLink(c);
  }
  ctx.log(`healed ${stale.name} <-> etcd`);
  await settled(env.cluster);
  return { name: `stale map on ${stale.name}, failover of ${shardId} through ${coordinator.name}`, shard: shardId, startMs, endMs: ctx.now(), figures };
};

/**
 * The old leader cut off from the coordinator *and* its follower, while a router cut off from
 * etcd can still reach it and keeps reading from it: the follower is promoted; the read lease
 * keeps the two from serving at once (the checker would see a stale read).
 */
export const isolatedLeaderStaleRouter: HaFault = async (env, ctx, o) => {
  const shardId = env.cluster.shards[o.shard]!.id;
  const { node: coordinator } = await coordinatorNode(env.cluster);
  const stale = env.cluster.routers.find((r) => r !== coordinator)!;
  const aliases = env.etcdAliases[env.cluster.routers.indexOf(stale)]!;
  const { leader, follower, epoch } = await shardRoles(env.cluster, shardId);
  const startMs = ctx.now();
  const cuts: string[] = [];
  let promotedMs = -1;
  try {
    for (const a of aliases) cuts.push(await env.net.cut('127.0.0.1', a));
    cuts.push(await env.net.cut(leader.host, coordinator.host));
    cuts.push(await env.net.cut(leader.host, follower.host));
    ctx.log(`partition ${leader.name} from ${coordinator.name} and ${follower.name}; ${stale.name} from etcd`);
    promotedMs = await untilPromoted(coordinator, shardId, leader, epoch);
    await sleep(o.holdMs);
  } finally {
    for (const c of cuts) await env.net.healLink(c);
  }
  ctx.log('healed');
  await settled(env.cluster);
  return { name: `isolated leader of ${shardId}, ${stale.name} stale`, shard: shardId, startMs, endMs: ctx.now(), figures: { promotedMs } };
};

/** Waits until a router other than `old` says it coordinates; returns how long it took. */
function untilAnotherCoordinates(cluster: Cluster, old: ClusterNode): Promise<number> {
  return until('another router coordinates', async () => {
    for (const r of cluster.routers) if (r !== old && (await routerStatus(r, 300))?.router.coordinator === true) return true;
    return false;
  }, 20_000);
}

/** Waits until the coordinator names another leader than `leader` for the shard, at a newer epoch; returns how long it took. */
function untilPromoted(coordinator: ClusterNode, shardId: string, leader: ClusterNode, epoch: number): Promise<number> {
  return until(`${shardId} gets a new leader`, async () => {
    // The coordinator's /status waits up to its STATUS_TIMEOUT_MS on the unreachable old leader.
    const s = (await routerStatus(coordinator, 3000))?.shards.find((x) => x.id === shardId);
    return s !== undefined && s.leader.url !== leader.url && s.epoch > epoch;
  }, 20_000);
}

/** A key the ring places on the shard (the same ketama ring as the routers). */
function keyOn(cluster: Cluster, shardId: string): string {
  const ring = freshPlacement(cluster.shards.map((s) => s.id));
  for (let i = 0; ; i += 1) if (ring.shardFor(`probe-${i}`) === shardId) return `probe-${i}`;
}

/** A put and a get of `key` through the router, as `put <status> get <status>`. */
async function putAndGet(router: ClusterNode, key: string): Promise<string> {
  const put = await request(`${router.url}/put`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key, value: 'probe' }), signal: AbortSignal.timeout(6000) }).catch(() => undefined);
  await put?.body.dump();
  const get = await request(`${router.url}/get?key=${encodeURIComponent(key)}`, { signal: AbortSignal.timeout(6000) }).catch(() => undefined);
  await get?.body.dump();
  return `put ${put?.statusCode ?? 'no answer'} get ${get?.statusCode ?? 'no answer'}`;
}

/** Two of three etcd members killed: no quorum. Routers serve on the map they have; nothing is promoted meanwhile or after. */
export const etcdQuorumLoss: HaFault = async (env, ctx, o) => {
  const before = await leaders(env.cluster);
  const startMs = ctx.now();
  env.etcd.kill(1);
  env.etcd.kill(2);
  ctx.log('etcd: kill -9 two of three members (quorum lost)');
  await sleep(o.holdMs);
  const during = await leaders(env.cluster);
  await Promise.all([env.etcd.restart(1), env.etcd.restart(2)]);
  ctx.log('etcd: members restarted (quorum back)');
  await settled(env.cluster);
  await sleep(1000);
  const after = await leaders(env.cluster);
  return { name: 'etcd quorum lost', startMs, endMs: ctx.now(), figures: { leadersBefore: before, leadersDuring: during, leadersAfter: after } };
};

/** One etcd member killed (a quorum remains): nothing should notice. */
export const killEtcdMember: HaFault = async (env, ctx) => {
  const startMs = ctx.now();
  env.etcd.kill(0);
  ctx.log('etcd: kill -9 one member');
  await sleep(2000);
  await env.etcd.restart(0);
  return { name: 'etcd one member killed', startMs, endMs: ctx.now() };
};

/** kill -9 a shard's leader: its in-sync follower is promoted by whichever router coordinates. */
export const killLeader: HaFault = async (env, ctx, o) => {
  const shardId = env.cluster.shards[o.shard]!.id;
  const { leader } = await shardRoles(env.cluster, shardId);
  const startMs = ctx.now();
  env.cluster.process(leader.name).signal('SIGKILL');
  ctx.log(`kill -9 ${leader.name} (leader of ${shardId})`);
  await settled(env.cluster);
  return { name: `kill -9 leader ${leader.name}`, shard: shardId, startMs, endMs: ctx.now() };
};

/** SIGSTOP a shard's leader for the hold time: promoted around it; on SIGCONT it learns it follows. */
export const pauseLeader: HaFault = async (env, ctx, o) => {
  const shardId = env.cluster.shards[o.shard]!.id;
  const { leader } = await shardRoles(env.cluster, shardId);
  const proc = env.cluster.process(leader.name);
  const startMs = ctx.now();
  proc.signal('SIGSTOP');
  ctx.log(`SIGSTOP ${leader.name} (leader of ${shardId}) for ${o.holdMs} ms`);
  try {
    await sleep(o.holdMs);
  } finally {
    proc.signal('SIGCONT');
  }
  await settled(env.cluster);
  return { name: `SIGSTOP leader ${leader.name} ${o.holdMs} ms`, shard: shardId, startMs, endMs: ctx.now() };
};

/**
 * Every shard's leader as the nodes themselves report it (not a router's map, which cannot change
 * while etcd is down), e.g. `shard-0:shard0-leader shard-1:shard1-follower`.
 */
async function leaders(cluster: Cluster): Promise<string> {
  const roles = await Promise.all(cluster.shards.map(async (s) => {
    const leading = await Promise.all([s.leader, s.follower].map(async (n) => ((await nodeRole(n)) === 'leader' ? n.name : undefined)));
    return `${s.id}:${leading.filter((x) => x !== undefined).join('+') || 'none'}`;
  }));
  return roles.join(' ');
}

async function nodeRole(n: ClusterNode): Promise<string | undefined> {
  try {
    const res = await request(`${n.url}/status`, { signal: AbortSignal.timeout(2000) });
    return ((await res.body.json()) as { role?: string }).role;
  } catch {
    return undefined;
  }
}

export const HA_FAULTS = { killCoordinator, pauseCoordinator, killRouter, pauseRouter, partitionRouterFromLeader, oneWayFollowerToLeader, partitionLeaderFromCoordinator, partitionLeaderFollower, staleRouterAfterFailover, isolatedLeaderStaleRouter, etcdQuorumLoss, killEtcdMember, killLeader, pauseLeader } satisfies Record<string, HaFault>;
export type HaFaultKind = keyof typeof HA_FAULTS;

export interface HaNemesisOptions extends HaFaultOptions {
  kinds: HaFaultKind[];
  seed: number;
  /** Quiet time after each fault. */
  settleMs: number;
  /** No fault starts later than this (ms into the run): each takes up to ~15 s to heal and settle. */
  lastStartMs: number;
  maxFaults?: number;
}

/**
 * The HA nemesis of `npm run chaos -- --ha`: every kind once (in seeded random order), then
 * random kinds, on random shards, one at a time, each healed and settled before the next.
 */
export function haNemesis(env: HaEnv, o: HaNemesisOptions): (ctx: ScenarioContext) => Promise<void> {
  return async (ctx) => {
    const random = rng(o.seed);
    const cover = shuffle(o.kinds, random);
    // The shards the run started with: with --reshard others come and go (appended, then removed).
    const shardCount = env.cluster.shards.length;
    let count = 0;
    await sleep(1000);
    while (!ctx.signal.aborted && ctx.now() < o.lastStartMs && count < (o.maxFaults ?? Number.POSITIVE_INFINITY)) {
      const kind = cover.shift() ?? o.kinds[Math.floor(random() * o.kinds.length)]!;
      const shard = Math.floor(random() * shardCount);
      ctx.record({ kind, ...(await HA_FAULTS[kind](env, ctx, { ...o, shard })) });
      count += 1;
      await sleep(o.settleMs);
    }
  };
}
