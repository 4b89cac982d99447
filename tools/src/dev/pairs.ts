import { defaultShardPorts, isHealthy, nextShardId, shardIndex } from '../cluster';
import { freePort, portIsFree } from '../ports';
import { CommandError, readClusterFile, runningCluster, type ClusterFile } from './cluster-file';
import { readTopology, writeTopology, type Topology, type TopologyShard } from './topology';

/**
 * The shard commands' side of the supervisor: edit its topology file, signal it (SIGUSR2) and
 * wait until its reload is recorded in cluster.json. reshard.ts drives the router around these.
 */
export interface CommandOptions {
  /** Where cluster.json is (the repository's data/ for `npm start`). */
  root: string;
  /** Progress lines. */
  out: (line: string) => void;
  reloadTimeoutMs?: number;
  healthyTimeoutMs?: number;
  migrationTimeoutMs?: number;
  mapPollMs?: number;
}

/** A reload starts a pair and waits for its /health (the supervisor allows it 30 s), so more than that. */
const RELOAD_TIMEOUT_MS = 90_000;
const HEALTHY_TIMEOUT_MS = 60_000;


// ---------------------------------------------------------------------------------------------
// The supervisor: the topology file and SIGUSR2.

/** Changes the topology file, signals the supervisor, and resolves once it has applied it. */
export async function changeTopology(o: CommandOptions, change: (t: Topology) => Topology): Promise<ClusterFile> {
  const info = runningCluster(o.root);
  const topology = readTopology(info.dataRoot);
  if (topology === undefined) throw new CommandError(`${info.dataRoot}/topology.json is missing; restart the cluster (npm start) to write it`);
  writeTopology(info.dataRoot, change(topology));
  const before = info.reload.seq;
  process.kill(info.pid, 'SIGUSR2');
  const deadline = Date.now() + (o.reloadTimeoutMs ?? RELOAD_TIMEOUT_MS);
  for (;;) {
    const now = readClusterFile(o.root);
    if (now === undefined) throw new CommandError('the cluster stopped while it was reloading its topology');
    if (now.reload.seq > before) {
      if (now.reload.error !== null) {
        // Put the file back: the supervisor runs what it ran, and a later reload or restart must not try this change again.
        writeTopology(info.dataRoot, topology);
        throw new CommandError(`the cluster could not apply the topology: ${now.reload.error}`);
      }
      return now;
    }
    if (Date.now() > deadline) throw new CommandError(`the cluster (pid ${info.pid}) did not apply the topology within ${o.reloadTimeoutMs ?? RELOAD_TIMEOUT_MS} ms; see its output`);
    await sleep(100);
  }
}

/** The next shard and its ports: shard-N on 5001+N / 6001+N (or free ports for a cluster on free ports). */
export async function nextShard(info: ClusterFile, topology: Topology): Promise<TopologyShard> {
  const id = nextShardId(topology.shards.map((s) => s.id), info.dataRoot);
  const ports = info.ports === 'free' ? { leaderPort: await freePort(), followerPort: await freePort() } : defaultShardPorts(shardIndex(id));
  const routerPorts = info.routers.map((u) => Number(new URL(u).port));
  for (const port of [ports.leaderPort, ports.followerPort]) {
    if (routerPorts.includes(port)) throw new CommandError(`${id} would listen on ${port}, a router's port; remove a shard with a lower id first, or run the cluster on free ports`);
    if (!(await portIsFree(port))) throw new CommandError(`${id} would listen on ${port}, which is in use`);
  }
  return { id, ...ports, inMap: false };
}

/** A pair the supervisor runs, as cluster.json lists it. */
export type RunningShard = ClusterFile['shards'][number];

/** Starts the next pair (or the one a failed add left behind) and waits until both answer /health. */
export async function startPair(o: CommandOptions): Promise<RunningShard> {
  let info = runningCluster(o.root);
  const topology = readTopology(info.dataRoot);
  const waiting = topology?.shards.find((s) => !s.inMap);
  const shard = waiting ?? (await nextShard(info, topology ?? { version: 1, shards: [] }));
  if (waiting !== undefined) o.out(`resuming ${shard.id}: its pair runs, but the router's map does not hold it yet`);
  else {
    o.out(`starting ${shard.id}: leader :${shard.leaderPort}, follower :${shard.followerPort} (data in ${info.dataRoot}/shard${shardIndex(shard.id)}-{leader,follower})`);
    info = await changeTopology(o, (t) => ({ ...t, shards: [...t.shards, shard] }));
  }
  const running = info.shards.find((s) => s.id === shard.id);
  if (running === undefined) throw new CommandError(`the cluster does not run ${shard.id} although its topology lists it; see the cluster's output`);
  await waitHealthy([running.follower.url, running.leader.url], o.healthyTimeoutMs ?? HEALTHY_TIMEOUT_MS);
  return running;
}

/** Stops a pair (drops it from the topology file); its data directories stay. */
export function stopPair(o: CommandOptions, id: string): Promise<ClusterFile> {
  return changeTopology(o, (t) => ({ ...t, shards: t.shards.filter((s) => s.id !== id) }));
}

/** Records whether the router's map holds the shard: the routers' SHARDS at their next start follow it. */
export function setInMap(o: CommandOptions, id: string, inMap: boolean): Promise<ClusterFile> {
  return changeTopology(o, (t) => ({ ...t, shards: t.shards.map((s) => (s.id === id ? { ...s, inMap } : s)) }));
}

async function waitHealthy(urls: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const url of urls) {
    while (!(await isHealthy(url))) {
      if (Date.now() > deadline) throw new CommandError(`${url} did not answer /health within ${timeoutMs} ms; see the cluster's output`);
      await sleep(200);
    }
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

