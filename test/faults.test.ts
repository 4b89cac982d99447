// Fault-injection tests against a real local cluster (router + 3 shards x leader/follower, all
// supervised processes): concurrency, a paused follower, a killed follower, a killed leader,
// writes sent to a follower, the /internal/* token guard, and malformed replication messages.
//
// One cluster serves the whole file. Every test first waits until every shard is in sync, and
// every fault test waits for the shard to recover before it ends, so the tests do not depend on
// each other's leftovers. Node processes are signalled only through the Cluster API.
import { attempt, eventually, get, http, keysOn, put, del, shardsInSync, shardView, startCluster, status, type HttpResult, type TestCluster } from './helpers';

const REPLICATION_TIMEOUT_MS = 1000;
/** A write during a fault must be answered within the replication timeout plus this margin. */
const ANSWER_MARGIN_MS = 1500;
/** "Fails fast" / "low latency": well below the replication timeout. */
const FAST_MS = 500;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({
    // startCluster's `...opts` replaces its default env wholesale, so the fast-detection settings
    // it would otherwise add are repeated here.
    env: {
      LOG_LEVEL: 'info',
      HEARTBEAT_INTERVAL_MS: '100',
      RETRY_BACKOFF_MS: '100',
      REPLICATION_TIMEOUT_MS: String(REPLICATION_TIMEOUT_MS),
    },
  });
}, 60_000);

afterAll(async () => {
  if (cluster !== undefined) await cluster.stop();
}, 30_000);

// ---------------------------------------------------------------------------------------------
// helpers

const authHeader = () => ({ authorization: `Bearer ${cluster.token}` });
const shard = (i: number) => cluster.shards[i]!;
const tail = (n = 30) => cluster.logs.slice(-n).join('\n');

const shardInSync = (i: number) => shardsInSync(cluster, [i]);

/** What the router says of shard i now (roles move with failovers), for a failure message. */
async function snapshotOfShard(i: number) {
  const v = await shardView(cluster, shard(i).id);
  const brief = (n: any) => ({ url: n?.url, seq: n?.seq, digest: n?.digest, state: n?.state, follower: n?.follower, queue: n?.queue });
  return { epoch: v?.epoch, inSync: v?.inSync, leader: brief(v?.leader), follower: brief(v?.follower) };
}

/** Polls `check` with `eventually`; on timeout fails with `what`, the shards' status and the log tail. */
async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000, stepMs = 50): Promise<void> {
  const ok = await eventually(check, timeoutMs, stepMs);
  if (!ok) {
    const shards = await Promise.all(cluster.shards.map((_, i) => snapshotOfShard(i).catch((e: unknown) => String(e))));
    throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}\nshards: ${JSON.stringify(shards, null, 1)}\nlog tail:\n${tail()}`);
  }
}

const allInSync = () => waitFor('every shard in sync', async () => (await Promise.all(cluster.shards.map((_, i) => shardInSync(i)))).every(Boolean));

async function healthy(url: string): Promise<boolean> {
  try {
    return (await http('GET', `${url}/health`, undefined, {}, 1000)).status === 200;
  } catch {
    return false;
  }
}

const code = (r: HttpResult): string | undefined => (typeof r.body === 'object' && r.body !== null ? r.body.error?.code : undefined);

/** Parses an /internal/transfer body (a full transfer: fromSeq=1 is behind an empty log window after a restart, else a tail): header, pairs, trailer. */
function parseSnapshot(text: string) {
  const lines = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as unknown);
  const header = lines[0] as { kind: 'tail' | 'full'; seq: number; keys?: number };
  const trailer = lines[lines.length - 1] as { end: boolean; seq: number; digest: string };
  const items = lines.slice(1, -1);
  return { header, trailer, items };
}

let uniq = 0;
const value = (tag: string) => `${tag}-${process.pid}-${(uniq += 1)}`;

/** Writes a fresh value to each key through the router, requiring 200; returns what was acknowledged. */
async function putAcknowledged(keys: string[]): Promise<Map<string, string>> {
  const acked = new Map<string, string>();
  for (const key of keys) {
    const v = value(key);
    const r = await put(cluster.router.url, key, v);
    expect({ key, status: r.status }).toEqual({ key, status: 200 });
    acked.set(key, v);
  }
  return acked;
}

// ---------------------------------------------------------------------------------------------

describe('fault tolerance', () => {
  test('concurrent clients on hot keys: every op succeeds, replicas agree, final values follow the sequence order', async () => {
    // Property: under heavy contention every write is sequenced exactly once per shard; leader and follower end in the same state, and each key's final value is the one of its highest-seq op.
    await allInSync();
    // Five hot keys spread over all three shards.
    const shardOf = new Map<string, string>();
    for (const [id, n] of [['shard-0', 2], ['shard-1', 2], ['shard-2', 1]] as const) for (const k of await keysOn(cluster, id, n, 'hot')) shardOf.set(k, id);
    const hot = [...shardOf.keys()];

    interface Op {
      key: string;
      op: 'put' | 'del';
      value?: string;
      res: HttpResult;
    }
    const ops: Op[] = [];
    const WORKERS = 20;
    const OPS_PER_WORKER = 50;
    // A deterministic mix (no Math.random): each worker cycles through keys and ops differently.
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        for (let i = 0; i < OPS_PER_WORKER; i += 1) {
          const key = hot[(w * 7 + i * 3) % hot.length]!;
          if ((w + i) % 3 === 0) {
            ops.push({ key, op: 'del', res: await del(cluster.router.url, key) });
          } else {
            const v = `w${w}-i${i}`;
            ops.push({ key, op: 'put', value: v, res: await put(cluster.router.url, key, v) });
          }
        }
      }),
    );

    expect(ops).toHaveLength(WORKERS * OPS_PER_WORKER);
    const failed = ops.filter((o) => o.res.status !== 200).map((o) => ({ key: o.key, op: o.op, status: o.res.status, body: o.res.body }));
    expect(failed).toEqual([]);

    // Every answered write was applied on the follower before the leader applied it, so the
    // replicas must agree now, without waiting.
    for (const [i] of cluster.shards.entries()) {
      const [l, f] = await Promise.all([status(shard(i).leader.url), status(shard(i).follower.url)]);
      expect({ shard: i, seq: f.seq, digest: f.digest }).toEqual({ shard: i, seq: l.seq, digest: l.digest });
    }

    // Sequence numbers are unique within a shard.
    const seqsByShard = new Map<string, number[]>();
    for (const o of ops) {
      const s = shardOf.get(o.key)!;
      seqsByShard.set(s, [...(seqsByShard.get(s) ?? []), o.res.body.seq as number]);
    }
    for (const [s, seqs] of seqsByShard) {
      expect({ shard: s, duplicates: seqs.length - new Set(seqs).size }).toEqual({ shard: s, duplicates: 0 });
    }

    for (const key of hot) {
      const history = ops.filter((o) => o.key === key).sort((a, b) => (a.res.body.seq as number) - (b.res.body.seq as number));
      // `deleted` reports whether the key existed just before the delete, in sequence order.
      let exists = false;
      const wrongDeleted: unknown[] = [];
      for (const o of history) {
        if (o.op === 'del' && o.res.body.deleted !== exists) wrongDeleted.push({ seq: o.res.body.seq, deleted: o.res.body.deleted, expected: exists });
        exists = o.op === 'put';
      }
      expect({ key, wrongDeleted }).toEqual({ key, wrongDeleted: [] });

      const last = history[history.length - 1]!;
      const viaRouter = await get(cluster.router.url, key);
      const leaderUrl = cluster.shards.find((s) => s.id === shardOf.get(key))!.leader.url;
      const viaLeader = await get(leaderUrl, key);
      expect({ key, status: viaRouter.status, value: viaRouter.body.value }).toEqual({ key, status: viaLeader.status, value: viaLeader.body.value });
      if (last.op === 'put') {
        expect({ key, status: viaRouter.status, value: viaRouter.body.value }).toEqual({ key, status: 200, value: last.value });
      } else {
        expect({ key, status: viaRouter.status, code: code(viaRouter) }).toEqual({ key, status: 404, code: 'key_not_found' });
      }
    }
  }, 60_000);

  test('paused follower: the leader goes on alone within the timeout, other shards are unaffected, and the follower rejoins after resume', async () => {
    // Property: a SIGSTOPped follower never makes a write hang: writes in flight end within the
    // timeout (504, or 200 once the coordinator lets the leader commit alone), later ones succeed
    // without the follower (epoch + 1, follower out of sync); other shards never slow down; after
    // SIGCONT the follower catches up and rejoins the in-sync set (epoch + 1 again) with the
    // leader's exact state, including what was committed without it.
    await allInSync();
    const before = await shardView(cluster, 'shard-0');
    const keys0 = await keysOn(cluster, 'shard-0', 12, 'pause');
    const others = [...(await keysOn(cluster, 'shard-1', 3, 'pause')), ...(await keysOn(cluster, 'shard-2', 3, 'pause'))];
    const proc = cluster.process('shard0-follower');

    const shard0: Array<{ key: string; value: string; res: HttpResult }> = [];
    const other: Array<{ key: string; res: HttpResult }> = [];
    const put0 = async (key: string) => {
      const v = value(key);
      shard0.push({ key, value: v, res: await attempt(() => put(cluster.router.url, key, v)) });
    };

    proc.signal('SIGSTOP');
    let during: any;
    try {
      const pausedAt = Date.now();
      const otherTraffic = (async () => {
        for (let i = 0; Date.now() - pausedAt < 3000; i += 1) {
          const key = others[i % others.length]!;
          other.push({ key, res: await attempt(() => put(cluster.router.url, key, value(key))) });
        }
      })();
      await Promise.all(keys0.slice(0, 4).map(put0));
      for (const key of keys0.slice(4)) {
        await put0(key);
        await new Promise((r) => setTimeout(r, 100));
      }
      await otherTraffic;
      during = await shardView(cluster, 'shard-0');
    } finally {
      proc.signal('SIGCONT');
    }

    const bad0 = shard0
      .filter((w) => ![200, 503, 504].includes(w.res.status) || w.res.ms >= REPLICATION_TIMEOUT_MS + ANSWER_MARGIN_MS)
      .map((w) => ({ key: w.key, status: w.res.status, ms: w.res.ms, body: w.res.body }));
    expect(bad0).toEqual([]);
    // Writes went on without the follower, and the coordinator recorded it out of sync.
    expect(shard0.filter((w) => w.res.status === 200).length).toBeGreaterThan(0);
    expect({ inSync: during.inSync, epochAdvanced: during.epoch > before.epoch, mode: during.leader.commitMode }).toEqual({ inSync: false, epochAdvanced: true, mode: 'alone' });

    expect(other.length).toBeGreaterThan(10);
    const badOther = other.filter((o) => o.res.status !== 200 || o.res.ms >= FAST_MS).map((o) => ({ key: o.key, status: o.res.status, ms: o.res.ms, body: o.res.body }));
    expect(badOther).toEqual([]);

    // After resume the follower catches up and is counted in sync again.
    await waitFor('shard-0 follower rejoins the in-sync set', () => shardInSync(0), 15_000);
    const rejoined = await shardView(cluster, 'shard-0');
    expect(rejoined.epoch).toBeGreaterThan(during.epoch);

    // 200: on both nodes. 504: indeterminate, but the same on both. 503: nothing was applied.
    const disagreements: unknown[] = [];
    for (const w of shard0) {
      const [l, f] = await Promise.all([get(rejoined.leader.url, w.key), get(rejoined.follower.url, w.key)]);
      const leaderSays = l.status === 200 ? l.body.value : l.status;
      const followerSays = f.status === 200 ? f.body.value : f.status;
      if (leaderSays !== followerSays) disagreements.push({ key: w.key, leaderSays, followerSays });
      if (w.res.status === 200 && leaderSays !== w.value) disagreements.push({ key: w.key, acked: w.value, leaderSays });
      if (w.res.status === 504 && leaderSays !== w.value && leaderSays !== 404) disagreements.push({ key: w.key, got504: true, leaderSays, wrote: w.value });
      if (w.res.status === 503 && leaderSays !== 404) disagreements.push({ key: w.key, got503ButApplied: leaderSays });
    }
    expect(disagreements).toEqual([]);
  }, 60_000);

  test('killed follower: writes fail fast while it is down, it restarts, catches up and serves every acknowledged key', async () => {
    // Property: with its follower dead a leader refuses writes at once (503 no_replica, never a hang), and the restarted follower (its own data, plus what it missed) catches up to exactly the leader's state, including every write acknowledged before the kill.
    await allInSync();
    const name = 'shard1-follower';
    const proc = cluster.process(name);
    const { leader, follower } = shard(1);
    const [ackKeys, duringKeys, laterKeys] = [await keysOn(cluster, 'shard-1', 8, 'fk-ack'), await keysOn(cluster, 'shard-1', 400, 'fk-down'), await keysOn(cluster, 'shard-1', 5, 'fk-later')];

    const acked = await putAcknowledged(ackKeys);
    const deletedKey = ackKeys[0]!;
    expect((await del(cluster.router.url, deletedKey)).status).toBe(200);
    acked.delete(deletedKey);

    const restartsBefore = proc.restarts;
    proc.signal('SIGKILL');

    // The leader notices (unreachable, or already catching up the restarted process).
    await waitFor(
      'leader reports its follower unreachable or catching up',
      async () => {
        const f = (await status(leader.url)).follower;
        return f.reachable === false || f.catchingUp === true;
      },
      5000,
      5,
    );

    // Writes while it is down or catching up: a fast 503, or a 200 once it is back in sync.
    const during: Array<{ key: string; value: string; res: HttpResult }> = [];
    let d = 0;
    await waitFor(
      'a shard-1 write succeeds after the follower restarted',
      async () => {
        const key = duringKeys[d++ % duringKeys.length]!;
        const v = value(key);
        const res = await attempt(() => put(cluster.router.url, key, v));
        during.push({ key, value: v, res });
        return res.status === 200 && proc.restarts > restartsBefore;
      },
      15_000,
      20,
    );
    const slowOrWrong = during
      .filter((w) => !(w.res.status === 200 || (w.res.status === 503 && code(w.res) === 'no_replica' && w.res.ms < FAST_MS)))
      .map((w) => ({ key: w.key, status: w.res.status, ms: w.res.ms, body: w.res.body }));
    expect(slowOrWrong).toEqual([]);

    await waitFor(`${name} restarted and healthy`, async () => proc.restarts > restartsBefore && (await healthy(follower.url)));

    for (const key of laterKeys) {
      const v = value(key);
      await waitFor(`write ${key} after the restart`, async () => (await put(cluster.router.url, key, v)).status === 200, 5000);
      acked.set(key, v);
    }
    for (const w of during) if (w.res.status === 200) acked.set(w.key, w.value);

    await waitFor('restarted follower caught up (seq and digest equal)', () => shardInSync(1));

    const missing: unknown[] = [];
    for (const [key, v] of acked) {
      const r = await get(follower.url, key);
      if (r.status !== 200 || r.body.value !== v) missing.push({ key, expected: v, status: r.status, body: r.body });
    }
    expect(missing).toEqual([]);
    // An acknowledged delete stays deleted; a write refused with 503 was never applied.
    const gone = await get(follower.url, deletedKey);
    expect({ status: gone.status, code: code(gone) }).toEqual({ status: 404, code: 'key_not_found' });
    const refused = during.filter((w) => w.res.status === 503 && !acked.has(w.key));
    for (const w of refused) {
      const r = await get(follower.url, w.key);
      expect({ key: w.key, status: r.status }).toEqual({ key: w.key, status: 404 });
    }
  }, 60_000);

  test('killed leader: the shard comes back (promoted follower, or the restarted leader) and never serves a state missing acknowledged writes', async () => {
    // Property: after kill -9 of a leader, either its in-sync follower is promoted or the restarted leader reconciles first; either way every write acknowledged before the kill reads back through the router, no read sees an older state, and the old leader rejoins.
    await allInSync();
    const name = 'shard2-leader';
    const proc = cluster.process(name);
    const keys = await keysOn(cluster, 'shard-2', 12, 'lk');

    const acked = await putAcknowledged(keys);
    // The last acknowledged op on a key is a delete: it must stay deleted.
    const deletedKey = keys[1]!;
    expect((await del(cluster.router.url, deletedKey)).status).toBe(200);
    acked.delete(deletedKey);
    const overwritten = keys[2]!;
    const newer = value(overwritten);
    expect((await put(cluster.router.url, overwritten, newer)).status).toBe(200);
    acked.set(overwritten, newer);
    const before = await status((await shardView(cluster, 'shard-2')).leader.url);

    const restartsBefore = proc.restarts;
    proc.signal('SIGKILL');

    // Read everything through the router until the recovered leader serves it all. Until then a
    // read may be refused (503/504), but it must never answer 404 or a wrong value.
    const wrongReads: unknown[] = [];
    await waitFor(
      'every acknowledged key reads back through the router',
      async () => {
        let all = true;
        for (const key of [...acked.keys(), deletedKey]) {
          const r = await attempt(() => get(cluster.router.url, key));
          const expected = acked.get(key);
          if (r.status === 200) {
            if (r.body.value !== expected) wrongReads.push({ key, expected, got: r.body.value });
          } else if (r.status === 404) {
            if (expected !== undefined) wrongReads.push({ key, expected, got: 404, body: r.body });
          } else {
            all = false;
            if (r.status !== 503 && r.status !== 504 && r.status !== 0) wrongReads.push({ key, status: r.status, body: r.body });
          }
        }
        return all && proc.restarts > restartsBefore;
      },
      20_000,
    );
    expect(proc.restarts).toBeGreaterThan(restartsBefore);
    expect(wrongReads).toEqual([]);
    const gone = await get(cluster.router.url, deletedKey);
    expect({ status: gone.status, code: code(gone) }).toEqual({ status: 404, code: 'key_not_found' });

    // Whichever node leads now holds exactly the pre-kill state and accepts writes again.
    await waitFor('shard-2 has a serving leader', async () => (await shardView(cluster, 'shard-2')).leader.state === 'serving');
    const after = (await shardView(cluster, 'shard-2')).leader;
    expect({ seq: after.seq, digest: after.digest }).toEqual({ seq: before.seq, digest: before.digest });
    const extra = keys[0]!;
    const extraValue = value(extra);
    await waitFor('a shard-2 write succeeds after leader recovery', async () => (await put(cluster.router.url, extra, extraValue)).status === 200, 5000);
    await waitFor('shard-2 leader and follower in sync after recovery', () => shardInSync(2));
    // The in-sync decision is a new configuration: a read may meet a leader between its lease and
    // its follower's next acknowledgement (503 not_ready, definite) on a loaded machine. What
    // must hold is the value once it is served.
    let r = await get(cluster.router.url, extra);
    await waitFor('shard-2 serves reads again', async () => (r = await get(cluster.router.url, extra)).status !== 503, 5000);
    expect({ status: r.status, value: r.body.value }).toEqual({ status: 200, value: extraValue });
  }, 60_000);

  test('a follower refuses client writes with 409 not_leader naming its leader', async () => {
    // Property: a write sent straight to a follower is refused (409 not_leader, error.leader = the shard leader's URL) and changes nothing.
    await allInSync();
    const [fresh, existing] = await keysOn(cluster, 'shard-1', 2, 'nl');
    const { leader, follower } = shard(1);
    const existingValue = value(existing!);
    expect((await put(cluster.router.url, existing!, existingValue)).status).toBe(200);
    const before = await status(follower.url);

    const p = await put(follower.url, fresh!, 'should-not-exist');
    expect({ status: p.status, code: code(p), leader: p.body?.error?.leader }).toEqual({ status: 409, code: 'not_leader', leader: leader.url });
    const d = await del(follower.url, existing!);
    expect({ status: d.status, code: code(d), leader: d.body?.error?.leader }).toEqual({ status: 409, code: 'not_leader', leader: leader.url });

    const freshRead = await get(cluster.router.url, fresh!);
    expect({ status: freshRead.status, code: code(freshRead) }).toEqual({ status: 404, code: 'key_not_found' });
    const freshOnFollower = await get(follower.url, fresh!);
    expect(freshOnFollower.status).toBe(404);
    const existingRead = await get(cluster.router.url, existing!);
    expect({ status: existingRead.status, value: existingRead.body.value }).toEqual({ status: 200, value: existingValue });
    const after = await status(follower.url);
    expect({ seq: after.seq, digest: after.digest }).toEqual({ seq: before.seq, digest: before.digest });
  });

  test('/internal/* requires the cluster token', async () => {
    // Property: without the token, or with a wrong one, /internal/replicate and /internal/transfer answer 401 unauthorized and change nothing; with the token the snapshot is served and matches the node's state.
    await allInSync();
    const { leader, follower } = shard(0);
    const before = await status(follower.url);
    const [intruderKey] = await keysOn(cluster, 'shard-0', 1, 'intruder');
    // A well-formed next entry: if the guard let it through, the follower would apply it.
    const harmful = JSON.stringify({ logStartSeq: before.seq + 1, lastSeq: before.seq + 1, entries: [{ seq: before.seq + 1, op: 'put', key: intruderKey, value: 'x' }] });
    const sameLength = 'x'.repeat(cluster.token.length);
    const badHeaders: Array<[string, Record<string, string>]> = [
      ['no token', {}],
      ['wrong token', { authorization: 'Bearer not-the-token' }],
      ['wrong token of the same length', { authorization: `Bearer ${sameLength}` }],
      ['token without Bearer', { authorization: cluster.token }],
      ['token with a different scheme', { authorization: `Basic ${cluster.token}` }],
    ];
    for (const [what, headers] of badHeaders) {
      for (const [url, method, body] of [
        [`${follower.url}/internal/replicate`, 'POST', harmful],
        [`${leader.url}/internal/replicate`, 'POST', harmful],
        [`${follower.url}/internal/transfer?fromSeq=1`, 'GET', undefined],
        [`${leader.url}/internal/transfer?fromSeq=1`, 'GET', undefined],
      ] as const) {
        const r = await http(method, url, body, headers);
        expect({ what, url, status: r.status, code: code(r) }).toEqual({ what, url, status: 401, code: 'unauthorized' });
      }
    }
    const after = await status(follower.url);
    expect({ seq: after.seq, digest: after.digest }).toEqual({ seq: before.seq, digest: before.digest });
    expect((await get(follower.url, intruderKey!)).status).toBe(404);

    for (const node of [leader, follower]) {
      const r = await http('GET', `${node.url}/internal/transfer?fromSeq=1`, undefined, authHeader());
      expect({ node: node.name, status: r.status }).toEqual({ node: node.name, status: 200 });
      const snap = parseSnapshot(String(r.body));
      const st = await status(node.url);
      // From seq 1: every entry when the node's log window still reaches back that far, else every pair.
      expect({ node: node.name, seq: snap.header.seq, items: snap.items.length, end: snap.trailer.end, digest: snap.trailer.digest }).toEqual({
        node: node.name,
        seq: st.seq,
        items: snap.header.kind === 'tail' ? st.seq : st.keys,
        end: true,
        digest: st.digest,
      });
    }
  });

  test('bad internal input with the token is refused with 4xx and leaves the shard working', async () => {
    // Property: a malformed replication message (non-contiguous batch, duplicate seq, garbage JSON, wrong shape, wrong media type), even when authenticated, is answered 4xx, applies nothing, and the shard keeps replicating.
    await allInSync();
    const { follower } = shard(2);
    const before = await status(follower.url);
    const s = before.seq as number;
    // Keys of shard-2's own slots: a key of another shard's would be refused (wrong_shard) whatever happened.
    const [badA, badB] = (await keysOn(cluster, 'shard-2', 2, 'bad')) as [string, string];
    const entry = (seq: number, key: string) => ({ seq, op: 'put', key: key === 'bad-a' ? badA : key === 'bad-b' ? badB : key, value: 'bad' });
    const cases: Array<[string, string, Record<string, string>]> = [
      ['non-contiguous batch', JSON.stringify({ logStartSeq: s + 1, lastSeq: s + 3, entries: [entry(s + 1, 'bad-a'), entry(s + 3, 'bad-b')] }), {}],
      ['duplicate seq in batch', JSON.stringify({ logStartSeq: s + 1, lastSeq: s + 1, entries: [entry(s + 1, 'bad-a'), entry(s + 1, 'bad-b')] }), {}],
      ['descending batch', JSON.stringify({ logStartSeq: s + 1, lastSeq: s + 2, entries: [entry(s + 2, 'bad-a'), entry(s + 1, 'bad-b')] }), {}],
      ['garbage JSON', '{"logStartSeq": 1, "entries": [', {}],
      ['JSON scalar', '42', {}],
      ['missing fields', JSON.stringify({ entries: [] }), {}],
      ['negative seq', JSON.stringify({ logStartSeq: s + 1, lastSeq: s + 1, entries: [{ seq: -1, op: 'put', key: badA, value: 'x' }] }), {}],
      ['unknown op', JSON.stringify({ logStartSeq: s + 1, lastSeq: s + 1, entries: [{ seq: s + 1, op: 'drop', key: badA }] }), {}],
      ['not JSON content type', 'hello', { 'content-type': 'text/plain' }],
    ];
    for (const [what, body, extra] of cases) {
      const r = await http('POST', `${follower.url}/internal/replicate`, body, { ...authHeader(), ...extra });
      expect({ what, clientError: r.status >= 400 && r.status < 500, status: r.status }).toEqual({ what, clientError: true, status: r.status });
      expect({ what, hasErrorCode: typeof code(r) === 'string' }).toEqual({ what, hasErrorCode: true });
    }
    const after = await status(follower.url);
    expect({ seq: after.seq, digest: after.digest }).toEqual({ seq: before.seq, digest: before.digest });
    for (const k of [badA, badB]) expect((await get(follower.url, k)).status).toBe(404);

    // The shard still works: a write through the router commits on both replicas.
    const [key] = await keysOn(cluster, 'shard-2', 1, 'after-bad');
    const v = value(key!);
    const w = await put(cluster.router.url, key!, v);
    expect({ status: w.status, ms: w.ms < FAST_MS }).toEqual({ status: 200, ms: true });
    await waitFor('shard-2 in sync after bad input', () => shardInSync(2));
    const r = await get(follower.url, key!);
    expect({ status: r.status, value: r.body.value }).toEqual({ status: 200, value: v });
  });
});

describe('product bugs found by fault testing', () => {
  test('BUG: the /internal/* token guard is bypassed by changing the case of the path', async () => {
    // Property: /internal/* cannot be reached without the token by any spelling of the path.
    // Cause: @koa/router matches routes case-insensitively (services/shard/src/app.ts:26, no
    // `sensitive: true`) while internalAuth checks `ctx.path.startsWith('/internal/')`
    // case-sensitively (packages/common/src/http.ts:73). Impact: anyone who can reach a node reads
    // its whole state (GET /INTERNAL/snapshot) or injects entries into a follower
    // (POST /Internal/replicate), after which its leader sees a diverged follower and refuses all
    // writes to the shard (503 no_replica) until restarted.
    await allInSync();
    const { leader, follower } = shard(0);
    const st = await status(follower.url);
    // Non-destructive probes: a snapshot read, and a replicate message that the follower would
    // refuse with 400 (non-contiguous) if it ever reached the handler.
    const probe = JSON.stringify({ logStartSeq: 1, lastSeq: st.seq, entries: [{ seq: 1, op: 'put', key: 'x', value: 'x' }, { seq: 3, op: 'put', key: 'y', value: 'y' }] });
    const served: unknown[] = [];
    for (const [url, method, body] of [
      [`${follower.url}/INTERNAL/transfer?fromSeq=1`, 'GET', undefined],
      [`${leader.url}/Internal/transfer?fromSeq=1`, 'GET', undefined],
      [`${follower.url}/Internal/Replicate`, 'POST', probe],
    ] as const) {
      const r = await http(method, url, body);
      // Refused by the guard (401) or not routed at all (404) is fine; anything else reached a handler.
      if (r.status !== 401 && r.status !== 404) served.push({ path: url.replace(/^http:\/\/[^/]+/, ''), status: r.status, body: String(typeof r.body === 'string' ? r.body : JSON.stringify(r.body)).slice(0, 80) });
    }
    expect(served).toEqual([]);
  });

  test('BUG: a non-contiguous batch is acted on (state transfer started, 200) when its logStartSeq is ahead', async () => {
    // Property: a follower validates the whole replication message before acting on any of it, so a non-contiguous batch is refused with 4xx whatever its logStartSeq.
    // Cause: Follower.onReplicate (services/shard/src/replication/follower.ts:68-74) records
    // lastSeq and starts a state transfer from logStartSeq before planApply checks contiguity, so
    // this batch gets 200 {catchingUp:true} and a needless full state transfer, during which the
    // leader refuses the shard's writes (503 no_replica).
    await allInSync();
    const { follower } = shard(2);
    const s = (await status(follower.url)).seq as number;
    const body = JSON.stringify({ logStartSeq: s + 50, lastSeq: s + 60, entries: [{ seq: s + 1, op: 'put', key: 'nc-a', value: 'x' }, { seq: s + 3, op: 'put', key: 'nc-b', value: 'x' }] });
    const r = await http('POST', `${follower.url}/internal/replicate`, body, authHeader());
    // Whatever the answer, the follower ends up back in sync with its real leader.
    await waitFor('shard-2 in sync after the bad batch', () => shardInSync(2));
    expect({ status: r.status, code: code(r) }).toEqual({ status: 400, code: 'invalid_body' });
  });
});
