import { Cluster } from './cluster';
import { formatLine } from './format';
import { portIsFree } from './ports';

/**
 * `npm start`: the 7-process local cluster (router + 3 leaders + 3 followers), supervised,
 * the same topology as docker-compose.yml. Ctrl-C or SIGTERM stops every process.
 */
async function main(): Promise<void> {
  const shardCount = Number(process.env.SHARD_COUNT ?? 3);
  if (!Number.isInteger(shardCount) || shardCount < 1) throw new Error('SHARD_COUNT must be a positive integer');
  const cluster = await Cluster.create({ shardCount, sink: (name, line) => console.log(formatLine(name, line)) });

  const busy = [];
  for (const n of cluster.nodes) if (!(await portIsFree(n.port))) busy.push(`${n.name} :${n.port}`);
  if (busy.length > 0) throw new Error(`ports already in use (another cluster running?): ${busy.join(', ')}`);

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
  console.log(banner(cluster));
}

function banner(cluster: Cluster): string {
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
    '',
    'Crashed nodes are restarted automatically. Ctrl-C stops the cluster.',
    '',
  ].join('\n');
}

main().catch((err) => {
  console.error(`npm start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
