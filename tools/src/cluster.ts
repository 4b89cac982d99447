import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { loopbackAddress } from './partition';
import { freePort } from './ports';
import { DEFAULT_RESTART, Supervised, type LineSink, type RestartPolicy } from './supervisor';

const ROOT = resolve(__dirname, '..', '..');
export const ROUTER_SCRIPT = resolve(ROOT, 'services/router/dist/main.js');
export const SHARD_SCRIPT = resolve(ROOT, 'services/shard/dist/main.js');
/** `npm start` keeps every node's data under the repository's `data/` (`npm run reset` wipes it). */
export const DEFAULT_DATA_ROOT = resolve(ROOT, 'data');

export interface ClusterOptions {
  shardCount?: number;
  /** `default`: router 5000, leader i 5001+i, follower i 6001+i. `free`: ports the OS picks (tests). */
  ports?: 'default' | 'free';
  /** Shared secret for /internal/*; a random one per run when not given. */
  token?: string;
  /** Extra environment for every node, e.g. shorter timeouts in tests. */
  env?: Record<string, string>;
  sink?: LineSink;
  restart?: RestartPolicy;
  /** Each shard node keeps its data in `<dataRoot>/<node name>` (default `./data`). */
  dataRoot?: string;
  /** Written into every data directory; a node refuses a directory from another cluster. */
  clusterId?: string;
  /** Routers (default 1). More than one needs `etcdEndpoints`: the embedded control plane serves one router. */
  routers?: number;
  /** The control plane on etcd; unset: embedded in the (single) router. */
  etcdEndpoints?: string[];
  /** Per router (by index), other etcd endpoints than `etcdEndpoints` (the fault harness gives each router its own). */
  etcdEndpointsFor?: (routerIndex: number) => string[];
  /**
   * `distinct`: every process listens on, and connects from, its own loopback address
   * (127.0.0.10 and up), so the fault harness can cut one link with iptables. Default: 127.0.0.1.
   */
  addresses?: 'shared' | 'distinct';
}

export interface ClusterNode {
  name: string;
  url: string;
  port: number;
  /** The address it listens on and connects from. */
  host: string;
}

export interface ClusterShard {
  id: string;
  leader: ClusterNode;
  follower: ClusterNode;
}

/**
 * The whole local cluster as supervised processes: what `npm start` runs and what the
 * integration tests start on free ports. Same names, same environment as docker-compose.yml.
 */
export class Cluster {
  private readonly procs = new Map<string, Supervised>();

  private constructor(
    readonly routers: ClusterNode[],
    readonly shards: ClusterShard[],
    readonly token: string,
  ) {}

  /** The first router (the coordinator of an embedded control plane). */
  get router(): ClusterNode {
    return this.routers[0]!;
  }

  static async create(opts: ClusterOptions = {}): Promise<Cluster> {
    const count = opts.shardCount ?? 3;
    const routerCount = opts.routers ?? 1;
    if (routerCount > 1 && opts.etcdEndpoints === undefined && opts.etcdEndpointsFor === undefined) throw new Error('more than one router needs the etcd control plane (etcdEndpoints)');
    const port = async (fallback: number) => (opts.ports === 'free' ? freePort() : fallback);
    let index = 0;
    const node = async (name: string, fallback: number): Promise<ClusterNode> => {
      const p = await port(fallback);
      const host = opts.addresses === 'distinct' ? loopbackAddress(index++) : '127.0.0.1';
      return { name, port: p, host, url: `http://${host}:${p}` };
    };
    const routers: ClusterNode[] = [];
    for (let i = 0; i < routerCount; i += 1) routers.push(await node(i === 0 ? 'router' : `router-${i + 1}`, 5000 + 10 * i));
    const shards: ClusterShard[] = [];
    for (let i = 0; i < count; i += 1) {
      shards.push({ id: `shard-${i}`, leader: await node(`shard${i}-leader`, 5001 + i), follower: await node(`shard${i}-follower`, 6001 + i) });
    }
    const cluster = new Cluster(routers, shards, opts.token ?? randomBytes(24).toString('hex'));
    cluster.define(opts);
    return cluster;
  }

  get nodes(): ClusterNode[] {
    return [...this.routers, ...this.shards.flatMap((s) => [s.leader, s.follower])];
  }

  /** The SHARDS value the router reads (same format as in docker-compose.yml). */
  get shardsSpec(): string {
    return this.shards.map((s) => `${s.id}=${s.leader.url},${s.follower.url}`).join(';');
  }

  private define(opts: ClusterOptions): void {
    const sink = opts.sink ?? (() => {});
    const restart = opts.restart ?? DEFAULT_RESTART;
    const dataRoot = resolve(opts.dataRoot ?? DEFAULT_DATA_ROOT);
    const cluster: Record<string, string> = opts.clusterId === undefined ? {} : { CLUSTER_ID: opts.clusterId };
    const add = (n: ClusterNode, script: string, env: Record<string, string>) => {
      const own: Record<string, string> = { HOST: n.host, PORT: String(n.port), NODE_NAME: n.name, ...(opts.addresses === 'distinct' ? { SOURCE_ADDRESS: n.host } : {}) };
      this.procs.set(n.name, new Supervised({ name: n.name, script, env: { CLUSTER_TOKEN: this.token, ...cluster, ...opts.env, ...own, ...env } }, sink, restart));
    };
    // Any router may coordinate; every shard node knows them all.
    const storage = (name: string) => ({ DATA_DIR: join(dataRoot, name), COORDINATOR_URLS: this.routers.map((r) => r.url).join(',') });
    for (const s of this.shards) {
      add(s.follower, SHARD_SCRIPT, { SHARD_ID: s.id, ROLE: 'follower', LEADER_URL: s.leader.url, ...storage(s.follower.name) });
      add(s.leader, SHARD_SCRIPT, { SHARD_ID: s.id, ROLE: 'leader', FOLLOWER_URL: s.follower.url, ...storage(s.leader.name) });
    }
    const etcd = (i: number): Record<string, string> => {
      const endpoints = opts.etcdEndpointsFor?.(i) ?? opts.etcdEndpoints;
      return endpoints === undefined ? {} : { ETCD_ENDPOINTS: endpoints.join(',') };
    };
    this.routers.forEach((r, i) => add(r, ROUTER_SCRIPT, { SHARDS: this.shardsSpec, DATA_DIR: join(dataRoot, r.name), ROUTER_ID: r.name, ROUTER_URL: r.url, ...etcd(i) }));
  }

  /** Starts every process and waits until each answers /health. */
  /**
   * Starts every process and waits until each answers /health and, through the router, every
   * shard's leader serves with its follower in sync: only then does a first write succeed (before
   * the first replication round a leader refuses writes with 503 no_replica).
   */
  async start(healthyTimeoutMs = 30_000): Promise<void> {
    for (const p of this.procs.values()) p.start();
    const deadline = Date.now() + healthyTimeoutMs;
    await this.waitHealthy(healthyTimeoutMs);
    while (!(await this.replicating())) {
      if (Date.now() > deadline) throw new Error(`shards not replicating after ${healthyTimeoutMs} ms (see ${this.router.url}/status)`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Every shard, as the router reports it: a serving leader whose follower is reachable and in sync. */
  private async replicating(): Promise<boolean> {
    try {
      const res = await request(`${this.router.url}/status`, { signal: AbortSignal.timeout(2000) });
      const { shards } = (await res.body.json()) as { shards: Array<{ inSync: boolean; leader: { state?: string; follower?: { reachable?: boolean } } }> };
      return shards.every((s) => s.inSync && s.leader.state === 'serving' && s.leader.follower?.reachable === true);
    } catch {
      return false;
    }
  }

  process(name: string): Supervised {
    const p = this.procs.get(name);
    if (p === undefined) throw new Error(`no node named ${name}`);
    return p;
  }

  async waitHealthy(timeoutMs = 30_000, nodes: ClusterNode[] = this.nodes): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const n of nodes) {
      while (!(await isHealthy(n.url))) {
        const gaveUp = this.procs.get(n.name)?.gaveUp;
        if (gaveUp !== undefined) throw new Error(gaveUp);
        if (Date.now() > deadline) throw new Error(`${n.name} (${n.url}) not healthy after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  async stop(): Promise<void> {
    await Promise.all([...this.procs.values()].map((p) => p.stop()));
  }
}

export async function isHealthy(url: string): Promise<boolean> {
  try {
    const res = await request(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    return false;
  }
}
