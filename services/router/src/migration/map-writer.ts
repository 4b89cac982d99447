import { KvError, type Logger } from '@shardkv/common';
import type { Leadership, MetaStore, PutResult } from '../control/meta-store';
import { MAP_KEY, type ShardMap } from '../control/records';
import type { ShardTable } from '../control/shard-table';

/**
 * Writes the next shard map: conditional on the revision we read (two writers cannot both
 * advance it) and fenced by the coordinator's election (a deposed coordinator cannot). A write
 * whose outcome is unknown is settled by re-reading: the caller acts on the map only if it is
 * really stored.
 */
export async function writeMap(store: MetaStore, table: ShardTable, leadership: Leadership, before: ShardMap, next: ShardMap, why: string, log: Logger): Promise<void> {
  if (table.map.version !== before.version) throw new KvError('coordinator_unavailable', `the shard map moved on (version ${table.map.version}, we decided from ${before.version}); nothing was written`);
  let res: PutResult | undefined;
  let failure = '';
  try {
    res = await store.put(MAP_KEY, JSON.stringify(next), table.mapRevision, leadership);
  } catch (err) {
    failure = err instanceof Error ? err.message : String(err);
  }
  if (res?.ok === true) table.applyMap(next, res.revision);
  else if (await landed(table, next)) res = { ok: true, revision: table.mapRevision };
  if (res?.ok !== true) {
    if (res?.reason === 'deposed') void leadership.resign();
    if (res === undefined) throw new KvError('decision_unknown', `the control plane did not confirm shard map version ${next.version} (${why}): ${failure}`);
    throw new KvError('coordinator_unavailable', `shard map version ${next.version} (${why}) was not recorded: ${res.reason}`);
  }
  log.warn({ mapVersion: next.version, migration: next.migration === undefined ? null : { id: next.migration.id, kind: next.migration.kind, shard: next.migration.shard, state: next.migration.state }, why }, 'shard map changed');
}

async function landed(table: ShardTable, next: ShardMap): Promise<boolean> {
  try {
    await table.refresh();
  } catch {
    return false;
  }
  const m = table.map;
  return m.version === next.version && m.migration?.id === next.migration?.id && m.migration?.state === next.migration?.state && JSON.stringify(m.slots) === JSON.stringify(next.slots);
}
