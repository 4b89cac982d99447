import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ShardPlan } from '../cluster';

/**
 * `<data root>/topology.json`: the shards the local supervisor (`npm start`) runs. It is the
 * desired state: `npm run shard:add` / `shard:remove` edit it and send the supervisor SIGUSR2,
 * and the supervisor starts the pairs listed that it does not run and stops those it runs that
 * are no longer listed. It outlives the supervisor, so a cluster resharded to 4 shards restarts
 * as 4 shards.
 */
export interface Topology {
  version: 1;
  shards: TopologyShard[];
}

export interface TopologyShard {
  id: string;
  leaderPort: number;
  followerPort: number;
  /**
   * Whether the router's shard map holds this shard. A pair is started before `POST
   * /admin/shards` adds it; until then it must not be in the routers' SHARDS, which a router
   * checks against its stored map at start-up (a difference is refused).
   */
  inMap: boolean;
}

export const TOPOLOGY_FILE = 'topology.json';
/** Far more than a local machine runs; a file listing more is not ours. */
const TOPOLOGY_SHARDS_MAX = 64;

export function topologyPath(dataRoot: string): string {
  return join(dataRoot, TOPOLOGY_FILE);
}

/** The topology in `dataRoot`, or undefined when there is none yet (a data root never started). */
export function readTopology(dataRoot: string): Topology | undefined {
  const file = topologyPath(dataRoot);
  if (!existsSync(file)) return undefined;
  return parseTopology(readFileSync(file, 'utf8'), file);
}

export function parseTopology(text: string, source = TOPOLOGY_FILE): Topology {
  const bad = (why: string) => new Error(`${source}: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw bad(`not JSON (${(err as Error).message})`);
  }
  const d = doc as Partial<Topology>;
  if (d.version !== 1 || !Array.isArray(d.shards)) throw bad('expected {"version":1,"shards":[...]}');
  if (d.shards.length > TOPOLOGY_SHARDS_MAX) throw bad(`${d.shards.length} shards, more than ${TOPOLOGY_SHARDS_MAX}`);
  const ids = new Set<string>();
  for (const s of d.shards) {
    const ok = typeof s?.id === 'string' && Number.isInteger(s.leaderPort) && Number.isInteger(s.followerPort) && typeof s.inMap === 'boolean';
    if (!ok) throw bad(`malformed shard entry ${JSON.stringify(s)}`);
    if (ids.has(s.id)) throw bad(`${s.id} is listed twice`);
    ids.add(s.id);
  }
  return { version: 1, shards: d.shards };
}

/** Written to a temporary file and renamed over the old one, so a reader never sees half a file. */
export function writeTopology(dataRoot: string, topology: Topology): void {
  const file = topologyPath(dataRoot);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(topology, null, 2)}\n`);
  renameSync(tmp, file);
}

/** The shards to create a cluster with; those not in the map yet are run but left out of the routers' SHARDS. */
export function plansOf(topology: Topology): ShardPlan[] {
  return topology.shards.map(({ id, leaderPort, followerPort, inMap }) => ({ id, leaderPort, followerPort, inMap }));
}

/**
 * The topology to start a cluster with: the shards in the map. A pair whose `shard:add` did not
 * finish is left out: the router's map does not hold it, so its coordinator would never
 * configure it, and a node that has run before waits for that in standby (never healthy).
 */
export function withoutUnfinished(topology: Topology): { topology: Topology; dropped: TopologyShard[] } {
  return { topology: { ...topology, shards: topology.shards.filter((s) => s.inMap) }, dropped: topology.shards.filter((s) => !s.inMap) };
}

/** What a reload does: pairs to stop (running, not listed), pairs to start (listed, not running), map flags to change. */
export interface ReloadPlan {
  stop: string[];
  start: TopologyShard[];
  inMap: Array<{ id: string; inMap: boolean }>;
}

export function planReload(running: ReadonlyArray<{ id: string; inMap: boolean }>, wanted: Topology): ReloadPlan {
  const have = new Map(running.map((s) => [s.id, s.inMap]));
  const want = new Set(wanted.shards.map((s) => s.id));
  return {
    stop: running.filter((s) => !want.has(s.id)).map((s) => s.id),
    start: wanted.shards.filter((s) => !have.has(s.id)),
    inMap: wanted.shards.filter((s) => have.has(s.id) && have.get(s.id) !== s.inMap).map((s) => ({ id: s.id, inMap: s.inMap })),
  };
}
