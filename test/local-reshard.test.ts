// The local cluster's side of online resharding, without the router's resharding core: a pair
// is started and stopped while the cluster runs, both through the Cluster API the resharding
// tests use and through the running supervisor (`npm start`), which takes its shards from
// topology.json and re-reads it on SIGUSR2. Every process and temp directory is removed after
// each test, also when it fails.
import { isHealthy, type ClusterShard } from '@shardkv/tools';
import { readClusterFile, type ClusterFile } from '@shardkv/tools/dist/dev/cluster-file';
import { changeTopology, startPair, stopPair } from '@shardkv/tools/dist/dev/pairs';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { newDataRoot, removeDataRoot, startCluster, type TestCluster } from './helpers';

const CLUSTER_MAIN = resolve(__dirname, '..', 'tools', 'dist', 'cluster-main.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pids: number[], timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

describe('Cluster.addShard / removeShard', () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  test('adds a pair answering /health, kept out of the routers\' SHARDS until it is in the map, and removes it with its processes', async () => {
    cluster = await startCluster({ shardCount: 2 });
    const routerEnv = () => cluster!.process('router').spec.env.SHARDS!;
    const shard: ClusterShard = await cluster.addShard();
    expect(shard.id).toBe('shard-2');
    expect(await isHealthy(shard.leader.url)).toBe(true);
    expect(await isHealthy(shard.follower.url)).toBe(true);
    expect(routerEnv()).not.toMatch(/shard-2=/);
    cluster.setInMap('shard-2', true);
    expect(routerEnv()).toMatch(new RegExp(`shard-2=${shard.leader.url},${shard.follower.url}`));

    const pids = [shard.leader.name, shard.follower.name].map((n) => cluster!.process(n).pid!);
    await cluster.removeShard('shard-2');
    expect(await gone(pids)).toBe(true);
    expect(cluster.shards.map((s) => s.id)).toEqual(['shard-0', 'shard-1']);
    expect(routerEnv()).not.toMatch(/shard-2=/);
    expect(() => cluster!.process(shard.leader.name)).toThrow(/no node named/);
    // Its data stays, so the next shard gets a new id rather than the old shard's directories.
    expect(existsSync(join(cluster.dataRoot, 'shard2-leader'))).toBe(true);
    expect(cluster.nextShardId()).toBe('shard-3');
  });
});

describe('the supervisor reloads topology.json on SIGUSR2', () => {
  let supervisor: ChildProcess | undefined;
  let root: string | undefined;
  const output: string[] = [];

  afterEach(async () => {
    if (supervisor?.pid !== undefined && supervisor.exitCode === null && supervisor.signalCode === null) {
      const exited = new Promise((r) => supervisor!.once('exit', r));
      supervisor.kill('SIGTERM');
      // Its nodes exit with it (they watch its stdin pipe), so a SIGKILL leaves none behind either.
      const timer = setTimeout(() => supervisor?.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    if (root !== undefined) removeDataRoot(root);
    supervisor = undefined;
    root = undefined;
    output.length = 0;
  });

  async function startSupervisor(dataRoot: string): Promise<ClusterFile> {
    supervisor = spawn(process.execPath, [CLUSTER_MAIN], {
      env: { ...process.env, SHARDKV_DATA_ROOT: dataRoot, SHARDKV_PORTS: 'free', SHARD_COUNT: '1', CLUSTER_TOKEN: 'test-token', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const s of [supervisor.stdout!, supervisor.stderr!]) s.on('data', (d: Buffer) => output.push(d.toString()));
    const deadline = Date.now() + 45_000;
    for (;;) {
      const info = readClusterFile(dataRoot);
      if (info !== undefined) return info;
      if (supervisor.exitCode !== null || Date.now() > deadline) throw new Error(`the supervisor did not come up:\n${output.join('').slice(-3000)}`);
      await sleep(200);
    }
  }

  test('starts a pair appended to the file and stops one removed from it, keeping its data', async () => {
    root = newDataRoot();
    const info = await startSupervisor(root);
    expect(info.shards.map((s) => s.id)).toEqual(['shard-0']);
    expect(JSON.parse(readFileSync(join(root, 'topology.json'), 'utf8')).shards).toHaveLength(1);
    const o = { root, out: () => {} };

    const pair = await startPair(o);
    expect(pair.id).toBe('shard-1');
    expect(await isHealthy(pair.leader.url)).toBe(true);
    expect(await isHealthy(pair.follower.url)).toBe(true);
    const after = readClusterFile(root)!;
    expect(after.reload).toEqual({ seq: 1, error: null });
    expect(after.shards.map((s) => [s.id, s.inMap])).toEqual([['shard-0', true], ['shard-1', false]]);
    expect(output.join('')).toMatch(/topology: shard-1 is up/);

    const pids = [pair.leader.pid!, pair.follower.pid!];
    expect(pids.every(alive)).toBe(true);
    const stopped = await stopPair(o, 'shard-1');
    expect(stopped.shards.map((s) => s.id)).toEqual(['shard-0']);
    expect(await gone(pids)).toBe(true);
    expect(existsSync(join(root, 'shard1-leader'))).toBe(true);
    expect(await isHealthy(info.shards[0]!.leader.url)).toBe(true);
  });

  test('a reload that cannot be applied is reported to the command that asked for it', async () => {
    root = newDataRoot();
    const info = await startSupervisor(root);
    const o = { root, out: () => {} };
    // The router's own port for a new shard: refused, and the running shards are left alone.
    const port = Number(new URL(info.routers[0]!).port);
    await expect(changeTopology(o, (t) => ({ ...t, shards: [...t.shards, { id: 'shard-1', leaderPort: port, followerPort: port + 1, inMap: false }] }))).rejects.toThrow(/could not apply the topology: shard-1 would listen on port \d+, which router uses/);
    expect(readClusterFile(root)!.reload.seq).toBe(1);
    expect(JSON.parse(readFileSync(join(root, 'topology.json'), 'utf8')).shards.map((s: { id: string }) => s.id)).toEqual(['shard-0']);
    expect(await isHealthy(info.shards[0]!.leader.url)).toBe(true);
  });
});
