// `kv shard` (the built CLI) against a fake router on a free port: list as text and JSON, add
// with the admin token and waiting until the map shows no migration, --no-wait, and an error
// printed as code + message with a non-zero exit.
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { ClusterMap, MigrationView } from '@shardkv/common';

const KV = join(__dirname, '..', 'dist', 'kv.js');
const TOKEN = 'test-admin-token';

const migration: MigrationView = { id: 'mig-1', kind: 'add', shard: 'shard-2', state: 'copying', slotsMoving: 1365, moves: [{ source: 'shard-0', target: 'shard-2', slots: 683 }, { source: 'shard-1', target: 'shard-2', slots: 682 }], startedAt: '2026-12-01T00:00:00.000Z', progress: null };
const baseMap: ClusterMap = {
  version: 4,
  slotCount: 4096,
  slotHash: 'md5-le32-top12',
  shards: [
    { id: 'shard-0', leader: 'http://127.0.0.1:5001', follower: 'http://127.0.0.1:6001', epoch: 2 },
    { id: 'shard-1', leader: 'http://127.0.0.1:5002', follower: 'http://127.0.0.1:6002', epoch: 1 },
  ],
  slots: [
    [0, 1000, 'shard-0'],
    [1000, 3000, 'shard-1'],
    [3000, 4096, 'shard-0'],
  ],
  migration: null,
};
const status = { shards: [{ id: 'shard-0', leader: { keys: 300 } }, { id: 'shard-1', leader: { keys: 100 } }] };

let server: Server;
let url: string;
let map: ClusterMap;
let requests: Array<{ method: string; url: string; auth: string | undefined; body: string }>;
/** What POST /admin/shards answers; the map's migration is `migration` for this many polls after it. */
let addAnswer: { status: number; body: unknown };
let pollsUntilDone: number;

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      requests.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body });
      const send = (code: number, b: unknown) => res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(b));
      if (req.url === '/cluster/map') {
        if (map.migration !== null && pollsUntilDone-- <= 0) map = { ...map, version: map.version + 1, migration: null };
        return send(200, map);
      }
      if (req.url === '/status') return send(200, status);
      if (req.method === 'POST' && req.url === '/admin/shards') {
        if (addAnswer.status !== 202) return send(addAnswer.status, addAnswer.body);
        map = { ...map, version: map.version + 1, migration };
        return send(202, { ...(addAnswer.body as object), mapVersion: map.version });
      }
      send(404, { error: { code: 'route_not_found', message: 'no route' } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

beforeEach(() => {
  map = baseMap;
  requests = [];
  addAnswer = { status: 202, body: { migration } };
  pollsUntilDone = 2;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

function kv(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [KV, '--url', url, ...args], { env: { ...process.env, KV_ADMIN_TOKEN: TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

test('list prints the map version, each shard with its slots, keys and share of keys', async () => {
  const r = await kv('shard', 'list');
  expect(r.code).toBe(0);
  const lines = r.stdout.split('\n');
  expect(lines[0]).toBe('map version 4');
  expect(lines[2]).toMatch(/^shard-0\s+http:\/\/127\.0\.0\.1:5001\s+http:\/\/127\.0\.0\.1:6001\s+2\s+2096\s+300\s+75\.0%$/);
  expect(lines[3]).toMatch(/^shard-1\s+\S+\s+\S+\s+1\s+2000\s+100\s+25\.0%$/);
  expect(lines[4]).toBe('no migration running');
});

test('list --json, with a migration running', async () => {
  map = { ...baseMap, migration };
  pollsUntilDone = 100;
  const r = await kv('shard', 'list', '--json');
  expect(r.code).toBe(0);
  const listing = JSON.parse(r.stdout) as { version: number; shards: Array<{ id: string; slots: number; keys: number; keysPercent: number }>; migration: MigrationView };
  expect(listing.version).toBe(4);
  expect(listing.shards.map((s) => [s.id, s.slots, s.keys, s.keysPercent])).toEqual([
    ['shard-0', 2096, 300, 75],
    ['shard-1', 2000, 100, 25],
  ]);
  expect(listing.migration).toMatchObject({ id: 'mig-1', state: 'copying' });
});

test('add sends the shard with the admin token and waits until the map shows no migration', async () => {
  const r = await kv('shard', 'add', 'shard-2', '--leader', 'http://127.0.0.1:5003', '--follower', 'http://127.0.0.1:6003', '--poll-ms', '20');
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.stringContaining('migration mig-1: copying') });
  const add = requests.find((q) => q.url === '/admin/shards')!;
  expect({ method: add.method, auth: add.auth, body: JSON.parse(add.body) as unknown }).toEqual({ method: 'POST', auth: `Bearer ${TOKEN}`, body: { id: 'shard-2', leader: 'http://127.0.0.1:5003', follower: 'http://127.0.0.1:6003' } });
  expect(r.stdout).toContain('migration mig-1 started: add shard-2, 1365 slots moving: shard-0 -> shard-2 (683), shard-1 -> shard-2 (682)');
  expect(r.stdout).toMatch(/done: add shard-2 in [\d.]+ s; map version 6/);
  expect(requests.filter((q) => q.url === '/cluster/map').length).toBe(3);
});

test('add --no-wait returns once the migration has started', async () => {
  const r = await kv('shard', 'add', 'shard-2', '--leader', 'http://a', '--follower', 'http://b', '--no-wait');
  expect(r.code).toBe(0);
  expect(r.stdout).not.toContain('done');
  expect(requests.filter((q) => q.url === '/cluster/map').length).toBe(0);
});

test('an error is printed as code and message, with a non-zero exit', async () => {
  addAnswer = { status: 409, body: { error: { code: 'migration_in_progress', message: 'migration mig-0 is running' } } };
  const r = await kv('shard', 'add', 'shard-2', '--leader', 'http://a', '--follower', 'http://b');
  expect(r.code).not.toBe(0);
  expect(r.stderr).toBe('kv: migration_in_progress: migration mig-0 is running\n');
});
