// The batch API (/mput, /mget), the typed client and the `kv` command line against a real
// cluster: bulk load of a generated file with malformed lines, a duplicate key, --strict.
import { KvClient, KvClientError } from '@shardkv/client';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clusterForFile, http, kv as runKv, type TestCluster } from './helpers';

let cluster: TestCluster;
let client: KvClient;
const { dir } = clusterForFile('shardkv-cli-', (c, k) => {
  cluster = c;
  client = k;
});

/** The `kv` command line against this file's cluster. */
function kv(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runKv(cluster.router.url, args, 60_000);
}

describe('batch API', () => {
  test('mput answers one result per entry, in order, across shards; a later duplicate wins; mget reads them back', async () => {
    const entries = Array.from({ length: 50 }, (_, i) => ({ key: `batch-${i % 40}`, value: `v${i}` }));
    const r = await client.mput(entries);
    expect({ ok: r.ok, failed: r.failed, keys: r.results.map((x) => x.key) }).toEqual({ ok: 50, failed: 0, keys: entries.map((e) => e.key) });
    const g = await client.mget([...Array.from({ length: 40 }, (_, i) => `batch-${i}`), 'batch-missing']);
    expect(g.results.slice(0, 10).map((x) => (x.ok ? x.value : null))).toEqual(Array.from({ length: 10 }, (_, i) => `v${i + 40}`));
    expect(g.results[10]).toMatchObject({ key: 'batch-10', ok: true, value: 'v10' });
    expect(g.results[40]).toMatchObject({ key: 'batch-missing', ok: false, error: { code: 'key_not_found' } });
  });

  test('a batch with one bad entry, or too many entries, is refused whole and applies nothing', async () => {
    const bad = await http('POST', `${cluster.router.url}/mput`, { entries: [{ key: 'whole-1', value: 'x' }, { key: '', value: 'y' }] });
    expect({ status: bad.status, code: bad.body.error?.code }).toEqual({ status: 400, code: 'invalid_body' });
    expect(await client.get('whole-1')).toBeUndefined();
    const many = await http('POST', `${cluster.router.url}/mput`, { entries: Array.from({ length: 1001 }, (_, i) => ({ key: `m${i}`, value: 'x' })) });
    expect({ status: many.status, code: many.body.error?.code }).toEqual({ status: 413, code: 'batch_too_large' });
    const err = await client.mget([]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvClientError);
    expect(err).toMatchObject({ status: 400, outcome: 'definite' });
  });
});

describe('kv command line', () => {
  test('put, get, del, status', async () => {
    expect((await kv('put', 'cli-k', 'hello world')).stdout).toMatch(/^OK seq=\d+/);
    expect((await kv('get', 'cli-k')).stdout).toBe('hello world\n');
    expect((await kv('del', 'cli-k')).stdout).toBe('deleted\n');
    expect((await kv('get', 'cli-k')).code).toBe(1);
    const st = await kv('status');
    expect(st.stdout.split('\n').filter((l) => l.startsWith('shard-')).length).toBe(3);
  });

  test('gen and load: every key lands, malformed lines are reported with their numbers, a later duplicate wins', async () => {
    const file = join(dir, 'data.txt');
    const gen = await kv('gen', '--keys', '3000', '--value-bytes', '60');
    expect(gen.code).toBe(0);
    writeFileSync(file, gen.stdout);
    appendFileSync(file, '\nlonely-key-without-value\nkey:0000000007 the later value wins\n');
    const r = await kv('load', file, '--batch', '200', '--concurrency', '4');
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: expect.stringMatching(/^loaded 3001 keys, skipped 1 malformed line\(s\), failed 0/) });
    expect(r.stderr).toContain(`${file}:3002: malformed line skipped: no value`);
    const lines = readFileSync(file, 'utf8').split('\n');
    const [key42, value42] = [lines[42]!.split(' ')[0]!, lines[42]!.slice(lines[42]!.indexOf(' ') + 1)];
    expect(await client.get(key42)).toBe(value42);
    expect(await client.get('key:0000000007')).toBe('the later value wins');
    expect(await client.get('key:0000002999')).toBeDefined();
  }, 120_000);

  test('--strict refuses a file with a malformed line and loads nothing', async () => {
    const file = join(dir, 'strict.txt');
    writeFileSync(file, 'strict-a 1\nstrict-b\nstrict-c 3\n');
    const r = await kv('load', file, '--strict');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file}:2: malformed line`);
    expect(await client.get('strict-a')).toBeUndefined();
  });
});
