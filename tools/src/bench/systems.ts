import { Pool, request } from 'undici';
import type { Cluster } from '../cluster';
import type { Skeletons } from '../skeletons';
import type { Op, System } from './config';
import { nodeTarget } from './drivers';

/** The systems of one run; etcd is absent with BENCH_ETCD=0 or when it could not be started. */
export interface Systems {
  ours: System;
  skeletonA: System;
  skeletonB: System;
  etcd?: System;
}

export function ourSystem(cluster: Cluster): System {
  const names = [cluster.router.name, ...cluster.shards.flatMap((s) => [s.leader.name, s.follower.name])];
  return { id: 'ours', label: 'ours', url: cluster.router.url, api: 'kv', processes: () => names.map((name) => ({ name, pid: cluster.process(name).pid })) };
}

export function skeletonSystems(s: Skeletons): Pick<Systems, 'skeletonA' | 'skeletonB'> {
  const pids = (nodes: Skeletons['all']) => () => nodes.map((n) => ({ name: n.name, pid: n.proc.pid }));
  return {
    skeletonA: { id: 'skeletonA', label: 'skeleton (a)', url: s.getRouter.url, api: 'kv', processes: pids([s.getRouter, s.getBackend]) },
    skeletonB: { id: 'skeletonB', label: 'skeleton (b)', url: s.putRouter.url, api: 'kv', processes: pids([s.putRouter, s.putLeader, s.putFollower]) },
  };
}

/** The skeleton an operation is compared with: (a) for GET, (b) for PUT and the mix. */
export const skeletonFor = (systems: Systems, op: Op): System => (op === 'GET' ? systems.skeletonA : systems.skeletonB);

/** Every system measured for an operation, in the order of each round. */
export function systemsFor(systems: Systems, op: Op): System[] {
  return [systems.ours, skeletonFor(systems, op), ...(systems.etcd === undefined ? [] : [systems.etcd])];
}

const SEED_IN_FLIGHT = 32;
const CHECK_TIMEOUT_MS = 2000;

/** Writes every key once into `sys`, so that GETs find them (200, not 404) in every system. */
export async function seed(sys: System, keys: string[], value: string): Promise<void> {
  const pool = new Pool(sys.url, { connections: SEED_IN_FLIGHT });
  const target = nodeTarget(pool, sys.api, 'PUT', value);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < keys.length; i = next++) {
      const t = target(keys[i]!);
      const res = await pool.request({ method: t.method, path: t.path, body: t.body, headers: { 'content-type': 'application/json' } });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`seeding ${sys.label} (${sys.url}): PUT ${keys[i]} answered ${res.statusCode}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: SEED_IN_FLIGHT }, worker));
  } finally {
    await pool.close();
  }
}

/** A GET through `sys` answers 200 with the value written: the load's 200s are real answers. */
export async function verifyKv(sys: System, value: string): Promise<void> {
  const res = await request(`${sys.url}/get?key=bench-0`, { signal: AbortSignal.timeout(CHECK_TIMEOUT_MS) });
  const text = await res.body.text();
  const got = res.statusCode === 200 ? (JSON.parse(text) as { value?: string }).value : undefined;
  if (got !== value) throw new Error(`${sys.label}: GET bench-0 answered ${res.statusCode} ${text.slice(0, 200)}, expected the value written`);
}
