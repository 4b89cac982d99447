import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, DEFAULT_DATA_ROOT } from './cluster';
import { formatLine } from './format';
import { portIsFree } from './ports';

/**
 * `npm start`: the 7-process local cluster (router + 3 leaders + 3 followers), supervised,
 * the same topology as docker-compose.yml. Ctrl-C or SIGTERM stops every process. Data lives in
 * `data/<node>` and survives a stop; `npm run reset` wipes it.
 */
async function main(): Promise<void> {
  const shardCount = Number(process.env.SHARD_COUNT ?? 3);
  if (!Number.isInteger(shardCount) || shardCount < 1) throw new Error('SHARD_COUNT must be a positive integer');
  const dataRoot = DEFAULT_DATA_ROOT;
  const token = process.env.CLUSTER_TOKEN || undefined;
  const cluster = await Cluster.create({ shardCount, dataRoot, clusterId: clusterId(dataRoot), token, sink: (name, line) => console.log(formatLine(name, line)) });

  const busy = [];
  for (const n of cluster.nodes) if (!(await portIsFree(n.port))) busy.push(`${n.name} :${n.port}`);
  if (busy.length > 0) throw new Error(`ports already in use (another cluster running?): ${busy.join(', ')}`);
  // `npm run reset` refuses to delete the data of a running cluster: it checks this pid.
  const pidFile = join(dataRoot, 'cluster.pid');
  writeFileSync(pidFile, `${process.pid}\n`);
  process.on('exit', () => rmSync(pidFile, { force: true }));

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping all nodes...`);
    await cluster.stop();
    console.log('all nodes stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // `npm start` does not always forward signals: if npm itself goes away, so do we.
  const parentPid = process.ppid;
  setInterval(() => process.ppid !== parentPid && void stop('parent exited'), 1000).unref();

  try {
    await cluster.start(60_000);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  console.log(banner(cluster, dataRoot));
}

/** The cluster's identity, created with its data and kept with it: every node's directory records it. */
function clusterId(dataRoot: string): string {
  mkdirSync(dataRoot, { recursive: true });
  const file = join(dataRoot, 'CLUSTER_ID');
  if (!existsSync(file)) writeFileSync(file, `${randomUUID()}\n`);
  return readFileSync(file, 'utf8').trim();
}

function banner(cluster: Cluster, dataRoot: string): string {
  const r = cluster.router.url;
  const rows = cluster.shards.map((s) => `  ${s.id}: leader ${s.leader.url} (${s.leader.name}), follower ${s.follower.url} (${s.follower.name})`);
  return [
    '',
    `shardkv is up: router ${r}`,
    ...rows,
    '',
    'Try:',
    `  curl -s -X POST ${r}/put -H 'content-type: application/json' -d '{"key":"hello","value":"world"}'`,
    `  curl -s '${r}/get?key=hello'`,
    `  curl -s -X DELETE '${r}/delete?key=hello'`,
    `  curl -s ${r}/status`,
    `  curl -s '${r}/get?key=hello&consistency=stale'`,
    `  curl -s -X POST '${r}/admin/failover?shard=0' -H 'authorization: Bearer ${cluster.token}'`,
    '',
    `Cluster/admin token: ${cluster.token} (set CLUSTER_TOKEN to choose it).`,
    `Data: ${dataRoot}/<node> (LMDB; kept across restarts; \`npm run reset\` wipes it).`,
    'Crashed nodes are restarted automatically. Ctrl-C stops the cluster.',
    '',
  ].join('\n');
}

main().catch((err) => {
  console.error(`npm start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
