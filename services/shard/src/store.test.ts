import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { DIGEST_ALGORITHM, DIGEST_HEX_CHARS, DigestSum } from './digest';
import { DigestSum as Sha256DigestSum } from './digest-sha256';
import { LmdbStore, StorageConfigError, type StoreIdentity } from './lmdb-store';
import type { Entry, LogRecord } from './replication/log';
import { MemoryStore, type KvStore, type LogWindow } from './store';
import { encodeStored, valueOf } from './stored';

/** A pair as a state transfer carries it: the value with its version (here its seq of 1..3) and no expiry. */
const pair = (k: string, v: string, version: number): [string, string] => [k, encodeStored(v, version, undefined)];

const rec = (entry: Entry): LogRecord => {
  const json = JSON.stringify(entry);
  return { entry, json, bytes: Buffer.byteLength(json) };
};
const put = (seq: number, key: string, value: string) => rec({ seq, op: 'put', key, value });
const del = (seq: number, key: string) => rec({ seq, op: 'del', key });
const WIDE: LogWindow = { entriesMax: 1000, bytesMax: 1 << 20 };
const ID: StoreIdentity = { cluster: 'c1', shard: 's0', node: 's0-leader' };
/** XXH3-128 sum of {a: 1, key: value, é: 日本}, checked against hash-wasm's independent XXH3-128 when it was pinned. */
const GOLDEN_DIGEST = 'ad55f00a8893d668da443e30cdaf22a0';

const dirs: string[] = [];
const stores: KvStore[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'shardkv-store-'));
  dirs.push(d);
  return d;
}
async function lmdb(dir = tempDir(), window = WIDE, identity = ID): Promise<LmdbStore> {
  const s = await LmdbStore.open(dir, identity, window);
  stores.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close().catch(() => {})));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const engines: Array<[string, (window?: LogWindow) => Promise<KvStore>]> = [
  ['memory', async (window = WIDE) => new MemoryStore(window)],
  ['lmdb', (window = WIDE) => lmdb(tempDir(), window)],
];

const pairsOf = (s: KvStore) => {
  const v = s.view();
  try {
    return [...v.pairs()].sort();
  } finally {
    v.close();
  }
};

describe.each(engines)('%s store', (_name, make) => {
  test('digest depends on the state only (values and their versions), not on the history that led to it', async () => {
    const a = await make();
    const b = await make();
    await a.apply([put(1, 'y', '2'), put(2, 'x', '1'), put(3, 'x', '3'), del(4, 'none')]);
    await b.apply([put(1, 'y', '2'), put(2, 'z', 'gone')]);
    await b.apply([put(3, 'x', '3'), del(4, 'z')]);
    expect(a.digest()).toBe(b.digest());
    expect(a.size).toBe(2);
    expect(b.size).toBe(2);
  });

  test('digest tells apart states that differ in one value, or in where a key ends', async () => {
    const a = await make();
    const b = await make();
    await a.apply([put(1, 'ab', 'c')]);
    await b.apply([put(1, 'a', 'bc')]);
    expect(a.digest()).not.toBe(b.digest());
    const c = await make();
    await c.apply([put(1, 'k', 'v'), del(2, 'k')]);
    expect(c.digest()).toBe(new MemoryStore(WIDE).digest());
    const swapped = await make();
    await swapped.apply([put(1, 'c', 'ab')]);
    expect(new Set([a.digest(), b.digest(), swapped.digest()]).size).toBe(3);
  });

  test('digest is the same whatever order the same pairs were restored in, and a delete undoes its put', async () => {
    const pairs = Array.from({ length: 200 }, (_, i): [string, string] => pair(`key${i}`, `value-${i * 7919}`, i + 1));
    const forward = await make();
    await forward.apply(pairs.map((_, i) => put(i + 1, `key${i}`, `value-${i * 7919}`)));
    const backward = await (await make()).restore();
    await backward.put([...pairs].reverse());
    expect(backward.digest()).toBe(forward.digest());
    // Extra pairs written, then deleted, leave no trace in the digest; a value written again at
    // another seq is another state (its version differs).
    const more = await make();
    await more.apply([...pairs.map((_, i) => put(i + 1, `key${i}`, `value-${i * 7919}`)), put(201, 'extra', 'x'), del(202, 'extra')]);
    expect(more.digest()).toBe(forward.digest());
    await more.apply([put(203, 'key0', pairs[0]![1])]);
    expect(more.digest()).not.toBe(forward.digest());
    expect(forward.digest()).toMatch(new RegExp(`^[0-9a-f]{${DIGEST_HEX_CHARS}}$`));
  });

  test("a restore's digest is its pairs' digest, the one a transfer's trailer is checked against before commit", async () => {
    const source = await make();
    await source.apply([put(1, 'a', '1'), put(2, 'b', '2'), put(3, 'c', '3')]);
    const s = await make();
    await s.apply([put(1, 'old', 'v')]);
    const r = await s.restore();
    await r.put([pair('a', '1', 1), pair('b', 'corrupted', 2)]);
    expect(r.digest()).not.toBe(source.digest());
    // The same key again (a resent chunk) replaces its pair in the digest, it is not counted twice.
    await r.put([pair('b', '2', 2), pair('c', '3', 3)]);
    expect(r.digest()).toBe(source.digest());
    await r.commit(3);
    expect(s.digest()).toBe(source.digest());
  });

  test('apply reports whether each key existed, and refuses anything but seq + 1 without applying', async () => {
    const s = await make();
    expect(await s.apply([put(1, 'k', 'v'), put(2, 'k', 'w'), del(3, 'k'), del(4, 'k')])).toEqual([false, true, true, false]);
    await expect(s.apply([put(5, 'a', '1'), put(7, 'b', '2')])).rejects.toThrow(/seq 7 after 5/);
    await expect(s.apply([put(4, 'k', 'v')])).rejects.toThrow();
    expect(s.seq).toBe(4);
    expect(valueOf(s.get('a'))).toBeUndefined();
  });

  test('keys with awkward characters round-trip', async () => {
    const s = await make();
    const keys = ['\u0000a', 'a\u0000b', '\u0001', ' space ', 'é', '日本', '1', 'true', 'k'.repeat(1024)];
    await s.apply(keys.map((k, i) => put(i + 1, k, `v${i}`)));
    keys.forEach((k, i) => expect(valueOf(s.get(k))).toBe(`v${i}`));
    expect(pairsOf(s).map(([k]) => k).sort()).toEqual([...keys].sort());
  });

  test('the log window keeps the newest entries within its entry and byte limits', async () => {
    const s = await make({ entriesMax: 5, bytesMax: 1 << 20 });
    await s.apply(Array.from({ length: 12 }, (_, i) => put(i + 1, `k${i}`, 'v')));
    const v = s.view();
    expect(v.logStartSeq).toBe(8);
    expect([...v.entries(10)].map((j) => (JSON.parse(j) as Entry).seq)).toEqual([10, 11, 12]);
    v.close();
    const b = await make({ entriesMax: 1000, bytesMax: 200 });
    await b.apply(Array.from({ length: 20 }, (_, i) => put(i + 1, `k${i}`, 'x'.repeat(20))));
    const bv = b.view();
    const kept = [...bv.entries(bv.logStartSeq)];
    expect(kept.reduce((n, j) => n + Buffer.byteLength(j), 0)).toBeLessThanOrEqual(200);
    expect(kept.length).toBe(20 - bv.logStartSeq + 1);
    expect((JSON.parse(kept[kept.length - 1]!) as Entry).seq).toBe(20);
    bv.close();
  });

  test('restore replaces the whole state only on commit, with an empty log window', async () => {
    const s = await make();
    await s.apply([put(1, 'old', 'v')]);
    const r = await s.restore();
    await r.put([pair('new', 'v', 1), pair('n2', 'w', 2)]);
    expect(valueOf(s.get('old'))).toBe('v');
    expect(valueOf(s.get('new'))).toBeUndefined();
    await r.commit(7);
    expect(valueOf(s.get('old'))).toBeUndefined();
    expect(valueOf(s.get('new'))).toBe('v');
    expect(s.seq).toBe(7);
    expect(s.size).toBe(2);
    expect(s.view().logStartSeq).toBe(8);
    await s.apply([put(8, 'after', 'x')]);
    expect(valueOf(s.get('after'))).toBe('x');
  });
});

test('the digest function is pinned: changing it needs a new DIGEST_ALGORITHM, since LMDB stores trust a digest by that name', async () => {
  const sum = new DigestSum();
  for (const [k, v] of [['a', '1'], ['key', 'value'], ['é', '日本']] as const) sum.add(k, v);
  expect({ algorithm: DIGEST_ALGORITHM, digest: sum.hex() }).toEqual({ algorithm: 'xxh3-128-sum', digest: GOLDEN_DIGEST });
  // A store sums its stored values: each with its version (and expiry), as a transfer carries them.
  const s = new MemoryStore(WIDE);
  await s.apply([put(1, 'a', '1'), put(2, 'key', 'value'), put(3, 'é', '日本')]);
  const stored = new DigestSum();
  for (const [k, v, version] of [['a', '1', 1], ['key', 'value', 2], ['é', '日本', 3]] as const) stored.add(k, encodeStored(v, version, undefined));
  expect(s.digest()).toBe(stored.hex());
  expect(new MemoryStore(WIDE).digest()).toBe('0'.repeat(DIGEST_HEX_CHARS));
});

describe('lmdb store', () => {
  test('a reopened directory has the same state, seq, digest, size and log window', async () => {
    const dir = tempDir();
    const a = await LmdbStore.open(dir, ID, { entriesMax: 3, bytesMax: 1 << 20 });
    await a.apply([put(1, 'a', '1'), put(2, 'b', '2'), del(3, 'a'), put(4, 'c', '3')]);
    const before = { seq: a.seq, digest: a.digest(), size: a.size };
    await a.close();
    const b = await lmdb(dir, { entriesMax: 3, bytesMax: 1 << 20 });
    expect({ seq: b.seq, digest: b.digest(), size: b.size }).toEqual(before);
    expect(valueOf(b.get('b'))).toBe('2');
    expect(valueOf(b.get('a'))).toBeUndefined();
    const v = b.view();
    expect(v.logStartSeq).toBe(2);
    expect([...v.entries(2)].length).toBe(3);
    v.close();
  });

  test('a restored state survives a reopen; the replaced one is gone', async () => {
    const dir = tempDir();
    const a = await LmdbStore.open(dir, ID, WIDE);
    await a.apply([put(1, 'old', 'v')]);
    const r = await a.restore();
    await r.put([pair('new', 'v', 1)]);
    await r.commit(5);
    await a.close();
    const b = await lmdb(dir);
    expect(b.seq).toBe(5);
    expect(valueOf(b.get('new'))).toBe('v');
    expect(valueOf(b.get('old'))).toBeUndefined();
    expect(pairsOf(b)).toEqual([pair('new', 'v', 1)]);
  });

  test('an apply that fails half-way writes nothing, so retrying it is exact', async () => {
    const s = await lmdb();
    const mem = new MemoryStore(WIDE);
    await s.apply([put(1, 'a', 'old')]);
    await mem.apply([put(1, 'a', 'old')]);
    // Any error inside the transaction (simulated on the log table's write of seq 3).
    const log = (s as unknown as { log: { put: (k: number, v: string) => unknown } }).log;
    const realPut = log.put.bind(log);
    log.put = (k, v) => {
      if (k === 3) throw new Error('simulated MDB error');
      return realPut(k, v);
    };
    const batch = [put(2, 'a', 'new'), put(3, 'b', 'x')];
    await expect(s.apply(batch)).rejects.toThrow('simulated');
    expect({ seq: s.seq, a: valueOf(s.get('a')), b: valueOf(s.get('b')) }).toEqual({ seq: 1, a: 'old', b: undefined });
    log.put = realPut;
    await s.apply(batch);
    await mem.apply(batch);
    expect({ digest: s.digest(), size: s.size }).toEqual({ digest: mem.digest(), size: mem.size });
  });

  test('a view is a consistent snapshot while writes go on', async () => {
    const s = await lmdb();
    await s.apply([put(1, 'a', '1'), put(2, 'b', '2')]);
    const v = s.view();
    await s.apply([put(3, 'a', 'changed'), put(4, 'c', '3')]);
    expect(v.seq).toBe(2);
    expect([...v.pairs()].sort()).toEqual([pair('a', '1', 1), pair('b', '2', 2)]);
    expect([...v.entries(1)].length).toBe(2);
    v.close();
  });

  test("refuses a directory that belongs to another node, shard or cluster", async () => {
    const dir = tempDir();
    const a = await LmdbStore.open(dir, ID, WIDE);
    await a.apply([put(1, 'k', 'v')]);
    await a.close();
    for (const other of [{ ...ID, shard: 's1' }, { ...ID, node: 's0-follower' }, { ...ID, cluster: 'c2' }]) {
      await expect(LmdbStore.open(dir, other, WIDE)).rejects.toThrow(StorageConfigError);
    }
    await expect(LmdbStore.open(dir, { ...ID, shard: 's1' }, WIDE)).rejects.toThrow(/belongs to .*"shard":"s0"/);
    const again = await lmdb(dir);
    expect(valueOf(again.get('k'))).toBe('v');
  });

  test('a directory written by a build with the SHA-256 digest opens with the current digest, recomputed once and logged', async () => {
    const writes = [put(1, 'a', '1'), put(2, 'b', '2'), put(3, 'a', 'again'), del(4, 'b'), put(5, 'c', '3')];
    const dir = await writeAsOldBuild(writes);
    const logged: unknown[] = [];
    const logger = { info: (...args: unknown[]) => void logged.push(args) };
    const upgraded = await LmdbStore.open(dir, ID, WIDE, logger as never);
    const same = await lmdb();
    await same.apply(writes);
    expect({ seq: upgraded.seq, size: upgraded.size, digest: upgraded.digest() }).toEqual({ seq: 5, size: 2, digest: same.digest() });
    expect(logged).toHaveLength(1);
    expect(JSON.stringify(logged[0])).toMatch(/recomputed the state digest/);
    // From here on the digest is kept per write as usual, and the upgrade is not repeated.
    await upgraded.apply([put(6, 'd', '4')]);
    await same.apply([put(6, 'd', '4')]);
    expect(upgraded.digest()).toBe(same.digest());
    await upgraded.close();
    const again = await LmdbStore.open(dir, ID, WIDE, logger as never);
    stores.push(again);
    expect({ digest: again.digest(), logged: logged.length }).toEqual({ digest: same.digest(), logged: 1 });
  });

  test('a directory whose key count disagrees with its data is refused when its digest is recomputed', async () => {
    const dir = await writeAsOldBuild([put(1, 'a', '1')], { keys: 2 });
    await expect(LmdbStore.open(dir, ID, WIDE)).rejects.toThrow(/holds 1 keys, its state says 2/);
  });

  test('a data directory that cannot be created is a clear configuration error', async () => {
    const file = join(tempDir(), 'a-file');
    writeFileSync(file, 'not a directory');
    await expect(LmdbStore.open(join(file, 'data'), ID, WIDE)).rejects.toThrow(StorageConfigError);
    await expect(LmdbStore.open(join(file, 'data'), ID, WIDE)).rejects.toThrow(/cannot open data directory/);
  });
});

/**
 * A data directory as a build before XXH3-128 left it: written by today's store, then its state
 * record put back in the old shape (no `digestAlgorithm`; the SHA-256 sum of its pairs as the
 * digest). The tables and every other field are the same in both builds.
 */
async function writeAsOldBuild(writes: LogRecord[], override: Record<string, unknown> = {}): Promise<string> {
  const dir = tempDir();
  const store = await LmdbStore.open(dir, ID, WIDE);
  await store.apply(writes);
  const oldDigest = new Sha256DigestSum();
  for (const [k, v] of pairsOf(store)) oldDigest.add(k, v);
  await store.close();
  const env = open({ path: dir, maxDbs: 8 });
  const meta = env.openDB<Record<string, unknown>, string>({ name: 'meta', encoding: 'json' });
  const { digestAlgorithm: _dropped, ...state } = meta.get('state')!;
  await meta.put('state', { ...state, digest: oldDigest.hex(), ...override });
  await env.close();
  return dir;
}

test('keys of the store\'s own (idempotency records) are kept and digested but not counted as keys', async () => {
  for (const s of [new MemoryStore(WIDE)]) {
    await s.apply([put(1, 'a', '1'), put(2, '\u0000idem\u0000r\u0000a', '{}'), put(3, 'b', '2'), del(4, '\u0000idem\u0000r\u0000a'), put(5, '\u0000idem\u0000q\u0000b', '{}')]);
    expect(s.size).toBe(2);
    expect(valueOf(s.get('\u0000idem\u0000q\u0000b'))).toBe('{}');
  }
});
