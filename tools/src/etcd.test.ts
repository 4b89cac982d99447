// Real etcd processes (the etcd binary must be on PATH, or installable as root: see ensureEtcd).
// The tests in the first block run in order on one 3-member cluster: each kills or restarts
// members where the previous one left them.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdCluster } from './etcd';
import { freePort } from './ports';

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** POST /v3/kv/put through etcd's JSON gateway; throws on a non-2xx answer or the deadline. */
async function put(endpoint: string, key: string, value: string, timeoutMs: number): Promise<void> {
  const res = await fetch(`${endpoint}/v3/kv/put`, {
    method: 'POST',
    body: JSON.stringify({ key: b64(key), value: b64(value) }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok) throw new Error(`put answered ${res.status} ${await res.text()}`);
}

/** A put retried until it commits: right after a member dies the survivors may still be electing. */
async function putEventually(endpoint: string, key: string, value: string, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await put(endpoint, key, value, 1000);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function get(endpoint: string, key: string): Promise<string | undefined> {
  const res = await fetch(`${endpoint}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: b64(key) }), signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`range answered ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { kvs?: { value?: string }[] };
  const value = body.kvs?.[0]?.value;
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString();
}

/** A zombie (exited, not yet reaped by whoever inherited it) counts as gone. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
}

async function waitGone(pid: number, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

describe('a 3-member etcd cluster', () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await EtcdCluster.create({ members: 3 });
    await cluster.start();
  }, 30_000);
  afterAll(() => cluster?.stop());

  test('starts, and serves a put and a range through the v3 JSON gateway', async () => {
    // Proves: every member is healthy, and a write through one member is read through another.
    expect(cluster.names).toEqual(['etcd0', 'etcd1', 'etcd2']);
    await put(cluster.endpoints[0]!, 'greeting', 'hello', 5000);
    expect(await get(cluster.endpoints[2]!, 'greeting')).toBe('hello');
  });

  test('with one member killed, the other two still commit a put', async () => {
    // Proves: kill() crashes one member and two of three are a quorum.
    cluster.kill(0);
    await putEventually(cluster.endpoints[1]!, 'after-one-down', 'yes', 5000);
    expect(await get(cluster.endpoints[2]!, 'after-one-down')).toBe('yes');
  });

  test('with two members killed (quorum lost), a put does not commit within its deadline', async () => {
    // Proves: one member alone cannot commit, and the failure is bounded by the client's deadline.
    cluster.kill(1);
    const startedAt = Date.now();
    await expect(put(cluster.endpoints[2]!, 'no-quorum', 'x', 1500)).rejects.toThrow();
    expect(Date.now() - startedAt).toBeLessThan(3000);
  });

  test('restarting a killed member on its data dir brings quorum back', async () => {
    // Proves: restart() reuses the member's data (it still has what it committed) and restores writes.
    await cluster.restart(1);
    await putEventually(cluster.endpoints[2]!, 'after-restart', 'back', 5000);
    expect(await get(cluster.endpoints[1]!, 'after-one-down')).toBe('yes');
    await cluster.restart(0);
    expect(await get(cluster.endpoints[0]!, 'after-restart')).toBe('back');
  });

  test('stop() leaves no etcd process and removes its temp dir', async () => {
    // Proves: stop() waits for every exit and cleans up, and calling it twice is harmless.
    const pids = [0, 1, 2].map((i) => cluster.pid(i)!);
    expect(pids.every(isAlive)).toBe(true);
    await cluster.stop();
    await cluster.stop();
    expect(pids.filter(isAlive)).toEqual([]);
    expect(existsSync(cluster.dataRoot)).toBe(false);
  });
});

test('a member that cannot start fails start() fast, naming it and quoting its log', async () => {
  // Proves: a taken client port gives a clear error (member, URL, etcd's own words), not a 20 s hang.
  const port = await freePort();
  // It hangs up on whoever connects (our health probes), so no socket outlives the test.
  const squatter: Server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
  const cluster = await EtcdCluster.create({ members: 1, clientPorts: [port] });
  try {
    const startedAt = Date.now();
    await expect(cluster.start()).rejects.toThrow(new RegExp(`etcd0 \\(http://127.0.0.1:${port}\\): exited[\\s\\S]*address already in use`));
    expect(Date.now() - startedAt).toBeLessThan(5000);
  } finally {
    await cluster.stop();
    await new Promise((resolve) => squatter.close(resolve));
  }
});

test('a kept dataRoot starts again with its saved ports and keeps its data', async () => {
  // Proves: stop() keeps a given dataRoot, and create() on it reuses the peer URLs its members know.
  const dataRoot = mkdtempSync(join(tmpdir(), 'shardkv-etcd-kept-'));
  try {
    const first = await EtcdCluster.create({ members: 1, dataRoot });
    await first.start();
    await put(first.endpoints[0]!, 'kept', 'still here', 5000);
    await first.stop();
    expect(existsSync(join(dataRoot, 'etcd0'))).toBe(true);
    const second = await EtcdCluster.create({ members: 1, dataRoot });
    expect(second.endpoints).toEqual(first.endpoints);
    try {
      await second.start();
      expect(await get(second.endpoints[0]!, 'kept')).toBe('still here');
    } finally {
      await second.stop();
    }
    await expect(EtcdCluster.create({ members: 3, dataRoot })).rejects.toThrow(/describes another etcd cluster/);
  } finally {
    rmSync(dataRoot, { recursive: true, force: true });
  }
});

test('without etcd on PATH and without root, ensureEtcd says how to get it', () => {
  // Proves: a CI machine without etcd gets an actionable message, not an ENOENT.
  const script = `
    process.getuid = () => 1000;
    require(${JSON.stringify(join(__dirname, '..', 'dist', 'etcd.js'))}).ensureEtcd().then(
      (p) => console.log('found ' + p),
      (e) => console.log(e.message));
  `;
  const r = spawnSync(process.execPath, ['-e', script], { env: { PATH: '/nonexistent' }, encoding: 'utf8', timeout: 10_000 });
  expect(r.stdout).toMatch(/etcd is not on PATH: install it with `sudo apt-get install etcd-server`.*or put an etcd 3\.4\+ binary on PATH/);
});

test('etcd does not outlive the process that started it, even one killed with SIGKILL', async () => {
  // Proves: the supervisor's watchdog kills a binary that ignores stdin once its parent is gone.
  const script = `
    const { EtcdCluster } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'etcd.js'))});
    EtcdCluster.create({ members: 1 }).then(async (c) => {
      await c.start();
      console.log(JSON.stringify({ pid: c.pid(0), dataRoot: c.dataRoot }));
      setInterval(() => {}, 1000);
    });
  `;
  const parent = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    parent.stdout.once('data', (d: Buffer) => resolve(d.toString()));
    parent.once('exit', (code) => reject(new Error(`parent exited (${code}) before starting etcd`)));
  });
  const { pid, dataRoot } = JSON.parse(line) as { pid: number; dataRoot: string };
  try {
    expect(isAlive(pid)).toBe(true);
    parent.kill('SIGKILL');
    expect(await waitGone(pid, 3000)).toBe(true);
  } finally {
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(dataRoot, { recursive: true, force: true });
  }
});
