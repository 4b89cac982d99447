import type { Cluster } from '../cluster';
import type { LineSink } from '../supervisor';
import { writeClusterFile, type ClusterFile } from './cluster-file';
import { planReload, readTopology, writeTopology, type Topology } from './topology';

export interface ReloaderOptions {
  /** Where cluster.json goes (beside cluster.pid). */
  root: string;
  /** Where the nodes' data and topology.json live. */
  dataRoot: string;
  mode: ClusterFile['mode'];
  ports: ClusterFile['ports'];
  adminToken: string;
  sink: LineSink;
  /** How long a new pair may take to answer /health. */
  healthyTimeoutMs?: number;
}

/**
 * The supervisor's side of `npm run shard:add` / `shard:remove`: on SIGUSR2 it re-reads the
 * topology file and starts the pairs listed that it does not run, stops those no longer listed,
 * and tells the routers which shards their map holds. Reloads run one at a time, in the order
 * the signals came; each one is counted in cluster.json, so the command that sent the signal
 * knows when its reload is done and whether it failed.
 */
export class TopologyReloader {
  private seq = 0;
  private lastError: string | null = null;
  private queue: Promise<void> = Promise.resolve();
  private readonly onSignal = () => void this.reload();

  constructor(
    private readonly cluster: Cluster,
    private readonly opts: ReloaderOptions,
  ) {}

  /** The topology this cluster runs, written once for a data root that has none yet. */
  static topologyOf(cluster: Cluster): Topology {
    return { version: 1, shards: cluster.shards.map((s) => ({ id: s.id, leaderPort: s.leader.port, followerPort: s.follower.port, inMap: cluster.inMap(s.id) })) };
  }

  listen(): void {
    if (readTopology(this.opts.dataRoot) === undefined) writeTopology(this.opts.dataRoot, TopologyReloader.topologyOf(this.cluster));
    process.on('SIGUSR2', this.onSignal);
    this.writeFile();
  }

  close(): void {
    process.off('SIGUSR2', this.onSignal);
  }

  /** One reload, after any in progress; it never rejects: a failure is logged and recorded. */
  reload(): Promise<void> {
    this.queue = this.queue.then(() => this.reloadOnce());
    return this.queue;
  }

  private async reloadOnce(): Promise<void> {
    const log = (line: string) => this.opts.sink('supervisor', line);
    try {
      const wanted = readTopology(this.opts.dataRoot);
      if (wanted === undefined) throw new Error(`the topology file in ${this.opts.dataRoot} is gone; nothing changed`);
      const plan = planReload(this.cluster.shards.map((s) => ({ id: s.id, inMap: this.cluster.inMap(s.id) })), wanted);
      // Stopped first: a pair to start may take ports a stopped one frees.
      for (const id of plan.stop) {
        log(`topology: stopping ${id} (its data directories are kept)`);
        await this.cluster.removeShard(id);
      }
      for (const s of plan.start) {
        log(`topology: starting ${s.id} (leader :${s.leaderPort}, follower :${s.followerPort})`);
        const shard = await this.cluster.addShard(s, this.opts.healthyTimeoutMs);
        log(`topology: ${s.id} is up: leader ${shard.leader.url}, follower ${shard.follower.url}`);
      }
      for (const c of plan.inMap) this.cluster.setInMap(c.id, c.inMap);
      this.lastError = null;
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      log(`topology: reload failed: ${this.lastError}`);
    }
    this.seq += 1;
    this.writeFile();
  }

  private writeFile(): void {
    const c = this.cluster;
    const node = (n: { name: string; url: string }) => ({ name: n.name, url: n.url, pid: c.process(n.name).pid ?? null });
    writeClusterFile(this.opts.root, {
      version: 1,
      pid: process.pid,
      mode: this.opts.mode,
      dataRoot: this.opts.dataRoot,
      ports: this.opts.ports,
      routers: c.routers.map((r) => r.url),
      adminToken: this.opts.adminToken,
      shards: c.shards.map((s) => ({ id: s.id, inMap: c.inMap(s.id), leader: node(s.leader), follower: node(s.follower) })),
      reload: { seq: this.seq, error: this.lastError },
    });
  }
}
