import { createLogger } from '@shardkv/common';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileMetaStore } from './file-store';
import { MAP_KEY, shardKey, type ShardAddress } from './records';
import { MapMismatchError, ShardTable } from './shard-table';

const quiet = createLogger('test', 'silent');
const dirs: string[] = [];
const stores: FileMetaStore[] = [];
afterAll(async () => {
  for (const s of stores) await s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function open(dir = mkdtempSync(join(tmpdir(), 'shardkv-table-'))): { store: FileMetaStore; dir: string } {
  dirs.push(dir);
  const store = FileMetaStore.open(dir);
  stores.push(store);
  return { store, dir };
}

const shards = (n: number, port = 7000): ShardAddress[] => Array.from({ length: n }, (_, i) => ({ id: `shard-${i}`, leader: `http://l:${port + i}`, follower: `http://f:${port + i}` }));

describe('ShardTable', () => {
  test('a fresh control plane gets the map (version 1) and a record per shard at epoch 1, the configured leader leading', async () => {
    const { store } = open();
    const table = await ShardTable.load(store, shards(3), quiet);
    expect(table.map).toMatchObject({ version: 1, shards: [{ id: 'shard-0' }, { id: 'shard-1' }, { id: 'shard-2' }] });
    expect(table.state('shard-1')).toEqual({ id: 'shard-1', epoch: 1, leader: 'http://l:7001', follower: 'http://f:7001', inSync: true });
    expect([...(await store.list()).keys()].sort()).toEqual([MAP_KEY, shardKey('shard-0'), shardKey('shard-1'), shardKey('shard-2')]);
    table.close();
  });

  test('a map from before hash slots (ketama placement): a router configured with other shard ids refuses to start, saying what differs', async () => {
    const { store, dir } = open();
    const legacy = { version: 1, shards: shards(3).map((a) => ({ id: a.id, nodes: [a.leader, a.follower] })) };
    await store.put(MAP_KEY, JSON.stringify(legacy), 0);
    (await ShardTable.load(store, shards(3), quiet)).close();
    await store.close();
    const again = FileMetaStore.open(dir);
    stores.push(again);
    await expect(ShardTable.load(again, shards(4), quiet)).rejects.toThrow(MapMismatchError);
    await expect(ShardTable.load(again, shards(4), quiet)).rejects.toThrow(/not in the stored map: shard-3.*SHARD_COUNT=3/);
    await expect(ShardTable.load(again, shards(2), quiet)).rejects.toThrow(/missing from this router's configuration: shard-2/);
  });

  test('a slot map is the authority: a router configured with other shard ids routes by the stored map', async () => {
    const { store, dir } = open();
    (await ShardTable.load(store, shards(3), quiet)).close();
    await store.close();
    const again = FileMetaStore.open(dir);
    stores.push(again);
    const table = await ShardTable.load(again, shards(4), quiet);
    expect(table.map.shards.map((s) => s.id)).toEqual(['shard-0', 'shard-1', 'shard-2']);
    expect(new Set(Array.from({ length: 200 }, (_, i) => table.placement.shardFor(`k${i}`)))).toEqual(new Set(['shard-0', 'shard-1', 'shard-2']));
    table.close();
  });

  test('the same shards at new addresses are adopted by the embedded store: records renamed by position, map version 2', async () => {
    const { store } = open();
    const t1 = await ShardTable.load(store, shards(2), quiet);
    t1.close();
    const moved = shards(2, 8000);
    const t2 = await ShardTable.load(store, moved, quiet);
    expect(t2.map.version).toBe(2);
    expect(t2.state('shard-0')).toMatchObject({ leader: 'http://l:8000', follower: 'http://f:8000', epoch: 1 });
    // Only the addresses change: every key stays where it is (the slot owners are kept).
    expect(t2.map.slots).toEqual(t1.map.slots);
    t2.close();
  });

  test('records only move forward: an older revision than the one held is ignored', async () => {
    const { store } = open();
    const table = await ShardTable.load(store, shards(1), quiet);
    const held = table.revisionOf('shard-0');
    const changes: number[] = [];
    table.onChange((_b, a) => changes.push(a.epoch));
    table.apply({ id: 'shard-0', epoch: 9, leader: 'http://f:7000', follower: 'http://l:7000', inSync: false }, held + 5);
    table.apply({ id: 'shard-0', epoch: 3, leader: 'http://l:7000', follower: 'http://f:7000', inSync: true }, held + 1);
    expect(table.state('shard-0').epoch).toBe(9);
    expect(changes).toEqual([9]);
    table.close();
  });
});
