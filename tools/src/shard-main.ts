import { DEFAULT_DATA_ROOT } from './cluster';
import { CommandError } from './dev/cluster-file';
import { addShardCommand, removeShardCommand } from './dev/reshard';

/**
 * `npm run shard:add` / `npm run shard:remove -- <id>` against the cluster `npm start` (or
 * `npm run start:ha`) runs; see docs/local-resharding.md. SHARDKV_DATA_ROOT: the data root
 * that cluster was started with, when not the repository's data/.
 */
async function main(): Promise<void> {
  const [verb, id, ...rest] = process.argv.slice(2);
  const o = { root: process.env.SHARDKV_DATA_ROOT || DEFAULT_DATA_ROOT, out: (line: string) => console.log(`[shard:${verb}] ${line}`) };
  if (verb === 'add' && id === undefined) return addShardCommand(o);
  if (verb === 'remove' && id !== undefined && rest.length === 0) return removeShardCommand(o, id);
  throw new CommandError('usage: npm run shard:add | npm run shard:remove -- <shard id>');
}

main().catch((err) => {
  // A CommandError is the whole story in one line; anything else is a bug, shown with its stack.
  console.error(`shard: ${err instanceof CommandError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
