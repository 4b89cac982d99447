import { put, startCluster, status, type TestCluster } from './helpers';

/** The shard count comes from config: a 5-shard cluster spreads keys over all 5 leaders. */
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ shardCount: 5 });
});
afterAll(async () => {
  await cluster?.stop();
});

test('a 5-shard cluster stores keys on every shard, each leader and follower identical', async () => {
  const KEYS = 300;
  for (let i = 0; i < KEYS; i += 1) expect((await put(cluster.router.url, `key-${i}`, `v${i}`)).status).toBe(200);
  const s = await status(cluster.router.url);
  expect(s.shards.map((x: { id: string }) => x.id)).toEqual(['shard-0', 'shard-1', 'shard-2', 'shard-3', 'shard-4']);
  let total = 0;
  for (const shard of s.shards) {
    expect(shard.leader.keys).toBeGreaterThan(KEYS / 5 / 2);
    expect(shard.follower.digest).toBe(shard.leader.digest);
    total += shard.leader.keys;
  }
  expect(total).toBe(KEYS);
});
