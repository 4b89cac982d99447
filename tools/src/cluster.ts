import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { loopbackAddress } from './partition';
import { freePort, portIsFree } from './ports';
import { DEFAULT_RESTART, Supervised, type LineSink, type RestartPolicy } from './supervisor';

const ROOT = resolve(__dirname, '..', '..');
export const ROUTER_SCRIPT = resolve(ROOT, 'services/router/dist/main.js');
export const SHARD_SCRIPT = resolve(ROOT, 'services/shard/dist/main.js');
/** `npm start` keeps every node's data under the repository's `data/` (`npm run reset` wipes it). */
export const DEFAULT_DATA_ROOT = resolve(ROOT, 'data');
/** How many used shard ids `nextShardId` passes over before it gives up. */
const SHARD_ID_SKIPS_MAX = 1000;

export interface ClusterOptions {
  shardCount?: number;
  /**
   * The shards by id (`shard-N`), instead of `shard-0`..`shard-<shardCount - 1>`: a cluster that
   * gained or lost shards by resharding restarts with the ids it has now. A port left out is
   * chosen like any other (`ports`).
   */
  shards?: ShardPlan[];
  /** `default`: router 5000 (gRPC 5100), leader i 5001+i, follower i 6001+i. `free`: ports the OS picks (tests). */
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
  /** Routers only: the gRPC service's port, and `host:port` for a gRPC client. */
  grpcPort?: number;
  grpcAddress?: string;
}

/** One shard to run: its id (`shard-N`) and, optionally, its nodes' ports. */
export interface ShardPlan {
  id: string;
  leaderPort?: number;
  followerPort?: number;
  /**
   * Whether the routers' shard map holds it, so that they are given it in SHARDS (the stored slot
   * map is what routers route by; SHARDS agreeing with it keeps their start-up quiet and seeds
   * the same map after a reset of the control plane). Default: true for
   * the shards a cluster is created with, false for one `addShard` starts.
   */
  inMap?: boolean;
}

/** `shard-N`: the form every shard id of a local cluster has (its nodes are `shardN-leader`, `shardN-follower`). */
const SHARD_ID = /^shard-(0|[1-9]\d{0,3})$/;

export function shardIndex(id: string): number {
  const m = SHARD_ID.exec(id);
  if (m === null) throw new Error(`shard id "${id}" is not of the form shard-N`);
  return Number(m[1]);
}

/** The default ports of shard-N, as `npm start` and docker-compose.yml give them. */
export function defaultShardPorts(index: number): { leaderPort: number; followerPort: number } {
  return { leaderPort: 5001 + index, followerPort: 6001 + index };
}

/**
 * The id a new shard gets: one above the highest of `ids`, skipping any whose data directory
 * exists in `dataRoot`. A removed shard keeps its directory, and a node started on it would come
 * up as that old shard's node (its epoch and keys), not as a new, empty one.
 */
export function nextShardId(ids: readonly string[], dataRoot: string): string {
  let i = Math.max(-1, ...ids.map(shardIndex)) + 1;
  const used = (n: number) => [`shard${n}-leader`, `shard${n}-follower`].some((name) => existsSync(join(dataRoot, name)));
  for (let skipped = 0; used(i); skipped += 1) {
    if (skipped >= SHARD_ID_SKIPS_MAX) throw new Error(`no unused shard id up to shard-${i} (their data directories exist in ${dataRoot})`);
    i += 1;
  }
  return `shard-${i}`;
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
  /** Shards running but not (yet) in the routers' map: started to be added, or waiting to be. */
  private readonly outsideMap = new Set<string>();
  /** Hands out each process's loopback address under `addresses: 'distinct'`. */
  private addressIndex = 0;

  private constructor(
    readonly routers: ClusterNode[],
    readonly shards: ClusterShard[],
    readonly token: string,
    private readonly opts: ClusterOptions,
  ) {}

  /** The first router (the coordinator of an embedded control plane). */
  get router(): ClusterNode {
    return this.routers[0]!;
  }

  static async create(opts: ClusterOptions = {}): Promise<Cluster> {
    const routerCount = opts.routers ?? 1;
    if (routerCount > 1 && opts.etcdEndpoints === undefined && opts.etcdEndpointsFor === undefined) throw new Error('more than one router needs the etcd control plane (etcdEndpoints)');
    const plans: ShardPlan[] = opts.shards ?? Array.from({ length: opts.shardCount ?? 3 }, (_, i) => ({ id: `shard-${i}` }));
    if (plans.length === 0) throw new Error('a cluster needs at least one shard');
    const cluster = new Cluster([], [], opts.token ?? randomBytes(24).toString('hex'), opts);
    for (let i = 0; i < routerCount; i += 1) cluster.routers.push(await cluster.routerNode(i));
    for (const plan of plans) {
      cluster.shards.push(await cluster.planShard(plan));
      if (plan.inMap === false) cluster.outsideMap.add(plan.id);
    }
    for (const s of cluster.shards) cluster.defineShard(s);
    cluster.routers.forEach((r, i) => cluster.defineRouter(r, i));
    return cluster;
  }

  get nodes(): ClusterNode[] {
    return [...this.routers, ...this.shards.flatMap((s) => [s.leader, s.follower])];
  }

  /** The SHARDS value the router reads (same format as in docker-compose.yml): the shards in its map. */
  get shardsSpec(): string {
    return this.shards.filter((s) => !this.outsideMap.has(s.id)).map((s) => `${s.id}=${s.leader.url},${s.follower.url}`).join(';');
  }

  /** Router i: HTTP on 5000 + 10i and gRPC 100 above it (as the router's own default), or two free ports. */
  private async routerNode(i: number): Promise<ClusterNode> {
    const free = this.opts.ports === 'free';
    const n = await this.node(i === 0 ? 'router' : `router-${i + 1}`, free ? undefined : 5000 + 10 * i);
    const grpcPort = free ? await freePort() : n.port + 100;
    return { ...n, grpcPort, grpcAddress: `${n.host}:${grpcPort}` };
  }

  private async node(name: string, port: number | undefined): Promise<ClusterNode> {
    const p = port ?? (await freePort());
    const host = this.opts.addresses === 'distinct' ? loopbackAddress(this.addressIndex++) : '127.0.0.1';
    return { name, port: p, host, url: `http://${host}:${p}` };
  }

  /** A port given in the plan wins; otherwise the mode's: the default one, or one the OS has free. */
  private async planShard(plan: ShardPlan): Promise<ClusterShard> {
    const i = shardIndex(plan.id);
    if (this.shards.some((s) => s.id === plan.id)) throw new Error(`${plan.id} is already in the cluster`);
    const fallback = this.opts.ports === 'free' ? { leaderPort: undefined, followerPort: undefined } : defaultShardPorts(i);
    const shard = {
      id: plan.id,
      leader: await this.node(`shard${i}-leader`, plan.leaderPort ?? fallback.leaderPort),
      follower: await this.node(`shard${i}-follower`, plan.followerPort ?? fallback.followerPort),
    };
    const ports = [shard.leader.port, shard.follower.port];
    const taken = this.nodes.find((n) => ports.includes(n.port) || (n.grpcPort !== undefined && ports.includes(n.grpcPort)));
    if (taken !== undefined) throw new Error(`${plan.id} would listen on port ${ports.find((p) => p === taken.port || p === taken.grpcPort)}, which ${taken.name} uses`);
    return shard;
  }

  private get dataDirRoot(): string {
    return resolve(this.opts.dataRoot ?? DEFAULT_DATA_ROOT);
  }

  private defineProcess(n: ClusterNode, script: string, env: Record<string, string>): void {
    const o = this.opts;
    const cluster: Record<string, string> = o.clusterId === undefined ? {} : { CLUSTER_ID: o.clusterId };
    const own: Record<string, string> = { HOST: n.host, PORT: String(n.port), NODE_NAME: n.name, ...(o.addresses === 'distinct' ? { SOURCE_ADDRESS: n.host } : {}) };
    const spec = { name: n.name, script, env: { CLUSTER_TOKEN: this.token, ...cluster, ...o.env, ...own, ...env } };
    this.procs.set(n.name, new Supervised(spec, o.sink ?? (() => {}), o.restart ?? DEFAULT_RESTART));
  }

  private defineShard(s: ClusterShard): void {
    // Any router may coordinate; every shard node knows them all.
    const storage = (name: string) => ({ DATA_DIR: join(this.dataDirRoot, name), COORDINATOR_URLS: this.routers.map((r) => r.url).join(',') });
    this.defineProcess(s.follower, SHARD_SCRIPT, { SHARD_ID: s.id, ROLE: 'follower', LEADER_URL: s.leader.url, ...storage(s.follower.name) });
    this.defineProcess(s.leader, SHARD_SCRIPT, { SHARD_ID: s.id, ROLE: 'leader', FOLLOWER_URL: s.follower.url, ...storage(s.leader.name) });
  }

  private defineRouter(r: ClusterNode, i: number): void {
    const endpoints = this.opts.etcdEndpointsFor?.(i) ?? this.opts.etcdEndpoints;
    const etcd: Record<string, string> = endpoints === undefined ? {} : { ETCD_ENDPOINTS: endpoints.join(',') };
    // The routers split a per-client rate limit between them (README, *Rate limits*); a value given explicitly wins.
    const rateLimitRouters = this.opts.env?.['RATE_LIMIT_ROUTERS'] ?? process.env['RATE_LIMIT_ROUTERS'] ?? String(this.routers.length);
    this.defineProcess(r, ROUTER_SCRIPT, { SHARDS: this.shardsSpec, DATA_DIR: join(this.dataDirRoot, r.name), ROUTER_ID: r.name, ROUTER_URL: r.url, RATE_LIMIT_ROUTERS: rateLimitRouters, GRPC_PORT: String(r.grpcPort), ...etcd });
  }

  /** The id `addShard` gives a shard when it is not told one (see `nextShardId`). */
  nextShardId(): string {
    return nextShardId(this.shards.map((s) => s.id), this.dataDirRoot);
  }

  /**
   * Starts one more leader/follower pair, supervised like the others, and waits until both answer
   * /health. It is not in the router's shard map yet: `POST /admin/shards` on the router adds it
   * (see docs/local-resharding.md); then `setInMap(id, true)`, so that a router restarted from
   * then on is given it in SHARDS.
   */
  async addShard(plan: Partial<ShardPlan> = {}, healthyTimeoutMs = 30_000): Promise<ClusterShard> {
    const shard = await this.planShard({ ...plan, id: plan.id ?? this.nextShardId() });
    // A port someone else listens on would crash-loop the node, or worse, answer its /health.
    for (const n of [shard.leader, shard.follower]) if (!(await portIsFree(n.port, n.host))) throw new Error(`${shard.id}: port ${n.port} (${n.name}) is already in use`);
    this.shards.push(shard);
    this.defineShard(shard);
    this.setInMap(shard.id, plan.inMap ?? false);
    for (const n of [shard.follower, shard.leader]) this.process(n.name).start();
    try {
      await this.waitHealthy(healthyTimeoutMs, [shard.follower, shard.leader]);
    } catch (err) {
      await this.removeShard(shard.id);
      throw err;
    }
    return shard;
  }

  /**
   * Stops a pair for good and forgets it; its data directories stay. Call it once the router has
   * drained the shard (`DELETE /admin/shards/<id>`): a pair stopped earlier takes its keys with it.
   */
  async removeShard(id: string): Promise<void> {
    const at = this.shards.findIndex((s) => s.id === id);
    if (at < 0) throw new Error(`no shard ${id} in this cluster`);
    if (this.shards.length === 1) throw new Error(`${id} is the last shard; a cluster needs at least one`);
    const [shard] = this.shards.splice(at, 1);
    this.outsideMap.delete(id);
    this.updateRouterShards();
    const names = [shard!.leader.name, shard!.follower.name];
    await Promise.all(names.map((name) => this.process(name).stop()));
    for (const name of names) this.procs.delete(name);
  }

  /** Records whether the routers' map holds shard `id` (added by, or drained for, resharding). */
  setInMap(id: string, inMap: boolean): void {
    if (!this.shards.some((s) => s.id === id)) throw new Error(`no shard ${id} in this cluster`);
    if (inMap) this.outsideMap.delete(id);
    else this.outsideMap.add(id);
    this.updateRouterShards();
  }

  inMap(id: string): boolean {
    return this.shards.some((s) => s.id === id) && !this.outsideMap.has(id);
  }

  /** The routers' SHARDS take effect at their next (re)start: a router must be given the shards its stored map holds. */
  private updateRouterShards(): void {
    for (const r of this.routers) this.procs.get(r.name)?.setEnv({ SHARDS: this.shardsSpec });
  }

  /**
   * Starts every process and waits until each answers /health and, through the router, every
   * shard's leader serves with its follower in sync: only then does a first write succeed (before
   * the first replication round a leader refuses writes with 503 no_replica).
   */
  async start(healthyTimeoutMs = 30_000): Promise<void> {
    for (const p of this.procs.values()) p.start();
    const deadline = Date.now() + healthyTimeoutMs;
    // A pair outside the map waits, once it has run before, for a coordinator that does not know it.
    const serving = [...this.routers, ...this.shards.filter((s) => this.inMap(s.id)).flatMap((s) => [s.leader, s.follower])];
    await this.waitHealthy(healthyTimeoutMs, serving);
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
