// Durability against real processes with the default LMDB engine: random kill -9 of leaders and
// followers under concurrent writes, a crash of every node at once, then a stop and a start of
// the whole cluster over the same data; catch-up from the log tail and from a full transfer; and
// data directories that cannot be used. Each test starts its own cluster in its own temp data
// root and removes it at the end, whatever happens.
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SHARD_SCRIPT } from '@shardkv/tools';
import { attempt, waitFor, del, get, http, newDataRoot, put, removeDataRoot, shardsInSync, startCluster, status, type HttpResult, type TestCluster } from './helpers';

const FAST_ENV = { LOG_LEVEL: 'info', HEARTBEAT_INTERVAL_MS: '100', RETRY_BACKOFF_MS: '100', REPLICATION_TIMEOUT_MS: '1000' };

const clusters: TestCluster[] = [];
const roots: string[] = [];
afterEach(async () => {
  await Promise.all(clusters.splice(0).map((c) => c.stop()));
  for (const r of roots.splice(0)) removeDataRoot(r);
}, 30_000);

async function cluster(opts: Parameters<typeof startCluster>[0] = {}): Promise<TestCluster> {
  const c = await startCluster({ env: FAST_ENV, ...opts });
  clusters.push(c);
  return c;
}

function dataRoot(): string {
  const r = newDataRoot();
  roots.push(r);
  return r;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rand = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo));

/**
 * What a key may hold. Each key has one writer that waits for each answer, so after an
 * acknowledged write the key holds that value or one of the writer's later attempts whose
 * outcome is unknown. A definite failure (503) is not a candidate: it promises nothing was applied.
 */
interface KeyModel {
  acked: string | null | undefined; // undefined: nothing acknowledged yet; null: deleted
  unknown: Set<string | null>;
}

type Outcome = 'ok' | 'definite' | 'indeterminate';

function outcomeOf(r: HttpResult): Outcome | 'unexpected' {
  if (r.status === 200) return 'ok';
  if (r.status === 503) return 'definite';
  if (r.status === 504 || r.status === 0) return 'indeterminate';
  return 'unexpected';
}

describe('durability', () => {
  test('random kill -9 of leaders and followers under load, a crash of every node, then a full restart: no acknowledged write is lost', async () => {
    const root = dataRoot();
    let c = await cluster({ dataRoot: root });
    const CLIENTS = 6;
    const KEYS_PER_CLIENT = 25;
    const model = new Map<string, KeyModel>();
    const unexpected: unknown[] = [];
    const counts = { ok: 0, definite: 0, indeterminate: 0 };
    let stop = false;
    let n = 0;

    const writer = async (client: number) => {
      const keys = Array.from({ length: KEYS_PER_CLIENT }, (_, i) => `crash-c${client}-k${i}`);
      for (const k of keys) model.set(k, { acked: undefined, unknown: new Set() });
      while (!stop) {
        const key = keys[rand(0, keys.length)]!;
        const m = model.get(key)!;
        const value = Math.random() < 0.15 ? null : `v${(n += 1)}`;
        const r = await attempt(() => (value === null ? del(c.router.url, key) : put(c.router.url, key, value)));
        const outcome = outcomeOf(r);
        if (outcome === 'unexpected') {
          unexpected.push({ key, status: r.status, body: r.body });
          continue;
        }
        counts[outcome] += 1;
        if (outcome === 'ok') {
          m.acked = value;
          m.unknown.clear();
          continue;
        }
        if (outcome === 'indeterminate') m.unknown.add(value);
        await sleep(20); // the shard is recovering: do not spin

      }
    };

    // The nemesis: 12 kills at random moments, alternating roles over random shards. Each victim
    // is restarted by the supervisor; the next kill waits until it answers again.
    const kills: string[] = [];
    async function nemesis(): Promise<void> {
      await sleep(500);
      for (let i = 0; i < 12; i += 1) {
        const s = c.shards[rand(0, c.shards.length)]!;
        const node = i % 2 === 0 ? s.leader : s.follower;
        c.process(node.name).signal('SIGKILL');
        kills.push(node.name);
        await sleep(rand(50, 400));
        await waitFor(`${node.name} back after kill ${i + 1}`, c, async () => (await http('GET', `${node.url}/health`, undefined, {}, 1000)).status === 200, 20_000);
        await sleep(rand(50, 300));
      }
      // Every shard node at once, mid-write: a crash of the whole machine's processes.
      for (const s of c.shards) for (const node of [s.leader, s.follower]) c.process(node.name).signal('SIGKILL');
      await sleep(300);
      await waitFor('all shards in sync after the mass kill', c, () => shardsInSync(c), 30_000);
    }

    const writers = Array.from({ length: CLIENTS }, (_, i) => writer(i));
    try {
      await nemesis();
    } finally {
      // Also on failure: writers left running would keep the test process busy forever.
      stop = true;
      await Promise.all(writers);
    }

    // Stop everything, then start a new cluster over the same data (new ports, same node names).
    const before = await Promise.all(c.shards.map((s) => status(s.leader.url)));
    await c.stop();
    clusters.splice(clusters.indexOf(c), 1);
    c = await cluster({ dataRoot: root });
    await waitFor('all shards in sync after the full restart', c, () => shardsInSync(c), 30_000);
    const after = await Promise.all(c.shards.map((s) => status(s.leader.url)));
    expect(after.map((s) => [s.seq, s.digest])).toEqual(before.map((s) => [s.seq, s.digest]));

    const lost: unknown[] = [];
    for (const [key, m] of model) {
      const r = await get(c.router.url, key);
      const actual = r.status === 200 ? (r.body.value as string) : r.status === 404 ? null : `HTTP ${r.status}`;
      const allowed = new Set([...(m.acked === undefined ? [null] : [m.acked]), ...m.unknown]);
      if (!allowed.has(actual)) lost.push({ key, actual, acked: m.acked, unknown: [...m.unknown] });
    }
    expect(unexpected).toEqual([]);
    expect(lost).toEqual([]);
    // The run must have done real work across the faults, or the check above proves nothing.
    expect(kills.length).toBe(12);
    expect(counts.ok).toBeGreaterThan(200);
    console.log(`crash test: ${counts.ok} acknowledged, ${counts.definite} refused (503), ${counts.indeterminate} indeterminate; kills: ${kills.join(', ')} + all 6 at once; then a full restart`);
  }, 180_000);

  test('a returning follower catches up from the log tail, and from a full transfer when it is behind the window', async () => {
    const root = dataRoot();
    // A window of 100 entries: a follower 50 behind replays the tail; one that lost its disk
    // (3,000 entries behind) needs the full state, ~330 KB: several 64 KiB chunks.
    const c = await cluster({ dataRoot: root, shardCount: 1, env: { ...FAST_ENV, LOG_WINDOW_ENTRIES: '100' } });
    const s = c.shards[0]!;
    const follower = c.process(s.follower.name);
    const dir = join(root, s.follower.name);
    const writeMany = async (prefix: string, count: number) => {
      for (let i = 0; i < count; i += 20) {
        const batch = Array.from({ length: Math.min(20, count - i) }, (_, j) => put(c.router.url, `${prefix}${i + j}`, `${prefix}-${i + j}-${'x'.repeat(80)}`));
        for (const r of await Promise.all(batch)) expect(r.status).toBe(200);
      }
    };
    const inSync = () => waitFor('shard in sync', c, () => shardsInSync(c), 20_000);

    await writeMany('a', 3000);
    await inSync();

    // Tail: an old copy of the follower's disk (taken while it was stopped) is 50 entries behind.
    await follower.stop();
    const copy = `${dir}-old`;
    cpSync(dir, copy, { recursive: true });
    follower.start();
    await inSync();
    await writeMany('b', 50);
    await follower.stop();
    rmSync(dir, { recursive: true });
    cpSync(copy, dir, { recursive: true });
    follower.start();
    await inSync();
    let st = await status(s.follower.url);
    expect(st.lastCatchUp).toMatchObject({ kind: 'tail', items: 50 });

    // Full: the follower's disk is gone; 3,050 entries behind a 100-entry window.
    await follower.stop();
    rmSync(dir, { recursive: true });
    follower.start();
    await inSync();
    st = await status(s.follower.url);
    expect(st.lastCatchUp).toMatchObject({ kind: 'full', items: 3050 });
    expect((await get(s.follower.url, 'a1234')).body.value).toBe(`a-1234-${'x'.repeat(80)}`);
    expect((await get(s.follower.url, 'b49')).body.value).toBe(`b-49-${'x'.repeat(80)}`);
  }, 120_000);
});

describe('unusable data directories', () => {
  /** Runs one shard node to completion; a node that cannot use its directory must exit 78 at once. */
  function runNode(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [SHARD_SCRIPT], {
        env: { ...process.env, SHARD_ID: 'shard-0', ROLE: 'follower', LEADER_URL: 'http://127.0.0.1:9', PORT: '0', LOG_LEVEL: 'silent', ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`node did not exit; stderr: ${stderr}`));
      }, 15_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
  }

  test("a directory that belongs to another node, shard or cluster is refused with a clear message", async () => {
    const root = dataRoot();
    const c = await cluster({ dataRoot: root, shardCount: 1 });
    expect((await put(c.router.url, 'k', 'v')).status).toBe(200);
    await c.stop();
    clusters.splice(clusters.indexOf(c), 1);
    const leaderDir = join(root, 'shard0-leader');
    const mixUps: Array<Record<string, string>> = [
      { DATA_DIR: leaderDir, NODE_NAME: 'shard0-follower', CLUSTER_ID: 'test-cluster' },
      { DATA_DIR: leaderDir, NODE_NAME: 'shard0-leader', SHARD_ID: 'shard-1', CLUSTER_ID: 'test-cluster' },
      { DATA_DIR: leaderDir, NODE_NAME: 'shard0-leader', CLUSTER_ID: 'another-cluster' },
    ];
    for (const env of mixUps) {
      const r = await runNode(env);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 78, stderr: expect.stringMatching(/belongs to .*refusing to use it/) });
    }
    // The refused directory is untouched: the right node still opens it with its data.
    const again = await cluster({ dataRoot: root, shardCount: 1 });
    expect((await get(again.router.url, 'k')).body.value).toBe('v');
  }, 60_000);

  test('a data directory that cannot be created or written is a clear start-up error, not a crash loop', async () => {
    const root = dataRoot();
    mkdirSync(root, { recursive: true });
    const file = join(root, 'not-a-dir');
    writeFileSync(file, 'x');
    const r = await runNode({ DATA_DIR: join(file, 'data') });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/cannot open data directory .*not-a-dir/);
  }, 30_000);
});
