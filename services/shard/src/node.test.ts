import { createLogger, isKvError } from '@shardkv/common';
import { ShardNode } from './node';
import type { LeaderOptions } from './replication/leader';
import type { PeerTransport, ReplicateRequest } from './replication/messages';
import { MemoryStore } from './store';
import { valueOf } from './stored';

const quiet = createLogger('test', 'silent');
const leaderOpts: LeaderOptions = {
  shardId: 's',
  replicationTimeoutMs: 200,
  heartbeatIntervalMs: 20,
  retryBackoffMs: 20,
  inFlightMessagesMax: 4,
  readLeaseMs: 50,
  limits: { queueEntriesMax: 100, queueBytesMax: 1 << 20, batchEntriesMax: 10, batchBytesMax: 1 << 20 },
};
/** A peer that never answers: these tests look at the node's own checks only. */
const deadPeer = (url: string): PeerTransport => ({
  url,
  replicate: () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })),
  transfer: () => Promise.reject(new Error('down')),
  close: async () => {},
});

function node() {
  const store = new MemoryStore({ entriesMax: 100, bytesMax: 1 << 20 });
  const n = new ShardNode(store, { shardId: 's', nodeName: 'n', leader: leaderOpts, follower: { shardId: 's', retryBackoffMs: 20 }, reportRetryMs: 100, readLeaseMs: 50 }, deadPeer, undefined, quiet);
  return { n, store };
}
/** An empty store's digest: a new node's history is where a term that starts at 0 begins. */
const EMPTY_DIGEST = new MemoryStore({ entriesMax: 1, bytesMax: 1 }).digest();
const replicate = (epoch: number, entries: ReplicateRequest['entries'] = []): ReplicateRequest => ({ shard: 's', epoch, term: 't', termStartSeq: 0, termStartDigest: EMPTY_DIGEST, logStartSeq: 1, lastSeq: entries.length, entries });
const follower = { shard: 's', role: 'follower' as const, peerUrl: 'http://leader:1', inSync: true, minInsync: 1, coordinator: 1 };
const errorOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

describe('ShardNode: the epoch check at the single entry point', () => {
  test('replication from an older epoch is refused and applies nothing', async () => {
    const { n, store } = node();
    await n.configure({ ...follower, epoch: 3 });
    const err = await errorOf(n.onReplicate(replicate(2, [{ seq: 1, op: 'put', key: 'k', value: 'stale' }])));
    expect(isKvError(err, 'stale_epoch')).toBe(true);
    expect(store.seq).toBe(0);
    await n.onReplicate(replicate(3, [{ seq: 1, op: 'put', key: 'k', value: 'ok' }]));
    expect(valueOf(store.get('k'))).toBe('ok');
    await n.stop();
  });

  test('a leader of a newer epoch is followed, and the epoch is kept', async () => {
    const { n, store } = node();
    await n.configure({ ...follower, epoch: 3 });
    await n.onReplicate(replicate(5));
    expect(store.epoch).toBe(5);
    expect(isKvError(await errorOf(n.onReplicate(replicate(4))), 'stale_epoch')).toBe(true);
    await n.stop();
  });

  test('an older configuration is refused; replication to a node that is not a follower is refused', async () => {
    const { n } = node();
    await n.configure({ ...follower, epoch: 3 });
    expect(isKvError(await errorOf(n.configure({ ...follower, epoch: 2, role: 'leader' })), 'stale_epoch')).toBe(true);
    expect(n.role.kind).toBe('follower');
    await n.configure({ ...follower, epoch: 4, role: 'leader', peerUrl: 'http://follower:2', inSync: false });
    expect(n.role.kind).toBe('leader');
    expect(isKvError(await errorOf(n.onReplicate(replicate(4))), 'not_follower')).toBe(true);
    await n.stop();
  });

  test('a leader told its follower is out of sync commits alone; with MIN_INSYNC_REPLICAS=2 it refuses', async () => {
    const { n, store } = node();
    await n.configure({ ...follower, epoch: 2, role: 'leader', peerUrl: 'http://follower:2', inSync: false });
    await new Promise((r) => setTimeout(r, 80)); // past the read lease a new node waits out
    expect(await n.write({ op: 'put', key: 'k', value: 'v' })).toMatchObject({ seq: 1 });
    expect(valueOf(store.get('k'))).toBe('v');
    await n.configure({ ...follower, epoch: 3, role: 'leader', peerUrl: 'http://follower:2', inSync: false, minInsync: 2 });
    expect(isKvError(await errorOf(n.write({ op: 'put', key: 'k', value: 'w' })), 'no_replica')).toBe(true);
    expect(valueOf(store.get('k'))).toBe('v');
    await n.stop();
  });
});

describe('ShardNode: fences against old coordinators and old maps', () => {
  test('a configuration from an older coordinator generation is refused, whatever its epoch', async () => {
    const { n } = node();
    await n.configure({ ...follower, epoch: 3, coordinator: 7 });
    const err = await errorOf(n.configure({ ...follower, epoch: 4, role: 'leader', coordinator: 6 }));
    expect(isKvError(err, 'stale_coordinator')).toBe(true);
    expect({ role: n.role.kind, epoch: n.epoch }).toEqual({ role: 'follower', epoch: 3 });
    await n.configure({ ...follower, epoch: 4, coordinator: 8 });
    expect(n.epoch).toBe(4);
    await n.stop();
  });

  test('a request routed with an older epoch than the node knows is refused with stale_epoch naming the current one', async () => {
    const { n } = node();
    await n.configure({ ...follower, epoch: 5 });
    const err = await errorOf(Promise.resolve().then(() => n.checkRoutedEpoch(4)));
    expect(isKvError(err, 'stale_epoch') && err.details).toMatchObject({ epoch: 5, leader: 'http://leader:1' });
    expect(() => n.checkRoutedEpoch(5)).not.toThrow();
    expect(() => n.checkRoutedEpoch(6)).not.toThrow();
    await n.stop();
  });

  test('a follower promoted right after acknowledging its old leader serves only once that leader\'s read lease is over', async () => {
    const { n } = node();
    await new Promise((r) => setTimeout(r, 60)); // past the lease counted from the node's start
    await n.configure({ ...follower, epoch: 3 });
    await n.onReplicate(replicate(3));
    const ackedAt = Date.now();
    await n.configure({ ...follower, epoch: 4, role: 'leader', peerUrl: 'http://follower:2', inSync: false });
    expect(n.healthy).toBe(false);
    while (!n.healthy) await new Promise((r) => setTimeout(r, 5));
    expect(Date.now() - ackedAt).toBeGreaterThanOrEqual(50);
    await n.stop();
  });
});
