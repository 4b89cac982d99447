// A real Prometheus (Debian's prometheus, 2.42) against a real local cluster proves what parsing
// text cannot: promtool accepts the shipped scrape config (monitoring/prometheus.yml) and finds
// nothing to lint in the processes' /metrics; Prometheus, scraping with the shipped config's jobs,
// authorization and labels, has every target up; and every expression of every panel of the
// Grafana dashboard is valid PromQL that, after traffic and a failover, returns data whose labels
// fill the panel's legend. The server is our own process on a free port with a temp TSDB, never
// the system's service.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensurePrometheus, PrometheusServer, promtool } from '@shardkv/tools';
import * as YAML from 'yaml';
import { attempt, del, get, http, keysOn, put, shardsInSync, startCluster, waitFor, type TestCluster } from './helpers';

const ROOT = path.resolve(__dirname, '..');
const SHIPPED_CONFIG = path.join(ROOT, 'monitoring', 'prometheus.yml');
const DASHBOARD = path.join(ROOT, 'monitoring', 'grafana', 'dashboards', 'shardkv.json');
/** The two jobs of the shipped config, and what each scrapes here. */
const ROUTER_JOB = 'shardkv-router';
const NODE_JOB = 'shardkv-node';
const SCRAPE_INTERVAL_S = 1;
/**
 * What Grafana's built-in interval variables stand for here. Grafana makes $__rate_interval at
 * least 4 scrape intervals; 15 s is that for our 1 s scrapes with room to spare, and short enough
 * that the window holds only this test's traffic.
 */
const GRAFANA_VARIABLES: Record<string, string> = {
  __rate_interval: '15s',
  __interval: '5s',
  __interval_ms: '5000',
  __range: '15s',
  __range_s: '15',
  __range_ms: '15000',
};
/**
 * Expressions with no series to show after this test's traffic, and why. They must still be valid
 * PromQL and evaluate (status success); that they return nothing is expected, not asserted.
 */
const NO_DATA_EXPECTED: Record<string, string> = {};

/**
 * promtool's findings about prom-client's default metrics, which are not ours to name: it exposes
 * these gauges (counts of handles, requests and resources alive now) with a `_total` suffix.
 */
const PROM_CLIENT_LINT = new Set(['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'].map((name) => `${name} non-counter metrics should not have "_total" suffix`));

/**
 * Series the traffic below must show with a value above 0 (a rate, an increase, a quantile), by
 * their labels: each is a single event or two, which a panel must not lose. (Every other
 * expression needs one sample with a value.)
 */
const MUST_SHOW: Record<string, Array<Record<string, string>>> = {
  'sum by (code) (rate(shardkv_router_errors_total[$__rate_interval])) > 0': [{ code: 'key_not_found' }],
  'sum by (code) (rate(shardkv_node_errors_total[$__rate_interval])) > 0': [{ code: 'not_leader' }],
  'sum by (shard, reason) (increase(shardkv_router_failovers_total[$__rate_interval]))': [{ shard: 'shard-1', reason: 'admin_failover' }],
  'sum by (reason, outcome) (increase(shardkv_router_coordinator_decisions_total[$__rate_interval]))': [
    { reason: 'admin_failover', outcome: 'committed' },
    { reason: 'follower_lost', outcome: 'committed' },
    { reason: 'follower_caught_up', outcome: 'committed' },
  ],
  'sum by (cause, code) (rate(shardkv_router_retries_total[$__rate_interval]))': [{ cause: 'leader_refused', code: 'not_ready' }],
  'sum by (kind) (increase(shardkv_node_catchups_total[$__rate_interval]))': [{ kind: 'tail' }],
  'histogram_quantile(0.99, sum by (le, kind) (rate(shardkv_node_catchup_duration_seconds_bucket[$__rate_interval])))': [{ kind: 'tail' }],
  // A route's series appears with its first request, which rate() cannot see: the test sends two, apart.
  'sum by (route) (rate(shardkv_router_requests_total[$__rate_interval]))': [{ route: '/put' }, { route: '/get' }, { route: '/delete' }, { route: '/mput' }, { route: '/mget' }],
  'histogram_quantile(0.99, sum by (le, op) (rate(shardkv_router_operation_duration_seconds_bucket[$__rate_interval])))': ['get', 'put', 'delete', 'mget', 'mput'].map((op) => ({ op })),
};

interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
}
interface Panel {
  title: string;
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating?: { list: Array<{ name: string; current?: { value?: string | string[] } }> };
}
interface QueryAnswer {
  status: 'success' | 'error';
  errorType?: string;
  error?: string;
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}
interface TargetsAnswer {
  data: { activeTargets: Array<{ labels: Record<string, string>; scrapePool: string; health: string; lastError: string; scrapeUrl: string }> };
}

let cluster: TestCluster;
let server: PrometheusServer | undefined;
let dir: string;
let tokenFile: string;

beforeAll(async () => {
  await ensurePrometheus();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardkv-prom-test-'));
  tokenFile = path.join(dir, 'cluster_token');
  // Two shards: per-shard labels are told apart, and the cluster starts 3 s sooner than with three.
  // Prometheus starts while the cluster does: it applies new targets only every 5 s.
  cluster = await startCluster({ shardCount: 2 }, async (c) => {
    // As the compose entrypoint writes it: the token alone, no newline.
    fs.writeFileSync(tokenFile, c.token, { mode: 0o600 });
    const config = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(config, YAML.stringify(localConfig(YAML.parse(fs.readFileSync(SHIPPED_CONFIG, 'utf8')), c, tokenFile)));
    server = await PrometheusServer.start({ configFile: config, sink: (name, line) => c.logs.push(`${name} ${line}`) });
  });
}, 120_000);

afterAll(async () => {
  // Each on its own: a server that fails to stop must not leave the cluster running.
  await server?.stop().catch(() => undefined);
  await cluster?.stop();
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

/**
 * The shipped config with this cluster's addresses: its jobs, metrics paths, authorization and
 * target labels kept, the credentials file and the targets replaced, scrapes every second. A
 * shipped target group for a shard this cluster does not run (shard-3, the "reshard" profile's)
 * is left out, as is router-2 (the "ha" profile's).
 */
function localConfig(shipped: any, c: TestCluster, credentialsFile: string): unknown {
  const jobs = (shipped.scrape_configs as any[]).map((job) => job.job_name);
  expect(jobs.sort()).toEqual([NODE_JOB, ROUTER_JOB]);
  const hostPort = (url: string) => new URL(url).host;
  const scrapeConfigs = (shipped.scrape_configs as any[]).map((job) => {
    const local = { ...job };
    if (local.authorization !== undefined) local.authorization = { ...local.authorization, credentials_file: credentialsFile };
    if (job.job_name === ROUTER_JOB) local.static_configs = [{ targets: c.routers.map((r) => hostPort(r.url)) }];
    else {
      local.static_configs = (job.static_configs as Array<{ labels: { shard: string } }>).flatMap((group) => {
        const shard = c.shards.find((s) => s.id === group.labels.shard);
        return shard === undefined ? [] : [{ ...group, targets: [hostPort(shard.leader.url), hostPort(shard.follower.url)] }];
      });
      expect(local.static_configs.map((g: { labels: { shard: string } }) => g.labels.shard)).toEqual(c.shards.map((s) => s.id));
    }
    return local;
  });
  const interval = `${SCRAPE_INTERVAL_S}s`;
  return { ...shipped, global: { ...shipped.global, scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval }, scrape_configs: scrapeConfigs };
}

/** Every panel's targets, rows' nested panels included. */
function panelTargets(panels: Panel[]): Array<{ panel: string; target: Target }> {
  return panels.flatMap((p) => [...(p.targets ?? []).map((target) => ({ panel: p.title, target })), ...panelTargets(p.panels ?? [])]);
}

/** The expression as Grafana sends it: built-in interval variables and the dashboard's own replaced. */
function substitute(expr: string, dashboard: Dashboard): string {
  const variables = { ...GRAFANA_VARIABLES };
  for (const v of dashboard.templating?.list ?? []) {
    const value = v.current?.value;
    variables[v.name] = Array.isArray(value) ? value.join('|') : (value ?? '.*');
  }
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => variables[(braced ?? bare)!] ?? whole);
}

async function query(expr: string, time?: number): Promise<QueryAnswer> {
  return server!.api<QueryAnswer>('/api/v1/query', { query: expr, ...(time === undefined ? {} : { time: String(time) }) });
}

/** The value of a one-series query, NaN when there is none. */
async function scalar(expr: string): Promise<number> {
  const r = await query(expr);
  return Number(r.data?.result[0]?.value[1] ?? NaN);
}

describe('promtool', () => {
  test('accepts the shipped scrape config, with the credentials file the compose entrypoint writes', async () => {
    // The shipped file unchanged: everything but the existence of /prometheus/cluster_token.
    const syntax = await promtool(['check', 'config', '--syntax-only', SHIPPED_CONFIG]);
    expect(syntax).toMatchObject({ code: 0 });
    // In full, with only the credentials file moved to one that exists.
    const shipped = fs.readFileSync(SHIPPED_CONFIG, 'utf8');
    expect(shipped).toContain('credentials_file: /prometheus/cluster_token');
    const copy = path.join(dir, 'shipped.yml');
    fs.writeFileSync(copy, shipped.replace('credentials_file: /prometheus/cluster_token', `credentials_file: ${tokenFile}`));
    const full = await promtool(['check', 'config', copy]);
    expect(full).toMatchObject({ code: 0 });
    expect(full.output).toMatch(/SUCCESS/);
    // The config derived for this cluster is the one the server below runs with.
    expect(await promtool(['check', 'config', path.join(dir, 'prometheus.yml')])).toMatchObject({ code: 0 });
  });

  test('finds nothing to lint in the router\'s and a node\'s /metrics', async () => {
    const router = await http('GET', `${cluster.router.url}/metrics`);
    const node = await http('GET', `${cluster.shards[0]!.leader.url}/metrics`, undefined, { authorization: `Bearer ${cluster.token}` });
    for (const exposition of [router.body as string, node.body as string]) {
      expect(exposition).toMatch(/^# HELP /m);
      const lint = await promtool(['check', 'metrics'], exposition);
      const problems = lint.output.split('\n').filter((line) => line !== '' && !PROM_CLIENT_LINT.has(line));
      expect(problems).toEqual([]);
      expect(lint.code).toBe(problems.length === 0 && lint.output !== '' ? 3 : 0); // 3: lint findings only
    }
  });
});

describe('Prometheus against the cluster', () => {
  test('scrapes every router and node with the shipped jobs: all targets up, nodes with their shard label', async () => {
    const expected = cluster.routers.length + 2 * cluster.shards.length;
    let targets: TargetsAnswer['data']['activeTargets'] = [];
    await waitFor(`${expected} targets up`, cluster, async () => {
      targets = (await server!.api<TargetsAnswer>('/api/v1/targets', { state: 'active' })).data.activeTargets;
      return targets.length === expected && targets.every((t) => t.health === 'up');
    }).catch((err: Error) => {
      throw new Error(`${err.message.split('\n')[0]}\ntargets: ${JSON.stringify(targets.map((t) => [t.scrapeUrl, t.health, t.lastError]))}`);
    });
    expect(targets.filter((t) => t.scrapePool === ROUTER_JOB)).toHaveLength(cluster.routers.length);
    const nodeShards = targets.filter((t) => t.scrapePool === NODE_JOB).map((t) => t.labels.shard).sort();
    expect(nodeShards).toEqual(cluster.shards.flatMap((s) => [s.id, s.id]).sort());
    // The node job's bearer token is what makes those up: without it a node answers 401.
    expect(await scalar(`sum(up{job="${NODE_JOB}"})`)).toBe(2 * cluster.shards.length);
  });

  test('every expression of every dashboard panel is valid PromQL and, after traffic and a failover, returns data that fills its legend', async () => {
    const R = cluster.router.url;
    // Traffic for every operation and outcome the panels show.
    for (let i = 0; i < 20; i += 1) expect((await put(R, `prom-${i}`, `v${i}`)).status).toBe(200);
    for (let i = 0; i < 20; i += 1) expect((await get(R, `prom-${i}`)).status).toBe(200);
    expect((await get(R, 'prom-never-written')).status).toBe(404); // key_not_found at the router
    // A route's series appears with its first request, which rate() cannot see: these go once
    // before the faults and once after, a scrape or more apart.
    const rarerRoutes = async (i: number) => {
      expect((await del(R, `prom-${i}`)).status).toBe(200);
      expect((await http('POST', `${R}/mput`, { entries: [{ key: `prom-m${i}`, value: 'a' }, { key: 'prom-m', value: 'b' }] })).status).toBe(200);
      expect((await http('POST', `${R}/mget`, { keys: [`prom-m${i}`, 'prom-m'] })).status).toBe(200);
    };
    await rarerRoutes(0);
    // Both at once: shard-0 loses its follower (kill -9) and gets it back behind, a catch-up;
    // shard-1 switches roles through the admin API, a failover.
    const faultsStartMs = Date.now();
    await Promise.all([followerLossAndReturn('shard-0'), plannedFailover('shard-1')]);
    const faultsMs = Date.now() - faultsStartMs;
    await rarerRoutes(1);
    // After the faults, on a node that is a follower now and stays one: not_leader at a node.
    expect((await put(cluster.shards[0]!.follower.url, 'prom-direct', 'x')).status).toBe(409);
    const trafficEndS = Date.now() / 1000;
    // Every target scraped once more after the traffic, so each rate window ends past it.
    await waitFor('a scrape of every target after the traffic', cluster, async () => (await scalar('min(timestamp(up))')) > trafficEndS);
    const at = Date.now() / 1000;

    const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as Dashboard;
    const targets = panelTargets(dashboard.panels);
    expect(targets.length).toBeGreaterThan(20);
    const exprs = new Set(targets.map((t) => t.target.expr));
    expect([...Object.keys(NO_DATA_EXPECTED), ...Object.keys(MUST_SHOW)].filter((e) => !exprs.has(e))).toEqual([]); // none stale
    const problems: string[] = [];
    for (const { panel, target } of targets) {
      const where = `"${panel}" ${target.refId}: ${target.expr}`;
      const expr = substitute(target.expr, dashboard);
      if (expr.includes('$')) {
        problems.push(`${where}: a variable is left after substitution: ${expr}`);
        continue;
      }
      const r = await query(expr, at);
      if (r.status !== 'success') {
        problems.push(`${where}: ${r.errorType}: ${r.error}`);
        continue;
      }
      if (NO_DATA_EXPECTED[target.expr] !== undefined) continue;
      const result = r.data!.result;
      if (!result.some((s) => Number.isFinite(Number(s.value[1])))) {
        problems.push(`${where}: no sample with a value (${result.length} series: ${JSON.stringify(result.slice(0, 3))})`);
        continue;
      }
      for (const labels of MUST_SHOW[target.expr] ?? []) {
        const series = result.find((r) => Object.entries(labels).every(([k, v]) => r.metric[k] === v));
        if (!(Number(series?.value[1]) > 0)) problems.push(`${where}: ${JSON.stringify(labels)} is ${series === undefined ? 'missing' : series.value[1]}, not above 0`);
      }
      const legendLabels = [...(target.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);
      const unlabelled = result.filter((s) => legendLabels.some((l) => s.metric[l] === undefined));
      if (unlabelled.length > 0) problems.push(`${where}: legend "${target.legendFormat}" names a label missing from ${JSON.stringify(unlabelled[0]!.metric)}`);
    }
    expect(problems).toEqual([]);
    // Everything above must fall in the 15 s windows; the faults take 3-4 s here.
    expect(faultsMs).toBeLessThan(10_000);
  });
});

/**
 * Kills a shard's follower (the supervisor restarts it) and writes until the leader commits
 * alone: the coordinator's follower_lost decision. The follower returns behind, takes the tail it
 * missed (a catch-up of kind tail) and is put back in sync (follower_caught_up).
 */
async function followerLossAndReturn(shardId: string): Promise<void> {
  const shard = cluster.shards.find((s) => s.id === shardId)!;
  const keys = await keysOn(cluster, shardId, 5, 'prom-loss');
  cluster.process(shard.follower.name).signal('SIGKILL');
  await waitFor(`${shardId} writes without its follower`, cluster, async () => (await attempt(() => put(cluster.router.url, keys[0]!, 'alone'))).status === 200);
  for (const k of keys) expect((await put(cluster.router.url, k, 'alone')).status).toBe(200);
  await waitFor(`${shardId} in sync again`, cluster, () => shardsInSync(cluster, [cluster.shards.indexOf(shard)]));
}

/**
 * POST /admin/failover: the failover and decision series, a new epoch. A read sent at once meets
 * the new leader before its read lease starts (READ_LEASE_MS, 1 s): refused not_ready, which the
 * router counts as a retry (and answers 503 if the second try is refused too).
 */
async function plannedFailover(shardId: string): Promise<void> {
  const index = cluster.shards.findIndex((s) => s.id === shardId);
  const [key] = await keysOn(cluster, shardId, 1, 'prom-fo');
  expect((await put(cluster.router.url, key!, 'before')).status).toBe(200);
  const switched = await http('POST', `${cluster.router.url}/admin/failover?shard=${index}`, undefined, { authorization: `Bearer ${cluster.token}` });
  expect(switched.status).toBe(200);
  expect([200, 503]).toContain((await get(cluster.router.url, key!)).status);
  await waitFor(`${shardId} in sync after the switch`, cluster, () => shardsInSync(cluster, [index]));
  await waitFor(`a write on ${shardId}'s new leader`, cluster, async () => (await attempt(() => put(cluster.router.url, key!, 'after'))).status === 200);
  expect((await get(cluster.router.url, key!)).body.value).toBe('after');
}
