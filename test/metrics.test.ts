// GET /metrics on every process of the real 7-process cluster: the router's is public, a node's
// needs the cluster token; the series the README lists exist and move with traffic; and every
// metric the Grafana dashboard queries is one the processes actually expose.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { request } from 'undici';
import { http, put, get, startCluster, type TestCluster } from './helpers';

const DASHBOARD = path.resolve(__dirname, '..', 'monitoring', 'grafana', 'dashboards', 'shardkv.json');

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await cluster?.stop();
});

interface Scrape {
  /** Metric family name -> its TYPE (counter, gauge, histogram, ...). */
  types: Map<string, string>;
  /** Each sample line's series (`name{labels}`) -> value. */
  samples: Map<string, number>;
}

/** The Prometheus text format, read just enough to find families and sample values. */
function parseExposition(text: string): Scrape {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) types.set(type[1]!, type[2]!);
    else if (line !== '' && !line.startsWith('#')) {
      const space = line.lastIndexOf(' ');
      samples.set(line.slice(0, space), Number(line.slice(space + 1)));
    }
  }
  return { types, samples };
}

/** GET /metrics, with its content type and text. */
async function fetchMetrics(url: string, token?: string): Promise<{ status: number; type: string; text: string }> {
  const res = await request(`${url}/metrics`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
  return { status: res.statusCode, type: String(res.headers['content-type']), text: await res.body.text() };
}

async function scrape(url: string, token?: string): Promise<Scrape> {
  const res = await fetchMetrics(url, token);
  expect(res.status).toBe(200);
  return parseExposition(res.text);
}

/** The sum of every sample of `name` whose labels include all of `labels` (a `{k="v"}` substring each). */
function total(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const [series, value] of s.samples) {
    const bare = series.split('{')[0];
    if (bare !== name) continue;
    if (Object.entries(labels).every(([k, v]) => series.includes(`${k}="${v}"`))) sum += value;
  }
  return sum;
}

const nodes = () => cluster.shards.flatMap((s) => [s.leader, s.follower]);

/** Metric names in a PromQL expression: identifiers of our families and the default process ones, histogram suffixes stripped. */
function metricNames(expr: string): string[] {
  const names = expr.match(/\b(?:shardkv|process|nodejs)_[a-zA-Z0-9_]+/g) ?? [];
  return [...new Set(names.map((n) => n.replace(/_(bucket|sum|count)$/, '')))];
}

describe('GET /metrics', () => {
  test('a node serves /metrics only with the cluster token; the router serves it to anyone', async () => {
    const node = cluster.shards[0]!.leader.url;
    const refused = await http('GET', `${node}/metrics`);
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('unauthorized');
    expect((await http('GET', `${node}/metrics`, undefined, { authorization: 'Bearer wrong' })).status).toBe(401);
    const res = await fetchMetrics(cluster.router.url);
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect((await fetchMetrics(node, cluster.token)).text).toMatch(/^# HELP /m);
  });

  test('the router\'s series exist and its counters and histograms move with traffic', async () => {
    const R = cluster.router.url;
    const before = await scrape(R);
    for (let i = 0; i < 20; i += 1) expect((await put(R, `metrics-${i}`, `v${i}`)).status).toBe(200);
    for (let i = 0; i < 20; i += 1) expect((await get(R, `metrics-${i}`)).status).toBe(200);
    expect((await get(R, 'metrics-never-written')).status).toBe(404);
    expect((await http('POST', `${R}/mput`, { entries: [{ key: 'm1', value: 'a' }, { key: 'm2', value: 'b' }] })).status).toBe(200);
    const after = await scrape(R);

    const moved = (name: string, labels: Record<string, string> = {}) => total(after, name, labels) - total(before, name, labels);
    expect(moved('shardkv_router_requests_total', { route: '/put', method: 'POST', status: '200' })).toBe(20);
    expect(moved('shardkv_router_requests_total', { route: '/get', method: 'GET', status: '404' })).toBe(1);
    expect(moved('shardkv_router_errors_total', { code: 'key_not_found' })).toBe(1);
    for (const op of ['put', 'get', 'mput']) expect(moved('shardkv_router_operation_duration_seconds_count', { op })).toBeGreaterThan(0);
    // Buckets resolve 0.5 ms to 5 s.
    expect(after.samples.has('shardkv_router_operation_duration_seconds_bucket{le="0.0005",op="put"}')).toBe(true);
    expect(after.samples.has('shardkv_router_operation_duration_seconds_bucket{le="5",op="put"}')).toBe(true);
    expect(moved('shardkv_router_batch_entries_count', { kind: 'write' })).toBeGreaterThan(0);
    expect(moved('shardkv_router_batch_entries_sum', { kind: 'read' })).toBe(21);
    expect(total(after, 'shardkv_router_map_version')).toBeGreaterThan(0);
    expect(total(after, 'shardkv_router_coordinator')).toBe(1);
    expect(total(after, 'shardkv_router_migration_state', { state: 'none' })).toBe(1);
    for (const s of cluster.shards) expect(total(after, 'shardkv_router_shard_epoch', { shard: s.id })).toBeGreaterThan(0);
    for (const family of ['shardkv_router_batch_queue_depth', 'shardkv_router_retries_total', 'shardkv_router_coordinator_decisions_total', 'shardkv_router_failovers_total', 'process_cpu_seconds_total', 'nodejs_eventloop_lag_p99_seconds']) {
      expect(after.types.has(family)).toBe(true);
    }
  });

  test('every node\'s series exist, and replication counters move on the leaders and commits on both roles', async () => {
    const before = await Promise.all(nodes().map((n) => scrape(n.url, cluster.token)));
    for (let i = 0; i < 30; i += 1) expect((await put(cluster.router.url, `node-metrics-${i}`, 'x'.repeat(100))).status).toBe(200);
    const after = await Promise.all(nodes().map((n) => scrape(n.url, cluster.token)));
    const sum = (scrapes: Scrape[], name: string, labels: Record<string, string> = {}) => scrapes.reduce((n, s) => n + total(s, name, labels), 0);
    const moved = (name: string, labels: Record<string, string> = {}) => sum(after, name, labels) - sum(before, name, labels);

    expect(moved('shardkv_node_replication_messages_sent_total')).toBeGreaterThan(0);
    expect(moved('shardkv_node_replication_sent_bytes_total')).toBeGreaterThan(30 * 100);
    expect(moved('shardkv_node_replication_messages_acked_total')).toBeGreaterThan(0);
    expect(moved('shardkv_node_replication_acked_bytes_total')).toBeGreaterThan(0);
    expect(moved('shardkv_node_replication_entries_sent_total')).toBeGreaterThanOrEqual(30);
    expect(moved('shardkv_node_store_commit_duration_seconds_count', { role: 'leader' })).toBeGreaterThan(0);
    expect(moved('shardkv_node_store_commit_duration_seconds_count', { role: 'follower' })).toBeGreaterThan(0);
    expect(moved('shardkv_node_requests_total', { route: '/internal/write', status: '200' })).toBeGreaterThan(0);
    expect(moved('shardkv_node_seq')).toBeGreaterThanOrEqual(2 * 30); // leader and follower of each write
    expect(moved('shardkv_node_store_keys')).toBe(2 * 30);
    expect(sum(after, 'shardkv_node_role', { role: 'leader' })).toBe(cluster.shards.length);
    expect(sum(after, 'shardkv_node_role', { role: 'follower' })).toBe(cluster.shards.length);
    for (const s of after) {
      expect(total(s, 'shardkv_node_epoch')).toBeGreaterThan(0);
      expect(total(s, 'shardkv_node_store_bytes')).toBeGreaterThan(0);
      for (const family of ['shardkv_node_replication_lag_entries', 'shardkv_node_replication_lag_seconds', 'shardkv_node_replication_queue_entries', 'shardkv_node_catchups_total', 'shardkv_node_catchup_duration_seconds', 'shardkv_node_errors_total', 'process_resident_memory_bytes']) {
        expect(s.types.has(family)).toBe(true);
      }
    }
    // Each leader reconciled with its follower at start: a catch-up (of kind none, on a fresh cluster).
    expect(sum(after, 'shardkv_node_catchups_total', { role: 'leader' })).toBeGreaterThanOrEqual(cluster.shards.length);
  });

  test('a node counts the requests it refuses by code', async () => {
    const follower = cluster.shards[0]!.follower.url;
    const before = await scrape(follower, cluster.token);
    expect((await put(follower, 'direct-to-follower', 'x')).status).toBe(409);
    const after = await scrape(follower, cluster.token);
    expect(total(after, 'shardkv_node_errors_total', { code: 'not_leader' }) - total(before, 'shardkv_node_errors_total', { code: 'not_leader' })).toBe(1);
  });

  test('every metric the Grafana dashboard queries is exposed by a running process', async () => {
    const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    const queried = [...new Set(exprs.flatMap(metricNames))].sort();
    expect(queried.length).toBeGreaterThan(20);
    const scrapes = [await scrape(cluster.router.url), ...(await Promise.all(nodes().map((n) => scrape(n.url, cluster.token))))];
    const exposed = new Set(scrapes.flatMap((s) => [...s.types.keys()]));
    expect(queried.filter((name) => !exposed.has(name))).toEqual([]);
  });
});

describe('metricNames', () => {
  test('finds our and the default metric names in PromQL, histogram suffixes stripped', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le, op) (rate(shardkv_router_operation_duration_seconds_bucket[1m])))')).toEqual(['shardkv_router_operation_duration_seconds']);
    expect(metricNames('rate(process_cpu_seconds_total[1m]) + nodejs_eventloop_lag_p99_seconds')).toEqual(['process_cpu_seconds_total', 'nodejs_eventloop_lag_p99_seconds']);
    expect(metricNames('sum(rate(shardkv_router_batch_entries_sum[1m])) / sum(rate(shardkv_router_batch_entries_count[1m]))')).toEqual(['shardkv_router_batch_entries']);
  });
});
