import { freshPlacement } from '@shardkv/router/dist/placement';
import { KvClient, type KvClientOptions } from '@shardkv/client';
import { Cluster, type ClusterOptions } from '@shardkv/tools';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import type { ChaosReport } from '@shardkv/tools/dist/chaos';

/**
 * Integration tests run the real processes: the same Cluster as `npm start`, on free ports, with
 * the data in a temp directory. `stop()` removes that directory unless the caller passed its own
 * `dataRoot` (to start a second cluster over the same data, then remove it with `removeDataRoot`).
 * `beforeStart` runs once the ports are chosen, before any process starts (a Prometheus that needs
 * the addresses gets to start meanwhile); if it throws, nothing is started.
 */
export async function startCluster(opts: ClusterOptions = {}, beforeStart?: (cluster: TestCluster) => Promise<void>): Promise<TestCluster> {
  const logs: string[] = [];
  const ownsData = opts.dataRoot === undefined;
  const dataRoot = opts.dataRoot ?? mkdtempSync(join(tmpdir(), 'shardkv-it-'));
  const cluster = await Cluster.create({
    ports: 'free',
    clusterId: 'test-cluster',
    dataRoot,
    restart: { backoffMinMs: 100, backoffMaxMs: 1000, stableAfterMs: 5000 },
    ...opts,
    // Faster fault detection than production defaults keeps the suite short.
    env: { LOG_LEVEL: 'info', HEARTBEAT_INTERVAL_MS: '100', RETRY_BACKOFF_MS: '100', ...opts.env },
    sink: (name, line) => {
      logs.push(`${name} ${line}`);
      if (logs.length > 2000) logs.shift();
    },
  });
  const stop = cluster.stop.bind(cluster);
  const test = Object.assign(cluster, {
    logs,
    dataRoot,
    stop: async () => {
      await stop();
      if (ownsData) removeDataRoot(dataRoot);
    },
  });
  try {
    await beforeStart?.(test);
    await cluster.start(30_000);
  } catch (err) {
    await test.stop();
    throw new Error(`${String(err)}\nlast log lines:\n${logs.slice(-40).join('\n')}`);
  }
  return test;
}

export type TestCluster = Cluster & { logs: string[]; dataRoot: string };

export function newDataRoot(): string {
  return mkdtempSync(join(tmpdir(), 'shardkv-it-'));
}

export function removeDataRoot(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface HttpResult {
  status: number;
  body: any;
  ms: number;
  headers?: Record<string, string | string[] | undefined>;
}

/** One HTTP call; never throws on a status, only on a transport failure. */
export async function http(method: string, url: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<HttpResult> {
  const started = Date.now();
  const isString = typeof body === 'string' || Buffer.isBuffer(body);
  const res = await request(url, {
    method: method as 'GET',
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : isString ? (body as string | Buffer) : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.body.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // left as text: the test asserting JSON will say so
  }
  return { status: res.statusCode, body: parsed, ms: Date.now() - started, headers: res.headers };
}

/** A transport failure (node down, timeout) becomes status 0 instead of a throw, so it can be recorded. */
export async function attempt(call: () => Promise<HttpResult>): Promise<HttpResult> {
  const started = Date.now();
  try {
    return await call();
  } catch (err) {
    return { status: 0, body: String(err), ms: Date.now() - started };
  }
}

export const put = (base: string, key: string, value: string) => http('POST', `${base}/put`, { key, value });
export const get = (base: string, key: string) => http('GET', `${base}/get?key=${encodeURIComponent(key)}`);
export const del = (base: string, key: string) => http('DELETE', `${base}/delete?key=${encodeURIComponent(key)}`);
export const status = async (nodeUrl: string) => (await http('GET', `${nodeUrl}/status`)).body;

/** Polls until `check` returns true or the deadline passes; returns whether it did. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000, stepMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return true;
    } catch {
      // a node may be down mid-check; try again
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Polls until `check` holds; on timeout fails with `what` and the cluster's last log lines. */
export async function waitFor(what: string, cluster: TestCluster, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  if (await eventually(check, timeoutMs, 50)) return;
  // The shards' state comes first: a CI log may keep only the start of a long message.
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}\nshards now:\n${await shardSummary(cluster)}\nlog tail:\n${cluster.logs.slice(-60).join('\n')}`);
}

/** One line per shard: what the coordinator says and what its two nodes report, for failure messages. */
async function shardSummary(cluster: Cluster): Promise<string> {
  try {
    const shards = (await http('GET', `${cluster.router.url}/status`, undefined, {}, 2000)).body.shards as any[];
    const node = (n: any) => (n?.reachable === false ? 'unreachable' : `${n?.role}/${n?.state} e${n?.epoch} seq ${n?.seq}${n?.commitMode ? ` ${n.commitMode}` : ''}${n?.follower ? ` f=${JSON.stringify(n.follower)}` : ''} q=${n?.queue?.entries ?? '-'} d=${String(n?.digest).slice(0, 8)}`);
    return shards.map((s) => `${s.id} e${s.epoch} inSync=${s.inSync} | leader ${node(s.leader)} | follower ${node(s.follower)}`).join('\n');
  } catch (err) {
    return `(router /status failed: ${String(err)})`;
  }
}

/**
 * Keys the router places on the given shard. The ring is deterministic over shard ids, so the
 * test computes the same placement as the router.
 */
export async function keysOn(cluster: Cluster, shardId: string, count: number, prefix = 'k'): Promise<string[]> {
  const ring = freshPlacement(cluster.shards.map((s) => s.id));
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i += 1) {
    const k = `${prefix}-${i}`;
    if (ring.shardFor(k) === shardId) keys.push(k);
  }
  return keys;
}

/** The router's view of one shard: epoch, in-sync flag, and the current leader's and follower's /status. */
export async function shardView(cluster: Cluster, id: string): Promise<any> {
  const r = await http('GET', `${cluster.router.url}/status`);
  return (r.body.shards as Array<{ id: string }>).find((s) => s.id === id);
}

/**
 * Every listed shard (by index) is healthy and replicated: the coordinator counts its follower in
 * sync, and its current leader and follower (whichever nodes they are now) have the same seq and
 * digest with nothing pending.
 */
export async function shardsInSync(cluster: Cluster, indexes: number[] = cluster.shards.map((_, i) => i)): Promise<boolean> {
  for (const i of indexes) {
    const v = await shardView(cluster, cluster.shards[i]!.id);
    const l = v?.leader;
    const f = v?.follower;
    const agree = v?.inSync === true && l?.state === 'serving' && l.commitMode === 'sync' && l.follower?.inSync === true && l.queue?.entries === 0 && f?.state === 'in_sync' && l.seq === f.seq && l.digest === f.digest && l.epoch === v.epoch;
    if (!agree) return false;
  }
  return true;
}

/** A fault-harness run found nothing wrong: no anomaly, no undocumented answer, no nemesis failure, nothing the checker could not decide. */
export function expectClean(report: ChaosReport): void {
  expect(report.nemesisErrors).toEqual([]);
  expect(report.check.anomalies).toEqual([]);
  expect(report.unexpected).toEqual([]);
  expect(report.check.undecided).toEqual([]);
  expect(report.check.linearizable).toBe(true);
}

const KV = resolve(__dirname, '..', 'packages', 'cli', 'dist', 'kv.js');

/** Runs the `kv` command line against a router, with `env` added to its environment; killed (and the test failed) past `timeoutMs`. */
export function kv(url: string, args: string[], timeoutMs = 90_000, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [KV, '--url', url, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`kv ${args.join(' ')} did not finish in ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

/**
 * One cluster, a typed client on its router and a temp dir for a whole test file: the cluster is
 * started before its tests and, with the client and the dir, removed after them, even on failure.
 * `use` receives the cluster and client once they exist.
 */
export function clusterForFile(dirPrefix: string, use: (cluster: TestCluster, client: KvClient) => void, clientOptions?: KvClientOptions): { dir: string } {
  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  let cluster: TestCluster | undefined;
  let client: KvClient | undefined;
  beforeAll(async () => {
    cluster = await startCluster();
    client = new KvClient(cluster.router.url, clientOptions);
    use(cluster, client);
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    if (cluster !== undefined) await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);
  return { dir };
}
