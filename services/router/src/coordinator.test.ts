import { createLogger, isKvError, type NodeConfig } from '@shardkv/common';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileMetaStore } from './control/file-store';
import type { Leadership } from './control/meta-store';
import { ShardTable } from './control/shard-table';
import { Coordinator, decide, type CoordinatorOptions, type ConfigAnswer, type NodeApi, type NodeReport, type ShardState } from './coordinator';

const quiet = createLogger('test', 'silent');
const dir = mkdtempSync(join(tmpdir(), 'shardkv-coord-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let dirNo = 0;
const newDir = () => join(dir, `control-${(dirNo += 1)}`);

const A = 'http://a:1';
const B = 'http://b:2';
const base: ShardState = { id: 's0', epoch: 5, leader: A, follower: B, inSync: true };
const opts = { healthIntervalMs: 10, healthTimeoutMs: 10, healthFailures: 3, minInsync: 1 as const, startupGraceMs: 0 };
const SELF = { id: 'router-a', url: 'http://router-a:5000' };

/** A coordinator over an embedded control plane in `controlDir`, already elected (no timers run). */
async function coordinator(controlDir: string, nodes: NodeApi, o: CoordinatorOptions = opts, log = quiet): Promise<{ c: Coordinator; table: ShardTable; store: FileMetaStore; leadership: Leadership }> {
  const store = FileMetaStore.open(controlDir);
  const table = await ShardTable.load(store, [{ id: 's0', leader: A, follower: B }], quiet);
  const c = new Coordinator(table, store, nodes, o, SELF, log);
  const leadership = await store.campaign(SELF);
  (c as unknown as { lead(l: Leadership): void }).lead(leadership);
  return { c, table, store, leadership };
}

/** Nodes the test controls: up or down, and what they report; records every configuration pushed. */
class FakeNodes implements NodeApi {
  down = new Set<string>();
  reports = new Map<string, NodeReport>();
  pushed: Array<[string, NodeConfig]> = [];
  async status(url: string): Promise<NodeReport> {
    if (this.down.has(url)) throw new Error('timeout');
    return this.reports.get(url) ?? { role: 'standby', epoch: 0, seq: 0 };
  }
  async configure(url: string, cfg: NodeConfig): Promise<ConfigAnswer> {
    if (this.down.has(url)) throw new Error('timeout');
    this.pushed.push([url, cfg]);
    const mapVersion = cfg.slots?.mapVersion ?? 0;
    this.reports.set(url, { role: cfg.role, epoch: cfg.epoch, seq: 0, state: cfg.role === 'leader' ? 'serving' : 'in_sync', commitMode: cfg.inSync ? 'sync' : 'alone', mapVersion });
    return { role: cfg.role, epoch: cfg.epoch, mapVersion, lastSeq: 0 };
  }
}

async function rounds(x: { c: Coordinator; leadership: Leadership }, n: number): Promise<void> {
  for (let i = 0; i < n; i += 1) await (x.c as unknown as { checkAll(l: Leadership): Promise<void> }).checkAll(x.leadership);
}

describe('decide (pure)', () => {
  test('a lost leader is replaced only by an in-sync follower, with a new epoch', () => {
    expect(decide.leaderLost(base)).toEqual({ ...base, epoch: 6, leader: B, follower: A, inSync: false });
    const lagging = { ...base, inSync: false };
    expect(decide.leaderLost(lagging)).toBe(lagging);
  });

  test('leaving and rejoining the in-sync set bump the epoch; a repeated catch-up changes nothing', () => {
    const out = decide.followerLost(base);
    expect(out).toEqual({ ...base, epoch: 6, inSync: false });
    expect(decide.followerCaughtUp(out)).toEqual({ ...out, epoch: 7, inSync: true });
    const back = decide.followerCaughtUp(out);
    expect(decide.followerCaughtUp(back)).toBe(back);
  });

  test('a follower lost again while its leader rejoins moves the epoch, so the leader is told at a new epoch to go alone', () => {
    const out = { ...base, inSync: false };
    expect(decide.followerLost(out)).toEqual({ ...out, epoch: 6 });
  });

  test('a configuration is pushed to a node that is behind or in the wrong role, never an older one', () => {
    expect(decide.needsPush(base, A, { role: 'leader', epoch: 5, seq: 0, commitMode: 'sync' })).toBe(false);
    expect(decide.needsPush(base, A, { role: 'leader', epoch: 4, seq: 0 })).toBe(true);
    expect(decide.needsPush(base, B, { role: 'leader', epoch: 5, seq: 0 })).toBe(true);
    expect(decide.needsPush(base, A, { role: 'leader', epoch: 5, seq: 0, state: 'fenced' })).toBe(true);
    expect(decide.needsPush(base, A, { role: 'leader', epoch: 5, seq: 0, commitMode: 'alone' })).toBe(true);
    // A rejoining leader waits for its follower before the record says in sync: it is not told to go alone.
    expect(decide.needsPush({ ...base, inSync: false }, A, { role: 'leader', epoch: 5, seq: 0, commitMode: 'sync' })).toBe(false);
    expect(decide.needsPush(base, A, { role: 'follower', epoch: 9, seq: 0 })).toBe(false);
  });
});

describe('Coordinator', () => {
  test('promotes the in-sync follower after the failure threshold, records it, and configures it', async () => {
    const nodes = new FakeNodes();
    const controlDir = newDir();
    const x = await coordinator(controlDir, nodes);
    await rounds(x, 1);
    expect(x.table.state('s0')).toMatchObject({ epoch: 1, leader: A, inSync: true });
    nodes.down.add(A);
    await rounds(x, 2);
    expect(x.table.state('s0').leader).toBe(A);
    await rounds(x, 1);
    expect(x.table.state('s0')).toMatchObject({ epoch: 2, leader: B, follower: A, inSync: false });
    expect(nodes.pushed.at(-1)).toEqual([B, { shard: 's0', epoch: 2, role: 'leader', peerUrl: A, inSync: false, minInsync: 1, coordinator: x.leadership.generation, coordinatorUrl: SELF.url, slots: { mapVersion: 1, owners: [[0, 4096, 's0']], frozen: [], incoming: [] } }]);
    // A restarted router reads the decision back, and is a newer coordinator generation.
    await x.store.close();
    const again = await coordinator(controlDir, new FakeNodes());
    expect(again.table.state('s0')).toMatchObject({ epoch: 2, leader: B, follower: A, inSync: false });
    expect(again.leadership.generation).toBeGreaterThan(x.leadership.generation);
    await again.store.close();
  });

  test('the old leader that comes back is told it follows now', async () => {
    const nodes = new FakeNodes();
    const x = await coordinator(newDir(), nodes);
    await rounds(x, 1);
    nodes.down.add(A);
    await rounds(x, 3);
    nodes.down.delete(A);
    await rounds(x, 1);
    expect(nodes.pushed.at(-1)).toEqual([A, { shard: 's0', epoch: 2, role: 'follower', peerUrl: B, inSync: false, minInsync: 1, coordinator: x.leadership.generation, coordinatorUrl: SELF.url, slots: { mapVersion: 1, owners: [[0, 4096, 's0']], frozen: [], incoming: [] } }]);
    await x.store.close();
  });

  test('a leader never seen answering is not declared down within the start-up grace', async () => {
    const nodes = new FakeNodes();
    nodes.down.add(A);
    const x = await coordinator(newDir(), nodes, { ...opts, startupGraceMs: 60_000 });
    await rounds(x, 5);
    expect(x.table.state('s0')).toMatchObject({ epoch: 1, leader: A });
    await x.store.close();
  });

  test('a new coordinator configures each shard\'s follower before its leader, so a restarted leader finds its follower configured', async () => {
    const nodes = new FakeNodes();
    const x = await coordinator(newDir(), nodes);
    await rounds(x, 1);
    expect(nodes.pushed.map(([url, cfg]) => [url, cfg.role])).toEqual([[B, 'follower'], [A, 'leader']]);
    await x.store.close();
  });

  test('a node never seen answering is warned about only once the start-up grace is over; a node seen before, once per outage', async () => {
    const nodes = new FakeNodes();
    nodes.down.add(A);
    const log = createLogger('test', 'silent');
    const warned = jest.spyOn(log, 'warn');
    const x = await coordinator(newDir(), nodes, { ...opts, startupGraceMs: 60_000 }, log);
    await rounds(x, 5);
    expect(warned).not.toHaveBeenCalled();
    // B answered during this leadership: its outage is a fault from the third failed check on.
    nodes.down.add(B);
    await rounds(x, 5);
    expect(warned.mock.calls.map((c) => [(c[0] as { node?: string }).node, c[1]])).toEqual([[B, 'node not answering health checks']]);
    await x.store.close();
  });

  test('never promotes a follower that reports fewer entries than its leader was seen to apply (a wiped disk)', async () => {
    const nodes = new FakeNodes();
    const x = await coordinator(newDir(), nodes);
    nodes.reports.set(A, { role: 'leader', epoch: 1, seq: 500, state: 'serving', commitMode: 'sync' });
    nodes.reports.set(B, { role: 'follower', epoch: 1, seq: 500 });
    await rounds(x, 1);
    nodes.down.add(A);
    nodes.reports.set(B, { role: 'follower', epoch: 1, seq: 0 });
    await rounds(x, 5);
    expect(x.table.state('s0')).toMatchObject({ epoch: 1, leader: A });
    // With its entries back (it caught up from somewhere, or it was a stale report), it is promoted.
    nodes.reports.set(B, { role: 'follower', epoch: 1, seq: 500 });
    await rounds(x, 1);
    expect(x.table.state('s0')).toMatchObject({ epoch: 2, leader: B });
    await x.store.close();
  });

  test('never promotes a follower that left the in-sync set', async () => {
    const nodes = new FakeNodes();
    const x = await coordinator(newDir(), nodes);
    await rounds(x, 1);
    const cfg = await x.c.onEvent({ shard: 's0', epoch: 1, event: 'follower_lost' });
    expect(cfg).toMatchObject({ epoch: 2, role: 'leader', inSync: false });
    nodes.down.add(A);
    await rounds(x, 5);
    expect(x.table.state('s0')).toMatchObject({ epoch: 2, leader: A, inSync: false });
    await expect(x.c.failover('s0')).rejects.toMatchObject({ code: 'no_replica' });
    expect((await x.c.failover('s0', true)).leader).toBe(B);
    await x.store.close();
  });

  test('reports from an older epoch are refused; a fenced leader is told its new role', async () => {
    const x = await coordinator(newDir(), new FakeNodes());
    await x.c.onEvent({ shard: 's0', epoch: 1, event: 'follower_lost' });
    const stale = await x.c.onEvent({ shard: 's0', epoch: 1, event: 'follower_caught_up' }).catch((e: unknown) => e);
    expect(isKvError(stale, 'stale_epoch')).toBe(true);
    expect(await x.c.onEvent({ shard: 's0', epoch: 2, event: 'follower_caught_up' })).toMatchObject({ epoch: 3, inSync: true });
    await x.c.failover('s0');
    expect(await x.c.onEvent({ shard: 's0', epoch: 3, event: 'fenced' })).toMatchObject({ epoch: 4, role: 'follower', peerUrl: B });
    await x.store.close();
  });

  test('a coordinator that lost its leadership decides nothing: not_coordinator, and the store is unchanged', async () => {
    const x = await coordinator(newDir(), new FakeNodes());
    await x.leadership.resign();
    const err = await x.c.onEvent({ shard: 's0', epoch: 1, event: 'follower_lost' }).catch((e: unknown) => e);
    expect(isKvError(err, 'not_coordinator')).toBe(true);
    await expect(x.c.failover('s0')).rejects.toMatchObject({ code: 'not_coordinator' });
    await x.table.refresh();
    expect(x.table.state('s0')).toMatchObject({ epoch: 1, leader: A, inSync: true });
    await x.store.close();
  });

  test('MIN_INSYNC_REPLICAS=2 is part of every configuration pushed', async () => {
    const x = await coordinator(newDir(), new FakeNodes(), { ...opts, minInsync: 2 });
    expect(await x.c.onEvent({ shard: 's0', epoch: 1, event: 'follower_lost' })).toMatchObject({ inSync: false, minInsync: 2 });
    await x.store.close();
  });
});
