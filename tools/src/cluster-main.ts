import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, DEFAULT_DATA_ROOT } from './cluster';
import { EtcdCluster } from './etcd';
import { DEFAULT_RESTART } from './supervisor';
import { formatLine } from './format';
import { portIsFree } from './ports';
import { TopologyReloader } from './dev/topology-reload';
import { plansOf, readTopology, withoutUnfinished, writeTopology, type Topology } from './dev/topology';

/**
 * `npm start`: the 7-process local cluster (router + 3 leaders + 3 followers), supervised,
 * the same topology as docker-compose.yml. `npm run start:ha` (`--ha`): 3 etcd members
 * (client ports 12379/12381/12383), routers on 5000 and 5010, the same 6 nodes. Ctrl-C or SIGTERM stops every process. Data lives in
 * `data/<node>` and survives a stop; `npm run reset` wipes it.
 *
 * The shards run are those in `<data root>/topology.json` (written at the first start: SHARD_COUNT
 * of them, default 3); `npm run shard:add` / `shard:remove` change it and send SIGUSR2, and
 * the running cluster starts or stops pairs to match (see dev/topology-reload.ts).
 * For tests of that mechanism: SHARDKV_DATA_ROOT puts data/ elsewhere, SHARDKV_PORTS=free takes
 * ports the OS has free instead of 5000/5001+i/6001+i.
 */
async function main(): Promise<void> {
  const ha = process.argv.includes('--ha');
  const shardCount = Number(process.env.SHARD_COUNT ?? 3);
  if (!Number.isInteger(shardCount) || shardCount < 1) throw new Error('SHARD_COUNT must be a positive integer');
  const root = process.env.SHARDKV_DATA_ROOT || DEFAULT_DATA_ROOT;
  const ports = process.env.SHARDKV_PORTS === 'free' ? 'free' : 'default';
  // The HA cluster keeps its own data: its control plane lives in etcd, not in the router's directory.
  const dataRoot = ha ? join(root, 'ha') : root;
  const token = process.env.CLUSTER_TOKEN || undefined;
  const sink = (name: string, line: string) => console.log(formatLine(name, line));
  const topology = startingTopology(dataRoot, sink);
  if (topology !== undefined && process.env.SHARD_COUNT !== undefined && topology.shards.length !== shardCount) {
    sink('supervisor', `SHARD_COUNT=${shardCount} ignored: ${dataRoot}/topology.json lists ${topology.shards.length} shards (resharding changes it; npm run reset starts over)`);
  }
  const shards = topology === undefined ? { shardCount } : { shards: plansOf(topology) };
  const etcd = ha ? await EtcdCluster.create({ members: 3, clientPorts: ETCD_CLIENT_PORTS, peerPorts: ETCD_PEER_PORTS, dataRoot: join(dataRoot, 'etcd'), restart: DEFAULT_RESTART, sink }) : undefined;
  const cluster = await Cluster.create({ ...shards, ports, dataRoot, clusterId: clusterId(dataRoot), token, sink, ...(etcd === undefined ? {} : { routers: 2, etcdEndpoints: etcd.endpoints }) });
  // The routers' admin token: ADMIN_TOKEN when set (they read it from this environment), else the cluster token.
  const adminToken = process.env.ADMIN_TOKEN || cluster.token;
  const reloader = new TopologyReloader(cluster, { root, dataRoot, mode: ha ? 'ha' : 'single', ports, adminToken, sink });

  const busy = [];
  for (const n of cluster.nodes) if (!(await portIsFree(n.port))) busy.push(`${n.name} :${n.port}`);
  for (const r of cluster.routers) if (r.grpcPort !== undefined && !(await portIsFree(r.grpcPort))) busy.push(`${r.name} gRPC :${r.grpcPort}`);
  if (ha) for (const p of [...ETCD_CLIENT_PORTS, ...ETCD_PEER_PORTS]) if (!(await portIsFree(p))) busy.push(`etcd :${p}`);
  if (busy.length > 0) throw new Error(`ports already in use (another cluster running?): ${busy.join(', ')}`);
  // `npm run reset` refuses to delete the data of a running cluster: it checks this pid.
  const pidFile = join(root, 'cluster.pid');
  writeFileSync(pidFile, `${process.pid}\n`);
  const clusterFile = join(root, 'cluster.json');
  process.on('exit', () => [pidFile, clusterFile].forEach((f) => rmSync(f, { force: true })));

  const stopAll = async () => {
    await cluster.stop();
    await etcd?.stop();
  };
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping all ${ha ? 'processes' : 'nodes'}...`);
    await stopAll();
    console.log('all stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // `npm start` does not always forward signals: if npm itself goes away, so do we.
  const parentPid = process.ppid;
  setInterval(() => process.ppid !== parentPid && void stop('parent exited'), 1000).unref();

  try {
    await etcd?.start(60_000);
    await cluster.start(60_000);
  } catch (err) {
    await stopAll();
    throw err;
  }
  // Only now: cluster.json tells the shard commands that this cluster is up and takes SIGUSR2.
  reloader.listen();
  console.log(banner(cluster, dataRoot, etcd));
}

/** `npm run start:ha`: the etcd members' client and peer ports. */
const ETCD_CLIENT_PORTS = [12379, 12381, 12383];
const ETCD_PEER_PORTS = [12380, 12382, 12384];

/** The shards to run: the topology file's, without a pair a `shard:add` that did not finish started. */
function startingTopology(dataRoot: string, sink: (name: string, line: string) => void): Topology | undefined {
  const found = readTopology(dataRoot);
  if (found === undefined) return undefined;
  const { topology, dropped } = withoutUnfinished(found);
  for (const s of dropped) sink('supervisor', `not starting ${s.id}: the shard:add that started it did not finish (the router's map does not hold it); its data directories stay. npm run shard:add adds a new shard.`);
  if (dropped.length > 0) writeTopology(dataRoot, topology);
  return topology;
}

/** The cluster's identity, created with its data and kept with it: every node's directory records it. */
function clusterId(dataRoot: string): string {
  mkdirSync(dataRoot, { recursive: true });
  const file = join(dataRoot, 'CLUSTER_ID');
  if (!existsSync(file)) writeFileSync(file, `${randomUUID()}\n`);
  return readFileSync(file, 'utf8').trim();
}

function banner(cluster: Cluster, dataRoot: string, etcd: EtcdCluster | undefined): string {
  const r = cluster.router.url;
  const last = cluster.routers[cluster.routers.length - 1]!.url;
  const rows = cluster.shards.map((s) => `  ${s.id}: leader ${s.leader.url} (${s.leader.name}), follower ${s.follower.url} (${s.follower.name})`);
  const routers = cluster.routers.map((x) => `${x.url} (${x.name}, pid ${cluster.process(x.name).pid})`).join(', ');
  const grpc = cluster.routers.map((x) => x.grpcAddress).join(', ');
  return [
    '',
    `shardkv is up: router${cluster.routers.length > 1 ? 's' : ''} ${routers}`,
    ...(etcd === undefined ? ['  control plane: embedded in the router (data/router)'] : [`  control plane: etcd ${etcd.endpoints.join(', ')} (any router may coordinate; see /status)`]),
    `  gRPC (proto: services/router/proto/shardkv.proto): ${grpc}`,
    ...rows,
    '',
    `Web console: ${r}/ (admin commands need the token below)`,
    '',
    'Try:',
    `  curl -s -X POST ${last}/put -H 'content-type: application/json' -d '{"key":"hello","value":"world"}'`,
    `  curl -s '${r}/get?key=hello'`,
    `  curl -s -X DELETE '${r}/delete?key=hello'`,
    `  curl -s ${r}/status`,
    `  curl -s '${r}/get?key=hello&consistency=stale'`,
    `  curl -s -X POST '${r}/admin/failover?shard=0' -H 'authorization: Bearer ${cluster.token}'`,
    '  npm run shard:add                  # one more shard (next id, ports 5001+N/6001+N), slots migrated online',
    '  npm run shard:remove -- <shard id> # drain a shard into the others, then stop its pair',
    ...(etcd === undefined ? [] : ['', 'HA: kill -9 the coordinator router (its pid above; /status names it): another router takes over within about the lease (2 s).']),
    '',
    `Cluster/admin token: ${cluster.token} (set CLUSTER_TOKEN to choose it).`,
    `Data: ${dataRoot}/<node> (LMDB; kept across restarts; \`npm run reset\` wipes it).`,
    'Crashed processes are restarted automatically. Ctrl-C stops the cluster.',
    '',
  ].join('\n');
}

main().catch((err) => {
  console.error(`npm start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
