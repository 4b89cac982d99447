// A clean start is quiet: a warning should mean something. A fresh cluster, and the same cluster
// restarted over its data, log no WARN, ERROR or FATAL line from any process, and every shard is
// at its first epoch with its follower in sync (no follower_lost and back at start-up).
import { Cluster } from '@shardkv/tools';
import { get, http, newDataRoot, put, removeDataRoot, shardsInSync } from './helpers';

/** pino's level numbers: 40 warn, 50 error, 60 fatal. */
const WARN_LEVEL = 40;
/** After `start` returns: long enough for a late report (a leader's follower_lost is retried every second) to show. */
const SETTLE_MS = 2000;

interface Line {
  node: string;
  text: string;
}

/** Lines a clean run must not have: level warn and above, and anything that is not a node's JSON log line (stderr, the supervisor). */
function warnings(lines: readonly Line[]): string[] {
  return lines
    .filter(({ text }) => {
      try {
        const { level } = JSON.parse(text) as { level?: unknown };
        return typeof level !== 'number' || level >= WARN_LEVEL;
      } catch {
        return true;
      }
    })
    .map(({ node, text }) => `${node} ${text}`);
}

/** Every shard as the router reports it: epoch, in-sync flag, and the epoch its leader and follower hold. */
async function shardEpochs(cluster: Cluster): Promise<unknown[]> {
  const shards = (await http('GET', `${cluster.router.url}/status`)).body.shards as Array<{ id: string; epoch: number; inSync: boolean; leader: { epoch?: number }; follower: { epoch?: number } }>;
  return shards.map((s) => ({ id: s.id, epoch: s.epoch, inSync: s.inSync, leaderEpoch: s.leader.epoch, followerEpoch: s.follower.epoch }));
}

const atFirstEpoch = (cluster: Cluster) => cluster.shards.map((s) => ({ id: s.id, epoch: 1, inSync: true, leaderEpoch: 1, followerEpoch: 1 }));

describe('a clean start is quiet', () => {
  const dataRoot = newDataRoot();
  const lines: Line[] = [];
  let cluster: Cluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
    removeDataRoot(dataRoot);
  }, 30_000);

  /** Starts (or starts again) every process, and returns once the shards serve in sync and the settling time has passed. */
  async function startAndSettle(c: Cluster): Promise<void> {
    await c.start(30_000);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    expect(await shardsInSync(c)).toBe(true);
  }

  test('a fresh cluster logs no warning and every shard is at epoch 1 in sync; so after a restart over its data', async () => {
    cluster = await Cluster.create({
      ports: 'free',
      clusterId: 'quiet-start',
      dataRoot,
      restart: { backoffMinMs: 100, backoffMaxMs: 1000, stableAfterMs: 5000 },
      // The production defaults for timing (the start-up graces are what this test is about).
      env: { LOG_LEVEL: 'info' },
      sink: (node, text) => void lines.push({ node, text }),
    });
    await startAndSettle(cluster);
    expect(warnings(lines)).toEqual([]);
    expect(await shardEpochs(cluster)).toEqual(atFirstEpoch(cluster));

    // Data on every shard, so that the restart reconciles real state.
    const keys = Array.from({ length: 30 }, (_, i) => `quiet-${i}`);
    for (const k of keys) expect((await put(cluster.router.url, k, `v-${k}`)).status).toBe(200);
    expect(warnings(lines)).toEqual([]);

    // The same processes on the same ports, over the same data: every node starts in standby
    // and is configured by the coordinator.
    await cluster.stop();
    lines.length = 0;
    await startAndSettle(cluster);
    expect(warnings(lines)).toEqual([]);
    expect(await shardEpochs(cluster)).toEqual(atFirstEpoch(cluster));
    for (const k of keys) expect((await get(cluster.router.url, k)).body).toMatchObject({ value: `v-${k}` });
  }, 90_000);
});
