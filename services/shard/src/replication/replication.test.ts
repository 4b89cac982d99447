import { createLogger, isKvError } from '@shardkv/common';
import { MemoryStore } from '../store';
import { Follower } from './follower';
import { Leader, type LeaderOptions } from './leader';
import { PeerNotReadyError, replicateRequestSchema, type PeerTransport, type ReplicateReply } from './messages';
import { installSnapshot, snapshotLines } from './snapshot';

/**
 * Leader and follower wired in-process through a link whose faults the test controls: no
 * sockets, and the real wire format (the body is parsed exactly as the HTTP route does).
 */
type LinkMode = 'up' | 'down' | 'lose-reply' | 'hang';

class Link implements PeerTransport {
  mode: LinkMode = 'up';
  requests = 0;
  constructor(
    readonly url: string,
    private readonly onReplicate: (body: unknown) => ReplicateReply,
    private readonly snapshotSource: () => MemoryStore,
    /** Whether the node behind the link can serve a state transfer (else 503 not_ready). */
    private readonly ready: () => boolean,
    private readonly hangMs = 150,
  ) {}

  async replicate(body: string): Promise<ReplicateReply> {
    this.requests += 1;
    await Promise.resolve();
    if (this.mode === 'down') throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    if (this.mode === 'hang') {
      await sleep(this.hangMs);
      throw Object.assign(new Error('timeout'), { name: 'TimeoutError' });
    }
    const reply = this.onReplicate(JSON.parse(body));
    if (this.mode === 'lose-reply') throw new Error('connection reset after the follower applied');
    return reply;
  }

  async snapshot(): Promise<AsyncIterable<string>> {
    if (this.mode !== 'up') throw new Error(`link ${this.mode}`);
    if (!this.ready()) throw new PeerNotReadyError('not_ready');
    return splitLines(snapshotLines(this.snapshotSource(), SHARD));
  }

  async close(): Promise<void> {}
}

async function* splitLines(chunks: AsyncIterable<string>): AsyncGenerator<string> {
  for await (const chunk of chunks) yield* chunk.split('\n');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quiet = createLogger('test', 'silent');
const SHARD = 'shard-t';
const options: LeaderOptions = {
  shardId: SHARD,
  replicationTimeoutMs: 300,
  heartbeatIntervalMs: 20,
  retryBackoffMs: 20,
  limits: { queueEntriesMax: 1000, queueBytesMax: 1 << 20, batchEntriesMax: 50, batchBytesMax: 1 << 20 },
};

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await sleep(5);
  }
}

interface Pair {
  leader: Leader;
  leaderStore: MemoryStore;
  follower: Follower;
  followerStore: MemoryStore;
  toFollower: Link;
  toLeader: Link;
  /** Replaces the follower with a fresh, empty one (a restart of the in-memory engine). */
  restartFollower(): void;
}

async function pair(opts: Partial<LeaderOptions> = {}, leaderStore = new MemoryStore(), followerStore = new MemoryStore()): Promise<Pair> {
  const p = { leaderStore, followerStore } as Pair;
  p.toLeader = new Link('leader', () => {
    throw new Error('follower never sends replicate');
  }, () => p.leaderStore, () => p.leader.serving);
  const attach = () => {
    p.follower = new Follower(p.followerStore, p.toLeader, { shardId: SHARD, retryBackoffMs: 20 }, quiet);
  };
  attach();
  p.restartFollower = () => {
    p.follower.stop();
    p.followerStore = new MemoryStore();
    attach();
  };
  p.toFollower = new Link('follower', (body) => p.follower.onReplicate(replicateRequestSchema.parse(body)), () => p.followerStore, () => p.follower.snapshotable);
  p.leader = new Leader(p.leaderStore, p.toFollower, { ...options, ...opts }, quiet);
  void p.leader.start();
  await until(() => p.leader.serving && p.leader.follower.reachable);
  return p;
}

const converged = (p: Pair) => p.leaderStore.digest() === p.followerStore.digest() && p.leaderStore.seq === p.followerStore.seq;

describe('leader and follower', () => {
  let p: Pair;
  afterEach(async () => {
    await p?.leader.stop();
    p?.follower.stop();
  });

  test('concurrent writes to the same keys leave leader and follower in the same state', async () => {
    p = await pair();
    const ops = Array.from({ length: 300 }, (_, i) =>
      i % 7 === 0 ? p.leader.write({ op: 'del', key: `hot${i % 3}` }) : p.leader.write({ op: 'put', key: `hot${i % 3}`, value: `v${i}` }),
    );
    const results = await Promise.all(ops);
    expect(results.map((r) => r.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(converged(p)).toBe(true);
    for (const k of ['hot0', 'hot1', 'hot2']) expect(p.followerStore.get(k)).toBe(p.leaderStore.get(k));
  });

  test('a write is visible on the leader only once the follower has it', async () => {
    p = await pair();
    p.toFollower.mode = 'hang';
    const pending = p.leader.write({ op: 'put', key: 'k', value: 'v' }).catch((e: unknown) => e);
    await sleep(50);
    expect(p.leader.get('k')).toBeUndefined();
    expect(p.followerStore.get('k')).toBeUndefined();
    const err = await pending;
    expect(isKvError(err, 'replication_timeout')).toBe(true);
    expect(p.leader.get('k')).toBeUndefined();
  });

  test('writes arriving while a request is in flight travel together (batching)', async () => {
    p = await pair();
    const before = p.toFollower.requests;
    await Promise.all(Array.from({ length: 200 }, (_, i) => p.leader.write({ op: 'put', key: `k${i}`, value: 'v' })));
    expect(p.toFollower.requests - before).toBeLessThan(50);
    expect(converged(p)).toBe(true);
  });

  test('fails fast with no_replica when the follower is down, sequencing nothing', async () => {
    p = await pair();
    p.toFollower.mode = 'down';
    await until(() => !p.leader.follower.reachable);
    const lastSeq = p.leader.status.lastSeq;
    const started = Date.now();
    await expect(p.leader.write({ op: 'put', key: 'k', value: 'v' })).rejects.toMatchObject({ code: 'no_replica', status: 503 });
    expect(Date.now() - started).toBeLessThan(50);
    expect(p.leader.status.lastSeq).toBe(lastSeq);
  });

  test('a timed-out write is indeterminate: it commits once the follower is back', async () => {
    p = await pair();
    p.toFollower.mode = 'hang';
    await expect(p.leader.write({ op: 'put', key: 'late', value: 'v' })).rejects.toMatchObject({ code: 'replication_timeout', status: 504 });
    p.toFollower.mode = 'up';
    await until(() => p.leader.get('late') === 'v');
    expect(converged(p)).toBe(true);
  });

  test('a lost acknowledgement is resent and the follower ignores the duplicate', async () => {
    p = await pair();
    await p.leader.write({ op: 'put', key: 'a', value: '1' });
    p.toFollower.mode = 'lose-reply';
    await expect(p.leader.write({ op: 'put', key: 'b', value: '2' })).rejects.toMatchObject({ code: 'replication_timeout' });
    expect(p.followerStore.get('b')).toBe('2');
    p.toFollower.mode = 'up';
    await until(() => p.leader.get('b') === '2');
    expect(converged(p)).toBe(true);
    expect(p.leaderStore.seq).toBe(2);
  });

  test('a follower that lost its state catches up by state transfer, then the log tail', async () => {
    p = await pair();
    for (let i = 0; i < 100; i += 1) await p.leader.write({ op: 'put', key: `k${i}`, value: `v${i}` });
    p.restartFollower();
    expect(p.followerStore.seq).toBe(0);
    await until(() => p.leader.follower.catchingUp || p.follower.status.state !== 'waiting');
    await until(() => p.leader.follower.reachable && !p.leader.follower.catchingUp);
    await p.leader.write({ op: 'put', key: 'after', value: 'x' });
    expect(converged(p)).toBe(true);
    expect(p.follower.status.state).toBe('in_sync');
    expect(p.followerStore.get('k42')).toBe('v42');
  });

  test('refuses writes while the follower is catching up', async () => {
    p = await pair();
    await p.leader.write({ op: 'put', key: 'k', value: 'v' });
    p.toLeader.mode = 'down'; // the follower cannot fetch the snapshot
    p.restartFollower();
    await until(() => p.leader.follower.catchingUp);
    await expect(p.leader.write({ op: 'put', key: 'k2', value: 'v' })).rejects.toMatchObject({ code: 'no_replica' });
    expect(() => p.follower.get('k')).toThrow(/catching_up/);
    p.toLeader.mode = 'up';
    await until(() => !p.leader.follower.catchingUp);
    await p.leader.write({ op: 'put', key: 'k2', value: 'v' });
    expect(converged(p)).toBe(true);
  });

  test('a full replication queue refuses writes with 503 instead of growing', async () => {
    p = await pair({ limits: { ...options.limits, queueEntriesMax: 3 } });
    p.toFollower.mode = 'hang';
    const waiting = [1, 2, 3].map((i) => p.leader.write({ op: 'put', key: `k${i}`, value: 'v' }).catch((e: unknown) => e));
    await expect(p.leader.write({ op: 'put', key: 'k4', value: 'v' })).rejects.toMatchObject({ code: 'replication_queue_full', status: 503 });
    await Promise.all(waiting);
  });

  test('a leader with an empty store recovers its state from the follower before serving', async () => {
    p = await pair();
    for (let i = 0; i < 20; i += 1) await p.leader.write({ op: 'put', key: `k${i}`, value: `v${i}` });
    await p.leader.stop();
    const fresh = new MemoryStore();
    p.leaderStore = fresh;
    p.leader = new Leader(fresh, p.toFollower, options, quiet);
    expect(() => p.leader.get('k1')).toThrow(/recovering/);
    void p.leader.start();
    await until(() => p.leader.serving);
    expect(p.leader.get('k7')).toBe('v7');
    expect(fresh.seq).toBe(20);
    await p.leader.write({ op: 'put', key: 'next', value: 'v' });
    expect(converged(p)).toBe(true);
  });

  test('a follower catching up when its leader restarts empty stands by, so the shard comes back', async () => {
    p = await pair();
    for (let i = 0; i < 10; i += 1) await p.leader.write({ op: 'put', key: `k${i}`, value: 'v' });
    p.toLeader.mode = 'down';
    p.restartFollower();
    await until(() => p.leader.follower.catchingUp);
    // Both nodes have now lost their state (in-memory engine): the data is gone, but the shard
    // must not deadlock with each node waiting for the other's state transfer.
    await p.leader.stop();
    p.leaderStore = new MemoryStore();
    p.leader = new Leader(p.leaderStore, p.toFollower, options, quiet);
    void p.leader.start();
    p.toLeader.mode = 'up';
    await until(() => p.leader.serving && p.leader.follower.reachable && !p.leader.follower.catchingUp);
    await p.leader.write({ op: 'put', key: 'again', value: 'v' });
    expect(converged(p)).toBe(true);
  });

  test("a follower refuses another shard's replication and snapshots", async () => {
    p = await pair();
    const wrong = { shard: 'other', logStartSeq: 1, lastSeq: 1, entries: [{ seq: 1, op: 'put' as const, key: 'x', value: 'y' }] };
    expect(() => p.follower.onReplicate(wrong)).toThrow(/shard other/);
    expect(p.followerStore.seq).toBe(0);
    await expect(installSnapshot(splitLines(snapshotLines(p.leaderStore, 'other')), new MemoryStore(), SHARD)).rejects.toThrow(/refusing/);
  });

  test('a follower ahead of its leader is a diverged history: writes are refused', async () => {
    const ahead = new MemoryStore();
    ahead.apply({ seq: 1, op: 'put', key: 'x', value: 'y' });
    const leaderStore = new MemoryStore();
    leaderStore.apply({ seq: 1, op: 'put', key: 'x', value: 'z' });
    // The leader has state, so it does not recover; the follower claims seq 5 after an edit.
    ahead.apply({ seq: 2, op: 'put', key: 'a', value: '1' });
    p = await pair({}, leaderStore, ahead);
    await until(() => p.leader.follower.diverged);
    await expect(p.leader.write({ op: 'put', key: 'k', value: 'v' })).rejects.toMatchObject({ code: 'no_replica' });
  });
});
