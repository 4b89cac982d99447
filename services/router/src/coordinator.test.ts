import { createLogger, isKvError, type NodeConfig } from '@shardkv/common';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Coordinator, decide, type NodeApi, type NodeReport, type ShardState } from './coordinator';

const quiet = createLogger('test', 'silent');
const dir = mkdtempSync(join(tmpdir(), 'shardkv-coord-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const newFile = () => join(dir, `state-${(fileNo += 1)}.json`);

const A = 'http://a:1';
const B = 'http://b:2';
const base: ShardState = { id: 's0', epoch: 5, leader: A, follower: B, inSync: true };
const opts = { healthIntervalMs: 10, healthTimeoutMs: 10, healthFailures: 3, minInsync: 1 as const };

/** Nodes the test controls: up or down, and what they report; records every configuration pushed. */
class FakeNodes implements NodeApi {
  down = new Set<string>();
  reports = new Map<string, NodeReport>();
  pushed: Array<[string, NodeConfig]> = [];
  async status(url: string): Promise<NodeReport> {
    if (this.down.has(url)) throw new Error('timeout');
    return this.reports.get(url) ?? { role: 'standby', epoch: 0, seq: 0 };
  }
  async configure(url: string, cfg: NodeConfig): Promise<void> {
    if (this.down.has(url)) throw new Error('timeout');
    this.pushed.push([url, cfg]);
    this.reports.set(url, { role: cfg.role, epoch: cfg.epoch, seq: 0, state: cfg.role === 'leader' ? 'serving' : 'in_sync', commitMode: cfg.inSync ? 'sync' : 'alone' });
  }
}

async function rounds(c: Coordinator, n: number): Promise<void> {
  for (let i = 0; i < n; i += 1) await (c as unknown as { checkAll(): Promise<void> }).checkAll();
}

describe('decide (pure)', () => {
  test('a lost leader is replaced only by an in-sync follower, with a new epoch', () => {
    expect(decide.leaderLost(base)).toEqual({ ...base, epoch: 6, leader: B, follower: A, inSync: false });
    const lagging = { ...base, inSync: false };
    expect(decide.leaderLost(lagging)).toBe(lagging);
  });

  test('leaving and rejoining the in-sync set bump the epoch; repeating them changes nothing', () => {
    const out = decide.followerLost(base);
    expect(out).toEqual({ ...base, epoch: 6, inSync: false });
    expect(decide.followerLost(out)).toBe(out);
    expect(decide.followerCaughtUp(out)).toEqual({ ...out, epoch: 7, inSync: true });
  });

  test('a configuration is pushed to a node that is behind or in the wrong role, never an older one', () => {
    expect(decide.needsPush(base, A, { role: 'leader', epoch: 5, seq: 0, commitMode: 'sync' })).toBe(false);
    expect(decide.needsPush(base, A, { role: 'leader', epoch: 4, seq: 0 })).toBe(true);
    expect(decide.needsPush(base, B, { role: 'leader', epoch: 5, seq: 0 })).toBe(true);
    expect(decide.needsPush(base, A, { role: 'leader', epoch: 5, seq: 0, state: 'fenced' })).toBe(true);
    expect(decide.needsPush(base, A, { role: 'leader', epoch: 5, seq: 0, commitMode: 'alone' })).toBe(true);
    expect(decide.needsPush(base, A, { role: 'follower', epoch: 9, seq: 0 })).toBe(false);
  });
});

describe('Coordinator', () => {
  test('promotes the in-sync follower after the failure threshold, persists it, and configures it', async () => {
    const nodes = new FakeNodes();
    const file = newFile();
    const c = new Coordinator([{ id: 's0', leader: A, follower: B }], file, nodes, opts, quiet);
    await rounds(c, 1);
    expect(c.state('s0')).toMatchObject({ epoch: 1, leader: A, inSync: true });
    nodes.down.add(A);
    await rounds(c, 2);
    expect(c.state('s0').leader).toBe(A);
    await rounds(c, 1);
    expect(c.state('s0')).toMatchObject({ epoch: 2, leader: B, follower: A, inSync: false });
    expect(nodes.pushed.at(-1)).toEqual([B, { shard: 's0', epoch: 2, role: 'leader', peerUrl: A, inSync: false, minInsync: 1 }]);
    // A restarted router reads the decision back.
    const again = new Coordinator([{ id: 's0', leader: A, follower: B }], file, new FakeNodes(), opts, quiet);
    expect(again.state('s0')).toMatchObject({ epoch: 2, leader: B, follower: A, inSync: false });
    // The old leader comes back: it is told it follows now.
    nodes.down.delete(A);
    await rounds(c, 1);
    expect(nodes.pushed.at(-1)).toEqual([A, { shard: 's0', epoch: 2, role: 'follower', peerUrl: B, inSync: false, minInsync: 1 }]);
  });

  test('never promotes a follower that left the in-sync set', async () => {
    const nodes = new FakeNodes();
    const c = new Coordinator([{ id: 's0', leader: A, follower: B }], newFile(), nodes, opts, quiet);
    await rounds(c, 1);
    const cfg = await c.onEvent({ shard: 's0', epoch: 1, event: 'follower_lost' });
    expect(cfg).toMatchObject({ epoch: 2, role: 'leader', inSync: false });
    nodes.down.add(A);
    await rounds(c, 5);
    expect(c.state('s0')).toMatchObject({ epoch: 2, leader: A, inSync: false });
    await expect(c.failover('s0')).rejects.toMatchObject({ code: 'no_replica' });
    expect((await c.failover('s0', true)).leader).toBe(B);
  });

  test('reports from an older epoch are refused; a fenced leader is told its new role', async () => {
    const c = new Coordinator([{ id: 's0', leader: A, follower: B }], newFile(), new FakeNodes(), opts, quiet);
    await c.onEvent({ shard: 's0', epoch: 1, event: 'follower_lost' });
    const stale = await c.onEvent({ shard: 's0', epoch: 1, event: 'follower_caught_up' }).catch((e: unknown) => e);
    expect(isKvError(stale, 'stale_epoch')).toBe(true);
    expect(await c.onEvent({ shard: 's0', epoch: 2, event: 'follower_caught_up' })).toMatchObject({ epoch: 3, inSync: true });
    await c.failover('s0');
    expect(await c.onEvent({ shard: 's0', epoch: 3, event: 'fenced' })).toMatchObject({ epoch: 4, role: 'follower', peerUrl: B });
  });

  test('MIN_INSYNC_REPLICAS=2 is part of every configuration pushed', async () => {
    const c = new Coordinator([{ id: 's0', leader: A, follower: B }], newFile(), new FakeNodes(), { ...opts, minInsync: 2 }, quiet);
    expect(await c.onEvent({ shard: 's0', epoch: 1, event: 'follower_lost' })).toMatchObject({ inSync: false, minInsync: 2 });
  });
});
