// Static checks of the Docker packaging (this machine has no Docker engine, so nothing is built
// or started here): docker-compose.yml must pass dclint and describe the cluster the services
// expect (names, roles, ports, peer URLs, health checks, start-up order, the shared token), both
// by default, with the "reshard" profile (a fourth shard for online resharding), with the "ha"
// profile (3 etcd members and a second router, with the shell variables the file's header
// documents) and with the "monitoring" profile (Prometheus scraping every process, Grafana with
// its datasource and dashboard), and the two Dockerfiles must build on node:20-slim and run as a
// non-root user.
//
// The structural checks collect problems instead of stopping at the first one, and the second
// half of the file feeds them broken variants of the real file, so every check is shown to fail.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.yml');
const DCLINT_CONFIG = path.join(ROOT, '.dclintrc');
const DCLINT_BIN = path.join(ROOT, 'node_modules', '.bin', 'dclint');

// ---------------------------------------------------------------------------------------------
// YAML: the `yaml` package, which dclint itself uses. It is not a direct dependency of the root
// yet, so when a plain require fails it is taken from dclint's own dependencies.
interface YamlModule {
  parse(src: string, options?: { merge?: boolean }): unknown;
  stringify(value: unknown): string;
}

function loadYaml(): YamlModule {
  try {
    return require('yaml') as YamlModule;
  } catch {
    const dclintDir = path.dirname(require.resolve('dclint/package.json', { paths: [ROOT] }));
    return require(require.resolve('yaml', { paths: [dclintDir] })) as YamlModule;
  }
}
const YAML = loadYaml();

// ---------------------------------------------------------------------------------------------
// The cluster the compose file must describe.
type Dict = Record<string, unknown>;

const SHARD_COUNT = 3;
const ROUTER_PORT = 5000;
const leaderPort = (i: number) => 5001 + i;
const followerPort = (i: number) => 6001 + i;

interface NodeSpec {
  name: string;
  shardId: string;
  role: 'leader' | 'follower';
  port: number;
  peerVar: 'FOLLOWER_URL' | 'LEADER_URL';
  peerUrl: string;
  peerService: string;
}

/** Shard i's two nodes, named and wired as every shard of the file is. */
function shardNodes(i: number): NodeSpec[] {
  const leader = `shard${i}-leader`;
  const follower = `shard${i}-follower`;
  return [{
    name: leader,
    shardId: `shard-${i}`,
    role: 'leader',
    port: leaderPort(i),
    peerVar: 'FOLLOWER_URL',
    peerUrl: `http://${follower}:${followerPort(i)}`,
    peerService: follower,
  }, {
    name: follower,
    shardId: `shard-${i}`,
    role: 'follower',
    port: followerPort(i),
    peerVar: 'LEADER_URL',
    peerUrl: `http://${leader}:${leaderPort(i)}`,
    peerService: leader,
  }];
}
const NODES: NodeSpec[] = Array.from({ length: SHARD_COUNT }, (_, i) => shardNodes(i)).flat();
// Profile "reshard": the next shard's pair, for online resharding (POST /admin/shards adds it).
const RESHARD_NODES = shardNodes(SHARD_COUNT);
const RESHARD_SERVICES = [...RESHARD_NODES.map((n) => n.name)].sort();
const LEADERS = NODES.filter((n) => n.role === 'leader').map((n) => n.name);
const DEFAULT_SERVICES = ['router', ...NODES.map((n) => n.name)].sort();

// Profile "ha": 3 etcd members and a second router, on top of the default services.
const ETCD_MEMBERS = ['etcd-0', 'etcd-1', 'etcd-2'];
const ETCD_CLIENT_URLS = ETCD_MEMBERS.map((m) => `http://${m}:2379`).join(',');
const ETCD_IMAGE = /^quay\.io\/coreos\/etcd:v3\.([4-9]|\d\d)\.\d+$/;
const ROUTERS: Record<string, { port: number; grpcPort: number; id: string }> = { router: { port: ROUTER_PORT, grpcPort: 5100, id: 'router-1' }, 'router-2': { port: 5010, grpcPort: 5110, id: 'router-2' } };
const HA_SERVICES = [...DEFAULT_SERVICES, ...ETCD_MEMBERS, 'router-2'].sort();
/** The services built from this repository, held to the same checks (health, restart, HOST, token). */
const OUR_SERVICES = [...DEFAULT_SERVICES, 'router-2', ...RESHARD_SERVICES];
// Profile "monitoring": Prometheus scraping every process, and Grafana reading it.
const MONITORING_SERVICES = ['grafana', 'prometheus'];
const MONITORING_DIR = path.join(ROOT, 'monitoring');
/** Every profile combination a user can start; each must be a closed set with distinct host ports. */
const PROFILE_SETS: string[][] = [[], ['ha'], ['loadtest'], ['ha', 'loadtest'], ['reshard'], ['ha', 'reshard'], ['monitoring'], ['ha', 'monitoring'], ['monitoring', 'reshard']];

const isDict = (v: unknown): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `environment` in either compose form (map or KEY=VALUE list); a bare key maps to null. */
function envOf(service: Dict): Map<string, string | null> {
  const env = new Map<string, string | null>();
  const raw = service.environment;
  if (Array.isArray(raw)) {
    for (const item of raw) {
      const s = String(item);
      const eq = s.indexOf('=');
      if (eq < 0) env.set(s, null);
      else env.set(s.slice(0, eq), s.slice(eq + 1));
    }
  } else if (isDict(raw)) {
    for (const [k, v] of Object.entries(raw)) env.set(k, v === null || v === undefined ? null : String(v));
  }
  return env;
}

/** Short-form volume mounts (`name:/path`). */
function volumesOf(service: Dict): string[] {
  return Array.isArray(service.volumes) ? service.volumes.filter((v): v is string => typeof v === 'string') : [];
}

/** `depends_on` in either form; the short (list) form has no condition, reported as ''. */
function dependsOn(service: Dict): Map<string, string> {
  const deps = new Map<string, string>();
  const raw = service.depends_on;
  if (Array.isArray(raw)) for (const d of raw) deps.set(String(d), '');
  else if (isDict(raw)) for (const [k, v] of Object.entries(raw)) deps.set(k, isDict(v) ? String(v.condition ?? '') : '');
  return deps;
}

/** Published host ports: "H:C", "IP:H:C", "H:C/proto", or the long form with `published`. */
function publishedPorts(service: Dict): number[] {
  const out: number[] = [];
  const raw = service.ports;
  if (!Array.isArray(raw)) return out;
  for (const p of raw) {
    if (isDict(p)) {
      if (p.published !== undefined) out.push(Number(p.published));
      continue;
    }
    const parts = String(p).split('/')[0]!.split(':');
    if (parts.length >= 2) out.push(Number(parts[parts.length - 2]));
  }
  return out;
}

function isDefaultProfile(service: Dict): boolean {
  return !Array.isArray(service.profiles) || service.profiles.length === 0;
}

/** The port the healthcheck probes, if it is the expected `GET http://127.0.0.1:PORT/health`. */
function healthcheckPort(service: Dict): number | undefined {
  const hc = service.healthcheck;
  if (!isDict(hc) || hc.disable === true) return undefined;
  const test = hc.test;
  const cmd = Array.isArray(test) ? test.map(String).join(' ') : typeof test === 'string' ? test : '';
  const m = /^CMD(?:-SHELL)? .*https?:\/\/(?:127\.0\.0\.1|localhost):(\d+)\/health\b/.exec(cmd);
  return m ? Number(m[1]) : undefined;
}

const REQUIRED_TOKEN = /^\$\{CLUSTER_TOKEN:\?[^}]*\}$/;

/** The services a `docker compose` run with these profiles starts. */
function activeServices(services: Record<string, unknown>, profiles: string[]): string[] {
  return Object.keys(services)
    .filter((name) => {
      const svc = services[name];
      return isDict(svc) && (isDefaultProfile(svc) || (svc.profiles as unknown[]).some((p) => profiles.includes(String(p))));
    })
    .sort();
}

/**
 * A variable as the container sees it when the shell holds `shell`: `${X:-d}`, `${X:?m}` and
 * `${X}` interpolated, a bare key passed through (undefined: not set in the container at all).
 */
function effectiveEnv(service: Dict, key: string, shell: Record<string, string>): string | undefined {
  const raw = envOf(service).get(key);
  if (raw === undefined) return undefined;
  if (raw === null) return shell[key];
  return raw.replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => {
    const v = shell[name];
    if (v !== undefined && v !== '') return v;
    return op === '-' ? (arg ?? '') : '';
  });
}

/**
 * The shell variables the file's header tells a user to set for "ha" (`VAR=value` on a comment
 * line), so the test checks the documented command, not a copy of it.
 */
function documentedHaShell(text: string): Record<string, string> {
  const shell: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('#')) continue;
    for (const m of line.matchAll(/\b(ETCD_ENDPOINTS|COORDINATOR_URLS)=(\S+)/g)) shell[m[1]!] = m[2]!;
  }
  return shell;
}

/** `--flag=value` or `--flag value` from a list-form command. */
function commandFlags(service: Dict): Map<string, string> {
  const flags = new Map<string, string>();
  const cmd = Array.isArray(service.command) ? service.command.map(String) : [];
  for (let i = 0; i < cmd.length; i++) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(cmd[i]!);
    if (!m) continue;
    if (m[2] !== undefined) flags.set(m[1]!, m[2]);
    else if (cmd[i + 1] !== undefined && !cmd[i + 1]!.startsWith('--')) flags.set(m[1]!, cmd[++i]!);
    else flags.set(m[1]!, 'true');
  }
  return flags;
}

/** Every way the parsed compose document departs from the cluster above; [] when none. */
function composeProblems(doc: unknown, header: string = composeText): string[] {
  if (!isDict(doc) || !isDict(doc.services)) return ['no top-level `services` map'];
  const services = doc.services as Record<string, unknown>;
  return [
    ...profileProblems(services),
    ...Object.entries(services).flatMap(([name, value]) => serviceProblems(name, value, services)),
    ...Object.keys(ROUTERS).flatMap((name) => routerProblems(name, services[name])),
    ...[...NODES, ...RESHARD_NODES].flatMap((node) => nodeProblems(node, services[node.name])),
    ...reshardProfileProblems(services),
    ...etcdProblems(services),
    ...haEnvProblems(services, documentedHaShell(header)),
    ...monitoringProblems(services),
  ];
}

/**
 * "monitoring" adds exactly Prometheus and Grafana. Prometheus mounts monitoring/prometheus.yml,
 * which scrapes every router and node service on its port, the nodes with the bearer token from
 * the file its entrypoint writes from CLUSTER_TOKEN; Grafana mounts the provisioning (a
 * datasource at the prometheus service) and the dashboards.
 */
function monitoringProblems(services: Record<string, unknown>, promText = readMonitoring('prometheus.yml')): string[] {
  const problems: string[] = [];
  const added = activeServices(services, ['monitoring']).filter((n) => !DEFAULT_SERVICES.includes(n));
  if (JSON.stringify(added) !== JSON.stringify(MONITORING_SERVICES)) problems.push(`"monitoring" adds [${added.join(', ')}], expected [${MONITORING_SERVICES.join(', ')}]`);
  const prom = services.prometheus;
  const grafana = services.grafana;
  if (!isDict(prom) || !isDict(grafana)) return problems;
  for (const [name, svc] of [['prometheus', prom], ['grafana', grafana]] as const) {
    if (JSON.stringify(svc.profiles) !== '["monitoring"]') problems.push(`${name}: profiles is ${JSON.stringify(svc.profiles)}, expected ["monitoring"]`);
    if (!/^[\w./-]+:v?\d+\.\d+\.\d+$/.test(String(svc.image))) problems.push(`${name}: image ${String(svc.image)} is not pinned to a version`);
    problems.push(...healthcheckTimingProblems(name, svc));
  }
  if (!volumesOf(prom).includes('./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro')) problems.push('prometheus: does not mount ./monitoring/prometheus.yml');
  const scrape = YAML.parse(promText) as { scrape_configs?: Array<Dict> };
  const jobs = scrape.scrape_configs ?? [];
  const targetsOf = (job: Dict | undefined) => ((job?.static_configs as Array<{ targets?: string[] }> | undefined) ?? []).flatMap((c) => c.targets ?? []).sort();
  const routerJob = jobs.find((j) => targetsOf(j).includes(`router:${ROUTER_PORT}`));
  const expectedRouters = Object.entries(ROUTERS).map(([n, r]) => `${n}:${r.port}`).sort();
  if (JSON.stringify(targetsOf(routerJob)) !== JSON.stringify(expectedRouters)) problems.push(`prometheus.yml: router targets are [${targetsOf(routerJob).join(', ')}], expected [${expectedRouters.join(', ')}]`);
  const nodeJob = jobs.find((j) => targetsOf(j).includes(`${NODES[0]!.name}:${NODES[0]!.port}`));
  const expectedNodes = [...NODES, ...RESHARD_NODES].map((n) => `${n.name}:${n.port}`).sort();
  if (JSON.stringify(targetsOf(nodeJob)) !== JSON.stringify(expectedNodes)) problems.push(`prometheus.yml: node targets are [${targetsOf(nodeJob).join(', ')}], expected [${expectedNodes.join(', ')}]`);
  const auth = nodeJob?.authorization as Dict | undefined;
  const entrypoint = Array.isArray(prom.entrypoint) ? prom.entrypoint.join(' ') : String(prom.entrypoint ?? '');
  if (auth?.type !== 'Bearer' || typeof auth.credentials_file !== 'string') problems.push('prometheus.yml: the node job sends no bearer token (nodes serve /metrics only with the cluster token)');
  else if (!entrypoint.includes(`"$$CLUSTER_TOKEN" > ${auth.credentials_file}`)) problems.push(`prometheus: its entrypoint does not write CLUSTER_TOKEN to ${auth.credentials_file}`);
  const gv = volumesOf(grafana);
  if (!gv.includes('./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro') || !gv.some((v) => v.startsWith('./monitoring/grafana/dashboards:'))) problems.push('grafana: does not mount the provisioning and dashboards of ./monitoring/grafana');
  if (!dependsOn(grafana).has('prometheus')) problems.push('grafana: does not wait for prometheus');
  return problems;
}

function readMonitoring(file: string): string {
  return fs.readFileSync(path.join(MONITORING_DIR, file), 'utf8');
}

/** The default set is exactly the 7 services, "ha" adds etcd and router-2, and every set is closed. */
function profileProblems(services: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const defaults = activeServices(services, []);
  if (JSON.stringify(defaults) !== JSON.stringify(DEFAULT_SERVICES)) {
    problems.push(`default-profile services are [${defaults.join(', ')}], expected [${DEFAULT_SERVICES.join(', ')}]`);
  }
  const ha = activeServices(services, ['ha']);
  if (JSON.stringify(ha) !== JSON.stringify(HA_SERVICES)) problems.push(`"ha" services are [${ha.join(', ')}], expected [${HA_SERVICES.join(', ')}]`);
  for (const profiles of PROFILE_SETS) {
    const label = profiles.length === 0 ? 'default' : profiles.join('+');
    const active = activeServices(services, profiles);
    const owner = new Map<number, string>();
    for (const name of active) {
      const svc = services[name] as Dict;
      // A dependency outside the active set is refused by compose (or silently not waited for).
      for (const dep of dependsOn(svc).keys()) if (!active.includes(dep)) problems.push(`${name}: depends on ${dep}, which the ${label} profile set does not start`);
      for (const port of publishedPorts(svc)) {
        const other = owner.get(port);
        if (other !== undefined) problems.push(`${name}: host port ${port} is also published by ${other} (${label} profile set)`);
        owner.set(port, name);
      }
    }
  }
  return problems;
}

/** "reshard" adds exactly the next shard's pair, which no other profile starts. */
function reshardProfileProblems(services: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const added = activeServices(services, ['reshard']).filter((n) => !DEFAULT_SERVICES.includes(n));
  if (JSON.stringify(added) !== JSON.stringify(RESHARD_SERVICES)) problems.push(`"reshard" adds [${added.join(', ')}], expected [${RESHARD_SERVICES.join(', ')}]`);
  for (const name of RESHARD_SERVICES) {
    const svc = services[name];
    if (!isDict(svc)) continue; // reported as a wrong "reshard" set
    if (JSON.stringify(svc.profiles) !== '["reshard"]') problems.push(`${name}: profiles is ${JSON.stringify(svc.profiles)}, expected ["reshard"]`);
    const dataDir = envOf(svc).get('DATA_DIR');
    if (dataDir === undefined || dataDir === null || !volumesOf(svc).some((v) => v === `${name}-data:${dataDir}`)) problems.push(`${name}: DATA_DIR is not on its own volume ${name}-data`);
  }
  return problems;
}

/** The admin request the "reshard" comment documents: `{"id","leader","follower"}` as JSON. */
function documentedReshardBody(text: string): Dict | undefined {
  const m = /^ *#.*-d '(\{"id":"[^']*\})'/m.exec(text);
  return m === null ? undefined : (JSON.parse(m[1]!) as Dict);
}

function serviceProblems(name: string, value: unknown, services: Record<string, unknown>): string[] {
  if (!isDict(value)) return [`${name}: not a map`];
  const problems: string[] = [];
  const env = envOf(value);
  const token = env.get('CLUSTER_TOKEN');
  // etcd and Grafana speak none of our protocol: the shared token is for the routers, the nodes,
  // artillery and Prometheus (which scrapes the nodes with it).
  if (!ETCD_MEMBERS.includes(name) && name !== 'grafana' && (token === undefined || token === null || !REQUIRED_TOKEN.test(token))) {
    problems.push(`${name}: CLUSTER_TOKEN must be passed as \${CLUSTER_TOKEN:?message}, got ${String(token)}`);
  }
  for (const [dep, condition] of dependsOn(value)) {
    if (!(dep in services)) problems.push(`${name}: depends on unknown service ${dep}`);
    if (condition !== 'service_healthy') problems.push(`${name}: depends on ${dep} with condition "${condition}", expected service_healthy`);
  }
  if (!OUR_SERVICES.includes(name)) return problems;

  if (value.restart !== 'unless-stopped') problems.push(`${name}: restart is ${String(value.restart)}, expected unless-stopped`);
  if (!isDict(value.build) && typeof value.build !== 'string') problems.push(`${name}: no build section`);
  problems.push(...healthcheckTimingProblems(name, value));
  const probed = healthcheckPort(value);
  const port = Number(env.get('PORT'));
  if (probed === undefined) problems.push(`${name}: healthcheck does not probe http://127.0.0.1:PORT/health`);
  else if (probed !== port) problems.push(`${name}: healthcheck probes port ${probed} but PORT is ${String(env.get('PORT'))}`);
  if (env.get('HOST') !== '0.0.0.0') problems.push(`${name}: HOST is ${String(env.get('HOST'))}, expected 0.0.0.0`);
  const published = publishedPorts(value);
  if (!(name in ROUTERS) && published.length > 0) problems.push(`${name}: publishes ${published.join(', ')}; only the routers may`);
  return problems;
}

function healthcheckTimingProblems(name: string, value: Dict): string[] {
  const hc = value.healthcheck;
  if (!isDict(hc)) return [`${name}: no healthcheck`];
  return ['interval', 'timeout', 'retries', 'start_period'].filter((key) => hc[key] === undefined).map((key) => `${name}: healthcheck has no ${key}`);
}

function routerProblems(name: string, router: unknown): string[] {
  if (!isDict(router)) return name === 'router' ? [] : [`${name}: missing`]; // a missing router is reported as a missing default service
  const problems: string[] = [];
  const { port, grpcPort, id } = ROUTERS[name]!;
  const env = envOf(router);
  if (env.get('PORT') !== String(port)) problems.push(`${name}: PORT is ${String(env.get('PORT'))}, expected ${port}`);
  if (!publishedPorts(router).includes(port)) problems.push(`${name}: does not publish ${port}`);
  // gRPC clients reach the router on its own host port, published as the same number.
  if (env.get('GRPC_PORT') !== String(grpcPort)) problems.push(`${name}: GRPC_PORT is ${String(env.get('GRPC_PORT'))}, expected ${grpcPort}`);
  if (!publishedPorts(router).includes(grpcPort) || !(router.ports as unknown[]).includes(`${grpcPort}:${grpcPort}`)) problems.push(`${name}: does not publish its gRPC port ${grpcPort} as ${grpcPort}:${grpcPort}`);
  if (env.get('ROUTER_ID') !== id) problems.push(`${name}: ROUTER_ID is ${String(env.get('ROUTER_ID'))}, expected ${id}`);
  if (env.get('ROUTER_URL') !== `http://${name}:${port}`) problems.push(`${name}: ROUTER_URL is ${String(env.get('ROUTER_URL'))}, expected http://${name}:${port}`);
  // The first router is the coordinator and waits for nobody; router-2 waits for its etcd.
  const deps = [...dependsOn(router).keys()].sort();
  const expectedDeps = name === 'router' ? [] : ETCD_MEMBERS;
  if (JSON.stringify(deps) !== JSON.stringify(expectedDeps)) {
    problems.push(name === 'router' ? `router: depends on ${deps.join(', ')}; the coordinator must start first` : `${name}: depends_on is [${deps.join(', ')}], expected [${expectedDeps.join(', ')}]`);
  }
  if (env.get('DATA_DIR') === undefined || !volumesOf(router).some((v) => v.endsWith(`:${env.get('DATA_DIR')}`))) problems.push(`${name}: DATA_DIR is not on a volume (the coordinator state would be lost)`);
  const expectedShards = Array.from({ length: SHARD_COUNT }, (_, i) =>
    `shard-${i}=http://shard${i}-leader:${leaderPort(i)},http://shard${i}-follower:${followerPort(i)}`,
  );
  const shards = (env.get('SHARDS') ?? '').split(';').filter(Boolean).sort();
  if (JSON.stringify(shards) !== JSON.stringify(expectedShards)) {
    problems.push(`${name}: SHARDS is ${String(env.get('SHARDS'))}, expected ${expectedShards.join(';')}`);
  }
  return problems;
}

function nodeProblems(node: NodeSpec, svc: unknown): string[] {
  if (!isDict(svc)) return []; // already reported as a missing default service
  const problems: string[] = [];
  const env = envOf(svc);
  const expect: Record<string, string> = {
    NODE_NAME: node.name,
    SHARD_ID: node.shardId,
    ROLE: node.role,
    PORT: String(node.port),
    [node.peerVar]: node.peerUrl,
  };
  for (const [k, v] of Object.entries(expect)) {
    if (env.get(k) !== v) problems.push(`${node.name}: ${k} is ${String(env.get(k))}, expected ${v}`);
  }
  const otherPeerVar = node.peerVar === 'FOLLOWER_URL' ? 'LEADER_URL' : 'FOLLOWER_URL';
  if (env.has(otherPeerVar)) problems.push(`${node.name}: a ${node.role} must not set ${otherPeerVar}`);
  if (env.has('COORDINATOR_URL')) problems.push(`${node.name}: sets COORDINATOR_URL, replaced by COORDINATOR_URLS`);
  // Without the HA variables a node knows the one router, which is the coordinator.
  const coordinators = effectiveEnv(svc, 'COORDINATOR_URLS', {});
  if (coordinators !== `http://router:${ROUTER_PORT}`) problems.push(`${node.name}: COORDINATOR_URLS is ${String(coordinators)} by default, expected http://router:${ROUTER_PORT}`);
  const deps = [...dependsOn(svc).keys()];
  // Every node waits for the coordinator; a leader also for its follower (it reconciles with it).
  const expectedDeps = node.role === 'leader' ? ['router', node.peerService] : ['router'];
  if (JSON.stringify(deps) !== JSON.stringify(expectedDeps)) {
    problems.push(`${node.name}: depends_on is [${deps.join(', ')}], expected [${expectedDeps.join(', ')}]`);
  }
  return problems;
}

/** The members bootstrap one cluster: the names in --initial-cluster are the members' own. */
function etcdProblems(services: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const expectedCluster = ETCD_MEMBERS.map((m) => `${m}=http://${m}:2380`).join(',');
  const tokens = new Set<string | undefined>();
  for (const name of ETCD_MEMBERS) {
    const svc = services[name];
    if (!isDict(svc)) continue; // reported as a wrong "ha" set
    const flags = commandFlags(svc);
    const expect: Record<string, string> = {
      name,
      'advertise-client-urls': `http://${name}:2379`,
      'initial-advertise-peer-urls': `http://${name}:2380`,
      'listen-client-urls': 'http://0.0.0.0:2379',
      'listen-peer-urls': 'http://0.0.0.0:2380',
      'initial-cluster-state': 'new',
    };
    for (const [k, v] of Object.entries(expect)) if (flags.get(k) !== v) problems.push(`${name}: --${k} is ${String(flags.get(k))}, expected ${v}`);
    const initial = flags.get('initial-cluster') ?? '';
    const names = initial.split(',').map((e) => e.split('=')[0]).sort();
    if (JSON.stringify(names) !== JSON.stringify(ETCD_MEMBERS)) problems.push(`${name}: --initial-cluster names [${names.join(', ')}], expected the members [${ETCD_MEMBERS.join(', ')}]`);
    else if (initial.split(',').sort().join(',') !== expectedCluster) problems.push(`${name}: --initial-cluster is ${initial}, expected ${expectedCluster}`);
    tokens.add(flags.get('initial-cluster-token'));
    const dataDir = flags.get('data-dir');
    if (dataDir === undefined || !volumesOf(svc).some((v) => v.endsWith(`:${dataDir}`))) problems.push(`${name}: --data-dir is not on a volume`);
    if (!ETCD_IMAGE.test(String(svc.image))) problems.push(`${name}: image is ${String(svc.image)}, expected a pinned quay.io/coreos/etcd:v3.4+ tag`);
    if (JSON.stringify(svc.profiles) !== '["ha"]') problems.push(`${name}: profiles is ${JSON.stringify(svc.profiles)}, expected ["ha"]`);
    if (svc.restart !== 'unless-stopped') problems.push(`${name}: restart is ${String(svc.restart)}, expected unless-stopped`);
    problems.push(...healthcheckTimingProblems(name, svc));
    if (publishedPorts(svc).length > 0) problems.push(`${name}: publishes a port; etcd has no auth and must stay on the project network`);
  }
  if (tokens.size > 1 || tokens.has(undefined)) problems.push(`etcd members do not share one --initial-cluster-token: [${[...tokens].join(', ')}]`);
  return problems;
}

/** With the documented HA variables, both routers use the etcd cluster and every node knows both. */
function haEnvProblems(services: Record<string, unknown>, shell: Record<string, string>): string[] {
  const problems: string[] = [];
  const router = services.router;
  const router2 = services['router-2'];
  if (!isDict(router) || !isDict(router2)) return problems; // reported as a wrong set
  if (effectiveEnv(router, 'ETCD_ENDPOINTS', {}) !== undefined) problems.push(`router: ETCD_ENDPOINTS is ${String(effectiveEnv(router, 'ETCD_ENDPOINTS', {}))} by default, expected unset (embedded control plane)`);
  if (effectiveEnv(router2, 'ETCD_ENDPOINTS', shell) !== ETCD_CLIENT_URLS) problems.push(`router-2: ETCD_ENDPOINTS is ${String(effectiveEnv(router2, 'ETCD_ENDPOINTS', shell))} with the documented HA command, expected ${ETCD_CLIENT_URLS}`);
  // Without the variable router-2 must refuse to start (not a URL list), never run on a control plane of its own.
  const r2Default = effectiveEnv(router2, 'ETCD_ENDPOINTS', {});
  if (r2Default === undefined || r2Default === '' || /^https?:\/\//.test(r2Default)) problems.push(`router-2: ETCD_ENDPOINTS is ${String(r2Default)} without the HA variables; it must be no endpoint list, so that router-2 refuses to start instead of using another control plane than the first router`);
  if (effectiveEnv(router, 'ETCD_ENDPOINTS', shell) !== ETCD_CLIENT_URLS) problems.push(`router: ETCD_ENDPOINTS is ${String(effectiveEnv(router, 'ETCD_ENDPOINTS', shell))} with the documented HA command, expected ${ETCD_CLIENT_URLS}`);
  const routerUrls = [router, router2].map((r) => String(envOf(r).get('ROUTER_URL'))).sort();
  for (const node of [...NODES, ...RESHARD_NODES]) {
    const svc = services[node.name];
    if (!isDict(svc)) continue;
    const urls = (effectiveEnv(svc, 'COORDINATOR_URLS', shell) ?? '').split(',').sort();
    if (JSON.stringify(urls) !== JSON.stringify(routerUrls)) problems.push(`${node.name}: COORDINATOR_URLS is [${urls.join(', ')}] with the documented HA command, expected every router [${routerUrls.join(', ')}]`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Dockerfiles.
interface Stage {
  from: string;
  lines: string[];
}

/** Instructions (comments dropped, continuation lines joined) grouped by FROM. */
function stagesOf(dockerfile: string): Stage[] {
  const joined = dockerfile.replace(/\\\r?\n/g, ' ');
  const stages: Stage[] = [];
  for (const raw of joined.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const from = /^FROM\s+(?:--platform=\S+\s+)?(\S+)/i.exec(line);
    if (from) stages.push({ from: from[1]!, lines: [] });
    else stages[stages.length - 1]?.lines.push(line);
  }
  return stages;
}

/** An exec-form argument list, normalised (`["a", "b"]` -> `["a","b"]`); undefined for shell form. */
function execForm(args: string): string | undefined {
  try {
    const v: unknown = JSON.parse(args);
    return Array.isArray(v) ? JSON.stringify(v) : undefined;
  } catch {
    return undefined;
  }
}

function dockerfileProblems(text: string, pkg: string): string[] {
  const problems: string[] = [];
  const stages = stagesOf(text);
  if (stages.length < 2) problems.push(`${stages.length} stage(s), expected a multi-stage build`);
  for (const s of stages) if (s.from !== 'node:20-slim') problems.push(`FROM ${s.from}, expected node:20-slim`);
  const all = stages.flatMap((s) => s.lines);
  if (!all.some((l) => /pnpm install\b.*--frozen-lockfile/.test(l))) problems.push('no `pnpm install --frozen-lockfile`');
  if (!all.some((l) => l.includes(`--filter ${pkg} deploy`) && /--prod\b/.test(l))) problems.push(`no \`pnpm --filter ${pkg} deploy --prod\``);

  const final = stages[stages.length - 1];
  if (final) {
    const users = final.lines.filter((l) => /^USER\s/i.test(l)).map((l) => l.split(/\s+/)[1]!);
    const lastUser = users[users.length - 1];
    if (lastUser === undefined) problems.push('final stage has no USER');
    else if (/^(root|0)(:|$)/.test(lastUser)) problems.push(`final stage runs as ${lastUser}`);
    const cmd = final.lines.filter((l) => /^CMD\s/i.test(l)).pop();
    if (cmd === undefined || execForm(cmd.replace(/^CMD\s+/i, '')) !== '["node","dist/main.js"]') {
      problems.push(`final stage CMD is ${String(cmd)}, expected ["node","dist/main.js"]`);
    }
    if (!final.lines.some((l) => /^COPY\s+--from=\S+\s+\/out\b/i.test(l))) problems.push('final stage does not copy the deployed /out');
    if (final.lines.some((l) => /\b(pnpm|npm)\s+(install|i|ci)\b/.test(l))) problems.push('final stage installs packages itself');
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
function runDclint(file: string): { status: number | null; output: string } {
  const r = spawnSync(DCLINT_BIN, [file, '-c', DCLINT_CONFIG, '--max-warnings', '0', '--no-color'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

const composeText = fs.readFileSync(COMPOSE_FILE, 'utf8');
const parseCompose = (text: string) => YAML.parse(text, { merge: true });
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe('docker-compose.yml', () => {
  it('passes dclint with no error and no warning', () => {
    const r = runDclint(COMPOSE_FILE);
    expect({ status: r.status, output: r.output.trim() }).toEqual({ status: 0, output: '' });
  });

  it('describes the router and the 3 leader/follower shards, and the "ha" profile', () => {
    expect(composeProblems(parseCompose(composeText))).toEqual([]);
  });

  it('starts exactly the 7 services by default, and 3 etcd members and router-2 more with "ha"', () => {
    const services = (parseCompose(composeText) as { services: Record<string, unknown> }).services;
    expect(activeServices(services, [])).toEqual(DEFAULT_SERVICES);
    expect(activeServices(services, ['ha'])).toEqual(HA_SERVICES);
    expect(HA_SERVICES).toHaveLength(11);
  });

  it('documents the HA command with both shell variables', () => {
    expect(documentedHaShell(composeText)).toEqual({
      ETCD_ENDPOINTS: ETCD_CLIENT_URLS,
      COORDINATOR_URLS: `http://router:${ROUTER_PORT},http://router-2:5010`,
    });
  });

  it('adds only shard3-leader and shard3-follower with "reshard", and documents the admin request that adds them', () => {
    const services = (parseCompose(composeText) as { services: Record<string, unknown> }).services;
    expect(activeServices(services, ['reshard'])).toEqual([...DEFAULT_SERVICES, ...RESHARD_SERVICES].sort());
    expect(composeText).toMatch(/^ *# +CLUSTER_TOKEN=\.\.\. docker compose --profile reshard up --build -d shard3-leader shard3-follower$/m);
    const [leader, follower] = RESHARD_NODES;
    expect(documentedReshardBody(composeText)).toEqual({ id: leader!.shardId, leader: `http://${leader!.name}:${leader!.port}`, follower: `http://${follower!.name}:${follower!.port}` });
  });

  it('adds only Prometheus and Grafana with "monitoring", provisioned with the datasource and the dashboard', () => {
    const services = (parseCompose(composeText) as { services: Record<string, unknown> }).services;
    expect(activeServices(services, ['monitoring'])).toEqual([...DEFAULT_SERVICES, ...MONITORING_SERVICES].sort());
    const datasources = YAML.parse(readMonitoring('grafana/provisioning/datasources/prometheus.yml')) as { datasources: Dict[] };
    expect(datasources.datasources).toEqual([expect.objectContaining({ type: 'prometheus', url: 'http://prometheus:9090', uid: 'shardkv-prometheus' })]);
    const dashboard = JSON.parse(readMonitoring('grafana/dashboards/shardkv.json')) as { panels: Array<{ targets: Array<{ expr: string; datasource: Dict }> }> };
    const targets = dashboard.panels.flatMap((p) => p.targets);
    expect(targets.length).toBeGreaterThan(10);
    for (const t of targets) expect(t.datasource.uid).toBe('shardkv-prometheus');
  });

  it('keeps the artillery load generator out of the default profile, aimed at the router', () => {
    const doc = parseCompose(composeText) as { services: Record<string, Dict> };
    const artillery = doc.services.artillery;
    expect(artillery).toBeDefined();
    expect(artillery!.profiles).toEqual(['loadtest']);
    expect(envOf(artillery!).get('TARGET')).toBe(`http://router:${ROUTER_PORT}`);
    expect(dependsOn(artillery!).get('router')).toBe('service_healthy');
  });
});

describe('Dockerfiles', () => {
  it.each([
    ['Dockerfile.router', '@shardkv/router'],
    ['Dockerfile.shard', '@shardkv/shard'],
  ])('%s builds on node:20-slim and runs %s as a non-root user', (file, pkg) => {
    const p = path.join(ROOT, file);
    expect(fs.existsSync(p)).toBe(true);
    expect(dockerfileProblems(fs.readFileSync(p, 'utf8'), pkg)).toEqual([]);
  });
});

// The checks above, shown to fail on broken variants of the real files.
describe('the checks catch mistakes', () => {
  const good = parseCompose(composeText) as { services: Record<string, Dict> };
  const mutate = (change: (s: Record<string, Dict>) => void) => {
    const doc = clone(good);
    change(doc.services);
    return composeProblems(doc);
  };
  const env = (svc: Dict) => svc.environment as Dict;

  it.each<[string, (s: Record<string, Dict>) => void, RegExp]>([
    ['a missing service', (s) => delete s['shard2-follower'], /default-profile services/],
    ['an extra default service', (s) => (s.extra = clone(s['shard0-follower']!)), /default-profile services/],
    ['artillery in the default profile', (s) => delete s.artillery!.profiles, /default-profile services/],
    ['a missing healthcheck', (s) => delete s['shard1-leader']!.healthcheck, /shard1-leader: no healthcheck/],
    ['a healthcheck without start_period', (s) => delete (s.router!.healthcheck as Dict).start_period, /router: healthcheck has no start_period/],
    ['a healthcheck on the wrong port', (s) => ((s['shard0-leader']!.healthcheck as Dict).test = ['CMD', 'node', '-e', "fetch('http://127.0.0.1:6001/health')"]), /shard0-leader: healthcheck probes port 6001/],
    ['the router not published', (s) => delete s.router!.ports, /router: does not publish 5000/],
    ['the router\'s gRPC port not published', (s) => (s.router!.ports = ['5000:5000']), /router: does not publish its gRPC port 5100/],
    ['router-2\'s gRPC port published as another', (s) => (s['router-2']!.ports = ['5010:5010', '5110:5100']), /router-2: does not publish its gRPC port 5110/],
    ['a router without GRPC_PORT', (s) => delete env(s.router!).GRPC_PORT, /router: GRPC_PORT is undefined, expected 5100/],
    ['router-2 on the first router\'s gRPC port', (s) => (env(s['router-2']!).GRPC_PORT = '5100'), /router-2: GRPC_PORT is 5100/],
    ['a shard port published', (s) => (s['shard1-follower']!.ports = ['6002:6002']), /shard1-follower: publishes 6002; only the routers may/],
    ['a wrong ROLE', (s) => (env(s['shard2-leader']!).ROLE = 'follower'), /shard2-leader: ROLE is follower/],
    ['a wrong SHARD_ID', (s) => (env(s['shard1-follower']!).SHARD_ID = 'shard-2'), /shard1-follower: SHARD_ID/],
    ['a wrong PORT', (s) => (env(s['shard0-follower']!).PORT = '6002'), /shard0-follower: PORT is 6002/],
    ['a wrong NODE_NAME', (s) => (env(s['shard0-leader']!).NODE_NAME = 'shard0'), /shard0-leader: NODE_NAME/],
    ['a leader pointing at another shard', (s) => (env(s['shard1-leader']!).FOLLOWER_URL = 'http://shard2-follower:6003'), /shard1-leader: FOLLOWER_URL/],
    ['a follower without LEADER_URL', (s) => delete env(s['shard2-follower']!).LEADER_URL, /shard2-follower: LEADER_URL is undefined/],
    ['a follower with FOLLOWER_URL', (s) => (env(s['shard2-follower']!).FOLLOWER_URL = 'http://x:1'), /must not set FOLLOWER_URL/],
    ['a wrong HOST', (s) => (env(s.router!).HOST = '127.0.0.1'), /router: HOST is 127.0.0.1/],
    ['a missing CLUSTER_TOKEN', (s) => delete env(s['shard1-follower']!).CLUSTER_TOKEN, /shard1-follower: CLUSTER_TOKEN/],
    ['an optional CLUSTER_TOKEN', (s) => (env(s.router!).CLUSTER_TOKEN = '${CLUSTER_TOKEN:-dev}'), /router: CLUSTER_TOKEN/],
    ['an artillery without CLUSTER_TOKEN', (s) => delete env(s.artillery!).CLUSTER_TOKEN, /artillery: CLUSTER_TOKEN/],
    ['service_started instead of service_healthy', (s) => ((s['shard0-leader']!.depends_on as Record<string, Dict>)['shard0-follower']!.condition = 'service_started'), /condition "service_started"/],
    ['the short depends_on form', (s) => (s['shard1-follower']!.depends_on = ['router']), /shard1-follower: depends on router with condition ""/],
    ['a follower waiting for its leader', (s) => (s['shard0-follower']!.depends_on = { router: { condition: 'service_healthy' }, 'shard0-leader': { condition: 'service_healthy' } }), /shard0-follower: depends_on is \[router, shard0-leader\]/],
    ['a leader not waiting for its follower', (s) => delete (s['shard2-leader']!.depends_on as Dict)['shard2-follower'], /shard2-leader: depends_on is \[router\]/],
    ['a node not waiting for the coordinator', (s) => delete (s['shard1-leader']!.depends_on as Dict).router, /shard1-leader: depends_on is \[shard1-follower\]/],
    ['the router waiting for a node', (s) => (s.router!.depends_on = { 'shard0-leader': { condition: 'service_healthy' } }), /router: depends on shard0-leader; the coordinator must start first/],
    ['a node without COORDINATOR_URLS', (s) => delete env(s['shard0-leader']!).COORDINATOR_URLS, /shard0-leader: COORDINATOR_URLS is undefined by default/],
    ['a node still on the singular COORDINATOR_URL', (s) => (env(s['shard1-follower']!).COORDINATOR_URL = 'http://router:5000'), /shard1-follower: sets COORDINATOR_URL/],
    ['a node that would not learn of router-2', (s) => (env(s['shard2-leader']!).COORDINATOR_URLS = 'http://router:5000'), /shard2-leader: COORDINATOR_URLS is \[http:\/\/router:5000\] with the documented HA command/],
    ['router-2 in the default profile', (s) => delete s['router-2']!.profiles, /default-profile services/],
    ['an etcd member missing from "ha"', (s) => delete s['etcd-2'], /"ha" services are/],
    ['an etcd member in the default profile', (s) => delete s['etcd-1']!.profiles, /default-profile services/],
    ['a wrong name in --initial-cluster', (s) => ((s['etcd-0']!.command as string[])[7] = '--initial-cluster=etcd-0=http://etcd-0:2380,etcd1=http://etcd-1:2380,etcd-2=http://etcd-2:2380'), /etcd-0: --initial-cluster names \[etcd-0, etcd-2, etcd1\]/],
    ['a member named unlike its service', (s) => ((s['etcd-1']!.command as string[])[1] = '--name=etcd1'), /etcd-1: --name is etcd1/],
    ['a member advertising another host', (s) => ((s['etcd-2']!.command as string[])[4] = '--advertise-client-urls=http://etcd-0:2379'), /etcd-2: --advertise-client-urls/],
    ['an etcd member without its data volume', (s) => delete s['etcd-0']!.volumes, /etcd-0: --data-dir is not on a volume/],
    ['an unpinned etcd image', (s) => (s['etcd-1']!.image = 'quay.io/coreos/etcd:latest'), /etcd-1: image/],
    ['etcd published on the host', (s) => (s['etcd-0']!.ports = ['2379:2379']), /etcd-0: publishes a port/],
    ['two etcd cluster tokens', (s) => ((s['etcd-2']!.command as string[])[9] = '--initial-cluster-token=other'), /do not share one --initial-cluster-token/],
    ['router-2 on the first router\'s host port', (s) => (s['router-2']!.ports = ['5000:5010']), /host port 5000 is also published by router/],
    ['router-2 waiting for a loadtest service', (s) => ((s['router-2']!.depends_on as Dict).artillery = { condition: 'service_healthy' }), /router-2: depends on artillery, which the ha profile set does not start/],
    ['router-2 not waiting for etcd', (s) => delete (s['router-2']!.depends_on as Dict)['etcd-1'], /router-2: depends_on is \[etcd-0, etcd-2\]/],
    ['router-2 without etcd', (s) => delete env(s['router-2']!).ETCD_ENDPOINTS, /router-2: ETCD_ENDPOINTS is undefined/],
    ['router-2 pinned to etcd whatever the first router uses', (s) => (env(s['router-2']!).ETCD_ENDPOINTS = ETCD_CLIENT_URLS), /router-2: ETCD_ENDPOINTS is http.* without the HA variables/],
    ['router-2 with the first router\'s id', (s) => (env(s['router-2']!).ROUTER_ID = 'router-1'), /router-2: ROUTER_ID is router-1/],
    ['router-2 with other shards', (s) => (env(s['router-2']!).SHARDS = 'shard-0=http://shard0-leader:5001,http://shard0-follower:6001'), /router-2: SHARDS/],
    ['router-2 without a restart policy', (s) => delete s['router-2']!.restart, /router-2: restart/],
    ['a first router pinned to etcd by default', (s) => (env(s.router!).ETCD_ENDPOINTS = ETCD_CLIENT_URLS), /router: ETCD_ENDPOINTS is .* by default, expected unset/],
    ['a first router that ignores the documented ETCD_ENDPOINTS', (s) => (env(s.router!).ETCD_ENDPOINTS = '${ETCD_ENDPOINTS_TYPO:-}'), /router: ETCD_ENDPOINTS is  with the documented HA command/],
    ['a router without a data volume', (s) => delete s.router!.volumes, /router: DATA_DIR is not on a volume/],
    ['a wrong SHARDS map', (s) => (env(s.router!).SHARDS = 'shard-0=http://shard0-leader:5001,http://shard0-follower:6001'), /router: SHARDS/],
    ['a missing restart policy', (s) => delete s['shard1-leader']!.restart, /shard1-leader: restart/],
    ['a missing build', (s) => delete s.router!.build, /router: no build section/],
    ['shard-3 in the default profile', (s) => delete s['shard3-leader']!.profiles, /default-profile services/],
    ['shard-3 without its follower', (s) => delete s['shard3-follower'], /"reshard" adds \[shard3-leader\]/],
    ['shard-3 on another shard\'s port', (s) => (env(s['shard3-leader']!).PORT = '5003'), /shard3-leader: PORT is 5003/],
    ['shard-3\'s leader pointing at shard-2', (s) => (env(s['shard3-leader']!).FOLLOWER_URL = 'http://shard2-follower:6003'), /shard3-leader: FOLLOWER_URL/],
    ['shard-3 sharing a volume', (s) => (s['shard3-follower']!.volumes = ['shard2-follower-data:/data']), /shard3-follower: DATA_DIR is not on its own volume/],
    ['shard-3 without a healthcheck', (s) => delete s['shard3-follower']!.healthcheck, /shard3-follower: no healthcheck/],
    ['shard-3 not waiting for its follower', (s) => delete (s['shard3-leader']!.depends_on as Dict)['shard3-follower'], /shard3-leader: depends_on is \[router\]/],
    ['Prometheus in the default profile', (s) => delete s.prometheus!.profiles, /default-profile services/],
    ['Grafana missing from "monitoring"', (s) => delete s.grafana, /"monitoring" adds \[prometheus\]/],
    ['an unpinned Grafana', (s) => (s.grafana!.image = 'grafana/grafana:latest'), /grafana: image .* not pinned/],
    ['Prometheus without its scrape config', (s) => (s.prometheus!.volumes = ['prometheus-data:/prometheus']), /prometheus: does not mount/],
    ['Prometheus not writing the token file', (s) => (s.prometheus!.entrypoint = ['/bin/prometheus']), /entrypoint does not write CLUSTER_TOKEN/],
    ['Prometheus without CLUSTER_TOKEN', (s) => delete env(s.prometheus!).CLUSTER_TOKEN, /prometheus: CLUSTER_TOKEN/],
    ['Grafana on Prometheus\'s host port', (s) => (s.grafana!.ports = ['127.0.0.1:9090:3000']), /host port 9090 is also published/],
    ['shard-3 unaware of router-2 under "ha"', (s) => (env(s['shard3-follower']!).COORDINATOR_URLS = 'http://router:5000'), /shard3-follower: COORDINATOR_URLS is \[http:\/\/router:5000\] with the documented HA command/],
  ])('flags %s', (_what, change, expected) => {
    const problems = mutate(change);
    expect(problems.some((p) => expected.test(p))).toBe(true);
  });

  it.each<[string, (text: string) => string, RegExp]>([
    ['a node missing from the scrape targets', (t) => t.replace(', "shard1-follower:6002"', ''), /node targets are/],
    ['router-2 not scraped', (t) => t.replace(', "router-2:5010"', ''), /router targets are/],
    ['nodes scraped without the token', (t) => t.replace(/ {4}authorization:\n(?: {6}.*\n)+/, ''), /sends no bearer token/],
  ])('flags a prometheus.yml with %s', (_what, change, expected) => {
    const text = readMonitoring('prometheus.yml');
    expect(monitoringProblems(good.services, text)).toEqual([]);
    expect(monitoringProblems(good.services, change(text)).some((p) => expected.test(p))).toBe(true);
  });

  it('reads the list form of environment like the map form', () => {
    const doc = clone(good);
    for (const svc of Object.values(doc.services)) {
      svc.environment = [...envOf(svc)].map(([k, v]) => (v === null ? k : `${k}=${v}`));
    }
    expect(composeProblems(doc)).toEqual([]);
  });

  it('dclint fails on a compose file that breaks its rules', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shardkv-dclint-'));
    try {
      const broken = clone(good);
      broken.services.router!.image = 'shardkv-router:latest'; // build + image, and a mutable tag
      const file = path.join(dir, 'docker-compose.yml');
      fs.writeFileSync(file, YAML.stringify(broken));
      const r = runDclint(file);
      expect(r.status).toBe(1);
      expect(r.output).toMatch(/no-build-and-image/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each<[string, (text: string) => string, RegExp]>([
    ['another base image', (t) => t.replace(/^FROM node:20-slim$/m, 'FROM node:20'), /FROM node:20, expected/],
    ['a single stage', (t) => t.replace(/^FROM node:20-slim AS build$/m, '').replace(/^FROM node:20-slim$/m, ''), /multi-stage/],
    ['no USER', (t) => t.replace(/^USER node$/m, ''), /final stage has no USER/],
    ['USER root', (t) => t.replace(/^USER node$/m, 'USER root'), /final stage runs as root/],
    ['another CMD', (t) => t.replace(/^CMD .*$/m, 'CMD ["node", "src/main.ts"]'), /final stage CMD/],
    ['a shell-form CMD', (t) => t.replace(/^CMD .*$/m, 'CMD node dist/main.js'), /final stage CMD/],
    ['a deploy without --prod', (t) => t.replace('deploy --prod', 'deploy'), /deploy --prod/],
    ['an install without --frozen-lockfile', (t) => t.replace('pnpm install --frozen-lockfile', 'pnpm install'), /frozen-lockfile/],
    ['an install in the final stage', (t) => t.replace(/^USER node$/m, 'RUN npm install left-pad\nUSER node'), /final stage installs/],
  ])('flags a Dockerfile with %s', (_what, change, expected) => {
    const text = fs.readFileSync(path.join(ROOT, 'Dockerfile.shard'), 'utf8');
    expect(dockerfileProblems(text, '@shardkv/shard')).toEqual([]);
    const problems = dockerfileProblems(change(text), '@shardkv/shard');
    expect(problems.some((p) => expected.test(p))).toBe(true);
  });
});
