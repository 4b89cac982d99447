// The control plane's contract, run against both backends: the embedded file and a real etcd
// (Debian's etcd-server, installed by the test when missing and running as root). Conditional
// writes, change notification, the coordinator election and its fencing must behave the same.
import { createLogger } from '@shardkv/common';
import { EtcdMetaStore } from '@shardkv/router/dist/control/etcd-store';
import { FileMetaStore } from '@shardkv/router/dist/control/file-store';
import type { MetaStore } from '@shardkv/router/dist/control/meta-store';
import { EtcdCluster } from '@shardkv/tools';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const quiet = createLogger('test', 'silent');
const A = { id: 'router-a', url: 'http://a:5000' };
const B = { id: 'router-b', url: 'http://b:5000' };
const never = new AbortController().signal;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let etcd: EtcdCluster | undefined;
const dirs: string[] = [];
const stores: MetaStore[] = [];
let prefixNo = 0;

beforeAll(async () => {
  etcd = await EtcdCluster.create({ members: 1 });
  await etcd.start();
}, 180_000);

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close().catch(() => {})));
  await etcd?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 30_000);

function etcdStore(prefix: string, leaseTtlS = 1): EtcdMetaStore {
  const s = new EtcdMetaStore({ endpoints: etcd!.endpoints, prefix, leaseTtlS, callTimeoutMs: 1000, campaignPollMs: 50, resyncIntervalMs: 5000 }, quiet);
  stores.push(s);
  return s;
}

const backends: Array<[string, () => MetaStore]> = [
  ['embedded', () => {
    const d = mkdtempSync(join(tmpdir(), 'shardkv-meta-'));
    dirs.push(d);
    const s = FileMetaStore.open(d);
    stores.push(s);
    return s;
  }],
  ['etcd', () => etcdStore(`/shardkv-test/${process.pid}-${(prefixNo += 1)}/`)],
];

describe.each(backends)('MetaStore contract (%s)', (_name, open) => {
  test('a conditional write commits only against the revision it names; revisions grow', async () => {
    const s = open();
    expect((await s.list()).size).toBe(0);
    const first = await s.put('shards/a', 'v1', 0);
    expect(first.ok).toBe(true);
    expect(await s.put('shards/a', 'again', 0)).toEqual({ ok: false, reason: 'conflict' });
    const rev1 = first.ok ? first.revision : -1;
    const second = await s.put('shards/a', 'v2', rev1);
    expect(second.ok && second.revision > rev1).toBe(true);
    expect(await s.put('shards/a', 'stale', rev1)).toEqual({ ok: false, reason: 'conflict' });
    const listed = await s.list();
    expect(listed.get('shards/a')).toEqual({ value: 'v2', revision: second.ok ? second.revision : -1 });
  });

  test('a watcher is told of a change', async () => {
    const s = open();
    let calls = 0;
    const stop = s.watch(() => (calls += 1));
    await sleep(200); // the etcd watch stream connects
    const before = calls;
    await s.put('map', 'x', 0);
    const deadline = Date.now() + 2000;
    while (calls === before && Date.now() < deadline) await sleep(10);
    stop();
    expect(calls).toBeGreaterThan(before);
  });

  test('the elected coordinator is named, its fenced writes commit, and after it resigns they are refused as deposed', async () => {
    const s = open();
    const l = await s.campaign(A, never);
    expect(l.valid()).toBe(true);
    expect(await s.coordinator()).toMatchObject({ id: A.id, url: A.url, generation: l.generation });
    const w = await s.put('shards/x', 'decided', 0, l);
    expect(w.ok).toBe(true);
    await l.resign();
    expect(l.valid()).toBe(false);
    expect(await s.put('shards/x', 'late', w.ok ? w.revision : 0, l)).toEqual({ ok: false, reason: 'deposed' });
    const next = await s.campaign(B, never);
    expect(next.generation).toBeGreaterThan(l.generation);
    await next.resign();
  });
});

describe('MetaStore on etcd: several routers', () => {
  test('exactly one of two candidates is elected; the other takes over when it resigns, and the first can no longer commit', async () => {
    const prefix = `/shardkv-test/${process.pid}-two/`;
    const [s1, s2] = [etcdStore(prefix), etcdStore(prefix)];
    const l1 = await s1.campaign(A, never);
    const stop = new AbortController();
    const second = s2.campaign(B, stop.signal);
    await sleep(300);
    expect(await s2.coordinator()).toMatchObject({ id: A.id });
    await l1.resign();
    const l2 = await second;
    expect(await s1.coordinator()).toMatchObject({ id: B.id, generation: l2.generation });
    expect(await s1.put('shards/y', 'from-a', 0, l1)).toEqual({ ok: false, reason: 'deposed' });
    expect((await s2.put('shards/y', 'from-b', 0, l2)).ok).toBe(true);
    await l2.resign();
  });

  test('a coordinator cut off from etcd stops counting itself elected before its lease can expire there, and a rival is elected after', async () => {
    const prefix = `/shardkv-test/${process.pid}-lease/`;
    const s1 = etcdStore(prefix, 2);
    const l1 = await s1.campaign(A, never);
    const electedAt = Date.now();
    // Pausing the only member stops keepalives (and everything else) for everyone.
    etcd!.pause(0);
    try {
      while (l1.valid()) await sleep(20);
    } finally {
      etcd!.resume(0);
    }
    const endedAfterMs = Date.now() - electedAt;
    // Valid at most TTL minus the margin after the last keepalive sent; never past the TTL.
    expect(endedAfterMs).toBeLessThan(2000);
    const s2 = etcdStore(prefix, 2);
    const l2 = await s2.campaign(B, never);
    expect(l2.generation).toBeGreaterThan(l1.generation);
    expect(await s1.put('shards/z', 'late', 0, l1)).toEqual({ ok: false, reason: 'deposed' });
    await l2.resign();
  }, 20_000);
});

test('the embedded store serves one router: a directory locked by another live router is refused, a dead one\'s lock is taken over', () => {
  const d = mkdtempSync(join(tmpdir(), 'shardkv-meta-'));
  dirs.push(d);
  const other = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    writeFileSync(join(d, 'router.lock'), `${other.pid}\n`);
    expect(() => FileMetaStore.open(d)).toThrow(/another router \(pid \d+\) uses this data directory/);
  } finally {
    other.kill('SIGKILL');
  }
  writeFileSync(join(d, 'router.lock'), '999999999\n');
  const s = FileMetaStore.open(d);
  stores.push(s);
  expect(readFileSync(join(d, 'router.lock'), 'utf8').trim()).toBe(String(process.pid));
});
