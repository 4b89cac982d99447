// The bulk path against a real cluster: `kv load` through POST /load loads every well-formed
// line (a later duplicate wins, within a chunk, across chunks and across requests), reports
// malformed lines by number and skips them; every key is then read back through the router.
// POST /load itself: per-chunk reports with line numbers, and bad requests as 4xx JSON errors.
import { KvClient } from '@shardkv/client';
import { LOAD_BODY_BYTES_MAX } from '@shardkv/common';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { clusterForFile, http, kv, type TestCluster } from './helpers';

let cluster: TestCluster;
let client: KvClient;
const { dir } = clusterForFile('shardkv-load-', (c, k) => {
  cluster = c;
  client = k;
});

/** The state a file should leave: each key's last well-formed value, by the reference rules. */
function expectedState(text: string): Map<string, string> {
  const state = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const m = /^([^\s]+)[ \t]([^]*)$/.exec(line);
    if (m !== null && Buffer.byteLength(m[1]!) <= 1024) state.set(m[1]!, m[2]!);
  }
  return state;
}

/** Every key's value through the router's batch GET (the same read path as GET /get), and a sample one by one. */
async function expectLoaded(state: Map<string, string>): Promise<void> {
  const keys = [...state.keys()];
  for (let i = 0; i < keys.length; i += 1000) {
    const r = await client.mget(keys.slice(i, i + 1000));
    const wrong = r.results.filter((x) => !x.ok || x.value !== state.get(x.key)).map((x) => ({ key: x.key, got: x.ok ? x.value : x.error.code, want: state.get(x.key) }));
    expect(wrong).toEqual([]);
  }
  for (const k of keys.filter((_, i) => i % 250 === 0)) expect({ k, v: await client.get(k) }).toEqual({ k, v: state.get(k) });
}

describe('kv load through POST /load', () => {
  test('loads every well-formed line; a later duplicate wins within a chunk, across chunks and across requests; malformed lines are reported by number', async () => {
    const lines: string[] = [];
    for (let i = 0; i < 12_000; i += 1) lines.push(`dup-${i % 5000} value ${i} with spaces`);
    lines.splice(10, 0, 'dup-3 replaced right away', 'dup-3 and again in the same chunk');
    lines.push('', 'lonely-key-without-value', '   ', ' leading-space v', 'tabbed\tvalue\twith tabs', 'crlf-key crlf value\r', 'empty-value ', 'ключ значение', `${'k'.repeat(1025)} too long`);
    lines.push('dup-7 the last word');
    const text = lines.join('\n');
    const file = join(dir, 'mixed.txt');
    writeFileSync(file, text);
    const numberOf = (line: string) => lines.indexOf(line) + 1;

    // --batch: two requests (8000 lines, then the rest); a shard's part of the first takes two chunks.
    const r = await kv(cluster.router.url, ['load', file, '--batch', '8000', '--no-progress']);
    const state = expectedState(text);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: expect.stringMatching(new RegExp(`^loaded ${lines.length - 3 - 2} keys, skipped 3 malformed line\\(s\\), failed 0`)) });
    expect(r.stderr).toContain(`${file}:${numberOf('lonely-key-without-value')}: malformed line skipped: no value`);
    expect(r.stderr).toContain(`${file}:${numberOf(' leading-space v')}: malformed line skipped: starts with whitespace`);
    expect(r.stderr).toContain(`${file}:${lines.length - 1}: malformed line skipped: key longer than 1024 bytes`);
    expect(r.stderr.match(/malformed line skipped/g)).toHaveLength(3);
    expect(state.get('dup-7')).toBe('the last word');
    expect(state.get('crlf-key')).toBe('crlf value');
    await expectLoaded(state);
  }, 120_000);

  test('several requests in flight still let the later duplicate win', async () => {
    const lines = Array.from({ length: 8000 }, (_, i) => `conc-${i % 700} v${i}`);
    const file = join(dir, 'conc.txt');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const r = await kv(cluster.router.url, ['load', file, '--batch', '500', '--concurrency', '4', '--no-progress']);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: expect.stringMatching(/^loaded 8000 keys, skipped 0 malformed line\(s\), failed 0/) });
    await expectLoaded(expectedState(readFileSync(file, 'utf8')));
  }, 120_000);
});

describe('POST /load', () => {
  const load = (body: string | Buffer, query = '', headers: Record<string, string> = { 'content-type': 'text/plain' }) => http('POST', `${cluster.router.url}/load${query}`, body, headers);

  test('answers per chunk: lines, loaded, and malformed lines numbered from firstLine', async () => {
    const body = 'c-a 1\nc-b 2\nbroken\n\nc-c 3';
    const r = await load(body, '?firstLine=101');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ lines: 5, entries: 3, loaded: 3, failed: 0, indeterminate: 0, malformed: 1, malformedLines: [{ line: 103, code: 'invalid_line', message: expect.stringMatching(/no value/) }] });
    const chunks = r.body.chunks as Array<{ shard: string; firstLine: number; lastLine: number; entries: number; loaded: number; failures: unknown[] }>;
    expect(chunks.reduce((n, c) => n + c.entries, 0)).toBe(3);
    for (const c of chunks) expect(c).toMatchObject({ shard: expect.stringMatching(/^shard-/), loaded: c.entries, failures: [] });
    expect(Math.min(...chunks.map((c) => c.firstLine))).toBe(101);
    expect(Math.max(...chunks.map((c) => c.lastLine))).toBe(105);
    expect(await client.get('c-c')).toBe('3');
  });

  test('bytes that are not UTF-8 make only their line malformed', async () => {
    const r = await load(Buffer.concat([Buffer.from('utf-ok 1\nutf-bad '), Buffer.from([0xff, 0xfe]), Buffer.from('\nutf-ok2 2\n')]));
    expect(r.body).toMatchObject({ loaded: 2, malformed: 1, malformedLines: [{ line: 2, message: 'not valid UTF-8 text' }] });
    expect(await client.get('utf-bad')).toBeUndefined();
  });

  test('bad requests are 4xx JSON errors and load nothing', async () => {
    const wrongType = await load('t-1 x\n', '', { 'content-type': 'application/json' });
    expect({ status: wrongType.status, code: wrongType.body.error?.code }).toEqual({ status: 415, code: 'unsupported_media_type' });
    const gzip = await load('t-2 x\n', '', { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
    expect({ status: gzip.status, code: gzip.body.error?.code }).toEqual({ status: 415, code: 'unsupported_media_type' });
    const badLine = await load('t-3 x\n', '?firstLine=0');
    expect({ status: badLine.status, code: badLine.body.error?.code }).toEqual({ status: 400, code: 'bad_request' });
    const tooLarge = await rawLoad({ 'content-type': 'text/plain', 'content-length': String(LOAD_BODY_BYTES_MAX + 1) }, 't-4 x\n');
    expect({ status: tooLarge.status, code: tooLarge.body.error?.code }).toEqual({ status: 413, code: 'body_too_large' });
    const chunked = await rawLoad({ 'content-type': 'text/plain', 'transfer-encoding': 'chunked' }, 't-5 x\n');
    expect({ status: chunked.status, code: chunked.body.error?.code }).toEqual({ status: 411, code: 'length_required' });
    for (const k of ['t-1', 't-2', 't-3', 't-4', 't-5']) expect(await client.get(k)).toBeUndefined();
  });

  test("the leaders' chunk endpoint needs the cluster token", async () => {
    const r = await http('POST', `${cluster.shards[0]!.leader.url}/internal/load`, 'x 1\n', { 'content-type': 'text/plain' });
    expect({ status: r.status, code: r.body.error?.code }).toEqual({ status: 401, code: 'unauthorized' });
  });
});

/** A request with exactly these headers (undici would add or refuse some), and part of a body; the answer parsed. */
function rawLoad(headers: Record<string, string>, body: string): Promise<{ status: number; body: any }> {
  const url = new URL(`${cluster.router.url}/load`);
  return new Promise((res, rej) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method: 'POST', path: url.pathname, headers }, (r) => {
      let text = '';
      r.on('data', (d: Buffer) => (text += d.toString()));
      r.on('end', () => {
        req.destroy();
        res({ status: r.statusCode ?? 0, body: JSON.parse(text) });
      });
    });
    req.on('error', rej);
    // A declared body far larger than what is sent: the answer must come before it is read.
    req.write(body);
    if (headers['transfer-encoding'] === 'chunked') req.end();
  });
}
