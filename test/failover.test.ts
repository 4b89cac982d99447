// Failover against real processes: a paused leader is replaced by its in-sync follower and
// rejoins as follower when resumed; a follower out of sync is never promoted; a planned switch
// through /admin/failover; MIN_INSYNC_REPLICAS=2; reads with consistency=stale. The router is the
// coordinator; its /status shows each shard's epoch, roles and in-sync flag.
import { attempt, waitFor, del, eventually, get, http, keysOn, put, shardsInSync, shardView, startCluster, type TestCluster } from './helpers';

const FAST_ENV = { LOG_LEVEL: 'info', HEARTBEAT_INTERVAL_MS: '100', RETRY_BACKOFF_MS: '100', REPLICATION_TIMEOUT_MS: '1000' };
/** The target is 2 s with the default health settings; the bound leaves room for a loaded machine. */
const FAILOVER_MAX_MS = 3000;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ env: FAST_ENV });
}, 60_000);

afterAll(async () => {
  if (cluster !== undefined) await cluster.stop();
}, 30_000);

const processOf = (url: string) => cluster.process(cluster.nodes.find((n) => n.url === url)!.name);
const admin = (shard: string, token = cluster.token, extra = '') => http('POST', `${cluster.router.url}/admin/failover?shard=${shard}${extra}`, undefined, { authorization: `Bearer ${token}` });

describe('failover', () => {
  test('a paused leader is replaced by its in-sync follower within the target, and rejoins as follower on resume', async () => {
    await waitFor('all shards in sync', cluster, () => shardsInSync(cluster));
    const before = await shardView(cluster, 'shard-0');
    const keys = await keysOn(cluster, 'shard-0', 20, 'fo');
    const acked = new Map<string, string>();
    for (const k of keys.slice(0, 10)) {
      expect((await put(cluster.router.url, k, `before-${k}`)).status).toBe(200);
      acked.set(k, `before-${k}`);
    }
    const oldLeader = processOf(before.leader.url);
    oldLeader.signal('SIGSTOP');
    const pausedAt = Date.now();
    let resumedAfterMs = 0;
    try {
      // Writes resume on the promoted follower.
      let i = 10;
      await waitFor('a shard-0 write succeeds while its leader is paused', cluster, async () => {
        const k = keys[i++ % keys.length]!;
        const r = await attempt(() => put(cluster.router.url, k, `during-${k}`));
        if (r.status === 200) acked.set(k, `during-${k}`);
        return r.status === 200;
      }, 10_000);
      resumedAfterMs = Date.now() - pausedAt;
    } finally {
      oldLeader.signal('SIGCONT');
    }
    expect(resumedAfterMs).toBeLessThanOrEqual(FAILOVER_MAX_MS);
    const during = await shardView(cluster, 'shard-0');
    expect({ leader: during.leader.url, epochAdvanced: during.epoch > before.epoch }).toEqual({ leader: before.follower.url, epochAdvanced: true });

    // The old leader learns the new epoch, follows, catches up; the shard is in sync again.
    await waitFor('shard-0 in sync with the old leader as follower', cluster, () => shardsInSync(cluster, [0]));
    const after = await shardView(cluster, 'shard-0');
    expect({ leader: after.leader.url, follower: after.follower.url }).toEqual({ leader: before.follower.url, follower: before.leader.url });
    for (const [k, v] of acked) expect({ k, value: (await get(cluster.router.url, k)).body.value }).toEqual({ k, value: v });
  }, 60_000);

  test('a follower out of sync is never promoted: with both nodes paused the shard refuses, and nothing is lost', async () => {
    await waitFor('all shards in sync', cluster, () => shardsInSync(cluster));
    const s = await shardView(cluster, 'shard-1');
    const [key] = await keysOn(cluster, 'shard-1', 1, 'lag');
    const follower = processOf(s.follower.url);
    const leader = processOf(s.leader.url);
    follower.signal('SIGSTOP');
    try {
      await waitFor('leader commits alone', cluster, async () => (await attempt(() => put(cluster.router.url, key!, 'alone'))).status === 200);
      expect((await shardView(cluster, 'shard-1')).inSync).toBe(false);
      leader.signal('SIGSTOP');
      await new Promise((r) => setTimeout(r, FAILOVER_MAX_MS));
      // The leader is down and its follower may lack 'alone': no promotion.
      const view = await shardView(cluster, 'shard-1');
      expect({ leader: view.leader.url, inSync: view.inSync }).toEqual({ leader: s.leader.url, inSync: false });
    } finally {
      follower.signal('SIGCONT');
      leader.signal('SIGCONT');
    }
    await waitFor('shard-1 in sync again', cluster, () => shardsInSync(cluster, [1]));
    expect((await get(cluster.router.url, key!)).body.value).toBe('alone');
  }, 60_000);

  test('planned failover through /admin/failover needs the token and switches the roles', async () => {
    await waitFor('all shards in sync', cluster, () => shardsInSync(cluster));
    const before = await shardView(cluster, 'shard-2');
    const [key] = await keysOn(cluster, 'shard-2', 1, 'admin');
    expect((await put(cluster.router.url, key!, 'v1')).status).toBe(200);
    const refused = await admin('2', 'wrong-token');
    expect({ status: refused.status, code: refused.body.error?.code }).toEqual({ status: 401, code: 'unauthorized' });
    const r = await admin('2');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ shard: 'shard-2', leader: before.follower.url, epoch: before.epoch + 1 });
    await waitFor('a write on the new leader', cluster, async () => (await attempt(() => put(cluster.router.url, key!, 'v2'))).status === 200);
    await waitFor('shard-2 in sync after the switch', cluster, () => shardsInSync(cluster, [2]));
    expect((await get(cluster.router.url, key!)).body.value).toBe('v2');
    const unknown = await admin('no-such-shard');
    expect(unknown.status).toBe(400);
  }, 60_000);

  test('consistency=stale reads the follower; a bad consistency value is a 400', async () => {
    await waitFor('all shards in sync', cluster, () => shardsInSync(cluster));
    const [key] = await keysOn(cluster, 'shard-0', 1, 'stale');
    expect((await put(cluster.router.url, key!, 'fresh')).status).toBe(200);
    await waitFor('follower has it', cluster, async () => (await get((await shardView(cluster, 'shard-0')).follower.url, key!)).status === 200);
    const r = await http('GET', `${cluster.router.url}/get?key=${encodeURIComponent(key!)}&consistency=stale`);
    expect({ status: r.status, value: r.body.value }).toEqual({ status: 200, value: 'fresh' });
    const bad = await http('GET', `${cluster.router.url}/get?key=${encodeURIComponent(key!)}&consistency=eventual`);
    expect({ status: bad.status, code: bad.body.error?.code }).toEqual({ status: 400, code: 'bad_request' });
    expect((await del(cluster.router.url, key!)).status).toBe(200);
  }, 30_000);
});

describe('MIN_INSYNC_REPLICAS=2', () => {
  let strict: TestCluster;
  afterAll(async () => {
    if (strict !== undefined) await strict.stop();
  }, 30_000);

  test('with the follower gone, writes are refused (503 no_replica) instead of committed alone', async () => {
    strict = await startCluster({ shardCount: 1, env: { ...FAST_ENV, MIN_INSYNC_REPLICAS: '2' } });
    expect((await put(strict.router.url, 'k', 'v1')).status).toBe(200);
    const s = await shardView(strict, 'shard-0');
    const follower = strict.process(strict.nodes.find((n) => n.url === s.follower.url)!.name);
    follower.signal('SIGSTOP');
    try {
      await eventually(async () => (await shardView(strict, 'shard-0')).inSync === false, 10_000, 50);
      const statuses = new Set<number>();
      for (let i = 0; i < 10; i += 1) statuses.add((await attempt(() => put(strict.router.url, 'k', `v${i + 2}`))).status);
      expect([...statuses].every((st) => st === 503 || st === 504)).toBe(true);
      expect((await get(strict.router.url, 'k')).body.value).toBe('v1');
    } finally {
      follower.signal('SIGCONT');
    }
    await eventually(() => shardsInSync(strict), 15_000, 50);
    expect((await put(strict.router.url, 'k', 'v3')).status).toBe(200);
  }, 60_000);
});
