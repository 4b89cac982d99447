// Static checks of the Kubernetes manifests (deploy/kubernetes; this machine has no cluster, so
// nothing is applied here): every object must pass the Kubernetes schemas (kubernetes-models),
// and the objects must be wired together the way the cluster needs: every Secret, ConfigMap and
// key an env var reads exists; every StatefulSet's Service exists, is headless and selects its
// pods; container ports, Service target ports, probe ports, PORT and the URLs agree; every
// volume mount has a volume or claim template; and, pod by pod, the environment each container
// would get (the shard pods' start-up script is run, with a stand-in `node`) is accepted by the
// service's own config parser and points at the right pods: a node's peer is the other node of
// its shard and points back, COORDINATOR_URLS reaches the routers, the routers' SHARDS lists
// every shard's leader and follower, ETCD_ENDPOINTS and --initial-cluster name every etcd member.
//
// Like test/compose.test.ts, the checks collect problems instead of stopping at the first, and
// the second half feeds them broken variants of the real manifests, so every check is shown to fail.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { loadConfig as loadRouterConfig } from '@shardkv/router/dist/config';
import { loadConfig as loadShardConfig } from '@shardkv/shard/dist/config';

const ROOT = path.resolve(__dirname, '..');
const DIR = path.join(ROOT, 'deploy', 'kubernetes');
const EXAMPLES = path.join(DIR, 'examples');

type Dict = Record<string, any>; // parsed YAML, narrowed by the checks themselves
const isDict = (v: unknown): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): Dict[] => (Array.isArray(v) ? v.filter(isDict) : []);

interface Manifests {
  kustomization: Dict;
  /** Top-level files (besides kustomization.yaml) by name, each a list of objects. */
  files: Record<string, Dict[]>;
  /** examples/*.yaml: the Secret a user creates by hand. */
  examples: Dict[];
}

function parseAll(file: string): Dict[] {
  return YAML.parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => d.toJS() as unknown).filter(isDict);
}

function loadManifests(): Manifests {
  const yamls = (dir: string) => fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
  const files: Record<string, Dict[]> = {};
  for (const f of yamls(DIR)) if (f !== 'kustomization.yaml') files[f] = parseAll(path.join(DIR, f));
  return { kustomization: parseAll(path.join(DIR, 'kustomization.yaml'))[0] ?? {}, files, examples: yamls(EXAMPLES).flatMap((f) => parseAll(path.join(EXAMPLES, f))) };
}

// ---------------------------------------------------------------------------------------------
// Schemas: each object is built as its kubernetes-models class and validated.
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/StatefulSet': StatefulSet,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

function schemaProblems(obj: Dict): string[] {
  const model = MODELS[`${String(obj.apiVersion)}/${String(obj.kind)}`];
  const name = `${String(obj.kind)}/${String(obj.metadata?.name)}`;
  if (model === undefined) return [`${name}: apiVersion/kind ${String(obj.apiVersion)}/${String(obj.kind)} is not one these manifests use`];
  if (typeof obj.metadata?.name !== 'string' || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(obj.metadata.name)) return [`${name}: metadata.name is not a DNS label`];
  try {
    new model(obj).validate();
    return [];
  } catch (err) {
    return [`${name}: schema: ${(err as Error).message}`];
  }
}

// ---------------------------------------------------------------------------------------------
// The pods the workloads create, and how names, URLs and env resolve among them.
const NAMESPACE = 'shardkv';
const SHARD_IMAGE = /^shardkv\/shard:\d+\.\d+\.\d+$/;
const ROUTER_IMAGE = /^shardkv\/router:\d+\.\d+\.\d+$/;
const ETCD_IMAGE = /^quay\.io\/coreos\/etcd:v3\.([4-9]|\d\d)\.\d+$/;
const FIELD_PATHS = new Set(['metadata.name', 'metadata.namespace', 'status.podIP']);

interface Pod {
  name: string;
  workload: Dict;
  /** StatefulSet pods only: their ordinal, and so their DNS name `<name>.<serviceName>`. */
  ordinal?: number;
  ip: string;
  labels: Record<string, string>;
  spec: Dict;
}

interface Cluster {
  objects: Dict[];
  secrets: Dict[];
  pods: Pod[];
  of(kind: string): Dict[];
  find(kind: string, name: string): Dict | undefined;
}

function clusterOf(m: Manifests): Cluster {
  const objects = Object.values(m.files).flat();
  const pods: Pod[] = [];
  for (const w of objects.filter((o) => o.kind === 'StatefulSet' || o.kind === 'Deployment')) {
    const replicas = typeof w.spec?.replicas === 'number' ? w.spec.replicas : 1;
    for (let i = 0; i < replicas; i++) {
      pods.push({
        name: w.kind === 'StatefulSet' ? `${w.metadata.name}-${i}` : `${w.metadata.name}-5d8f7c9b4-${'abcdefghij'[i]}x2q`,
        workload: w,
        ordinal: w.kind === 'StatefulSet' ? i : undefined,
        ip: `10.1.${pods.length >> 8}.${(pods.length & 255) + 10}`,
        labels: { ...(w.spec?.template?.metadata?.labels ?? {}) },
        spec: w.spec?.template?.spec ?? {},
      });
    }
  }
  return {
    objects,
    secrets: m.examples.filter((o) => o.kind === 'Secret'),
    pods,
    of: (kind) => objects.filter((o) => o.kind === kind),
    find: (kind, name) => objects.find((o) => o.kind === kind && o.metadata?.name === name),
  };
}

const selects = (selector: unknown, labels: Record<string, string>) =>
  isDict(selector) && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
const selectedPods = (c: Cluster, selector: unknown) => c.pods.filter((p) => selects(selector, p.labels));
const containersOf = (p: Pod) => list(p.spec.containers);
const workloadName = (p: Pod) => `${String(p.workload.kind)}/${String(p.workload.metadata?.name)}`;

/** The container port a Service targetPort or probe port names (a name or a number). */
function containerPort(p: Pod, port: unknown): number | undefined {
  for (const c of containersOf(p)) {
    for (const cp of list(c.ports)) {
      if (typeof port === 'string' && cp.name === port) return Number(cp.containerPort);
      if (typeof port === 'number' && cp.containerPort === port) return port;
    }
  }
  return undefined;
}

/**
 * Where `http://host:port` lands, as cluster DNS would resolve it inside the namespace: a pod IP,
 * `<pod>.<service>` (a StatefulSet pod under its headless Service), or `<service>` (every pod it
 * selects, through the Service's port). Returns the pods reached, or why none is.
 */
function resolveUrl(c: Cluster, url: string): { pods: Pod[] } | { problem: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { problem: `${url} is not a URL` };
  }
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  const host = u.hostname.replace(new RegExp(`\\.${NAMESPACE}(\\.svc(\\.cluster\\.local)?)?$`), '');
  const byIp = c.pods.find((p) => p.ip === host);
  if (byIp !== undefined) return containerPort(byIp, port) === port ? { pods: [byIp] } : { problem: `${url}: pod ${byIp.name} has no container port ${port}` };
  const parts = host.split('.');
  if (parts.length === 2) {
    const [podName, svcName] = parts as [string, string];
    const pod = c.pods.find((p) => p.name === podName && p.ordinal !== undefined);
    if (pod === undefined) return { problem: `${url}: no StatefulSet pod named ${podName}` };
    if (pod.workload.spec?.serviceName !== svcName) return { problem: `${url}: pod ${podName} is named under its StatefulSet's serviceName ${String(pod.workload.spec?.serviceName)}, not ${svcName}` };
    const svc = c.find('Service', svcName);
    if (svc === undefined || svc.spec?.clusterIP !== 'None' || !selects(svc.spec?.selector, pod.labels)) return { problem: `${url}: no headless Service ${svcName} selecting pod ${podName}` };
    return containerPort(pod, port) === port ? { pods: [pod] } : { problem: `${url}: pod ${podName} has no container port ${port}` };
  }
  if (parts.length === 1) {
    const svc = c.find('Service', host);
    if (svc === undefined) return { problem: `${url}: no Service named ${host}` };
    const sp = list(svc.spec?.ports).find((p) => p.port === port);
    if (sp === undefined) return { problem: `${url}: Service ${host} has no port ${port}` };
    const pods = selectedPods(c, svc.spec?.selector);
    if (pods.length === 0) return { problem: `${url}: Service ${host} selects no pod` };
    const target = sp.targetPort ?? sp.port;
    const missing = pods.find((p) => containerPort(p, target) === undefined);
    return missing === undefined ? { pods } : { problem: `${url}: Service ${host} targets port ${String(target)}, which pod ${missing.name} does not have` };
  }
  return { problem: `${url}: ${host} is neither a pod IP, <pod>.<service> nor <service>` };
}

/** The container's environment as the kubelet builds it (in order, `$(VAR)` expanded). */
function containerEnv(c: Cluster, pod: Pod, ctr: Dict, problems: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  const where = `${pod.name}/${String(ctr.name)}`;
  for (const e of list(ctr.env)) {
    const name = String(e.name);
    if (e.value !== undefined) {
      env[name] = expand(String(e.value), env, `${where}: env ${name}`, problems);
      continue;
    }
    const from = e.valueFrom;
    if (isDict(from?.fieldRef)) {
      const fp = String(from.fieldRef.fieldPath);
      if (!FIELD_PATHS.has(fp)) problems.push(`${where}: env ${name} reads field ${fp}, which these checks do not know`);
      env[name] = fp === 'metadata.name' ? pod.name : fp === 'status.podIP' ? pod.ip : NAMESPACE;
    } else if (isDict(from?.configMapKeyRef)) {
      const ref = from.configMapKeyRef;
      const cm = c.find('ConfigMap', String(ref.name));
      const v = cm?.data?.[String(ref.key)];
      if (typeof v === 'string') env[name] = v;
      else if (ref.optional !== true) problems.push(`${where}: env ${name} reads ConfigMap ${String(ref.name)} key ${String(ref.key)}, which does not exist`);
    } else if (isDict(from?.secretKeyRef)) {
      const ref = from.secretKeyRef;
      const secret = c.secrets.find((s) => s.metadata?.name === ref.name);
      const v = secret?.stringData?.[String(ref.key)] ?? secret?.data?.[String(ref.key)];
      if (secret === undefined) problems.push(`${where}: env ${name} reads Secret ${String(ref.name)}, which examples/ does not describe`);
      else if (typeof v === 'string') env[name] = v;
      else if (ref.optional !== true) problems.push(`${where}: env ${name} reads Secret ${String(ref.name)} key ${String(ref.key)}, which its example does not have`);
    } else {
      problems.push(`${where}: env ${name} has neither a value nor a valueFrom these checks know`);
    }
  }
  return env;
}

/** `$(VAR)` as the kubelet expands it; a reference to a variable not defined before stays literal. */
function expand(s: string, env: Record<string, string>, where: string, problems: string[]): string {
  return s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, v: string) => {
    if (env[v] !== undefined) return env[v];
    problems.push(`${where}: $(${v}) is not defined before it (the kubelet leaves it as it is)`);
    return whole;
  });
}

/**
 * The program the container ends up running and its environment. A `/bin/sh -c` script is run
 * here with a stand-in `node` on PATH that prints its arguments and environment.
 */
function runContainer(pod: Pod, ctr: Dict, env: Record<string, string>, problems: string[]): { argv: string[]; env: Record<string, string>; status: number } {
  const where = `${pod.name}/${String(ctr.name)}`;
  const argv = [...(Array.isArray(ctr.command) ? ctr.command : []), ...(Array.isArray(ctr.args) ? ctr.args : [])].map((a) => expand(String(a), env, `${where}: command`, problems));
  if (argv[0] !== '/bin/sh' || argv[1] !== '-c') return { argv, env, status: 0 };
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'shardkv-k8s-'));
  try {
    fs.writeFileSync(path.join(bin, 'node'), '#!/bin/sh\necho "ARGV node $*"\nexec env\n', { mode: 0o755 });
    const r = spawnSync('/bin/sh', ['-c', argv[2] ?? ''], { env: { ...env, PATH: `${bin}:/usr/bin:/bin` }, encoding: 'utf8' });
    const lines = r.stdout.split('\n');
    const program = lines.find((l) => l.startsWith('ARGV '));
    const out: Record<string, string> = {};
    for (const l of lines.slice(lines.indexOf(program ?? '') + 1)) {
      const eq = l.indexOf('=');
      if (eq > 0 && !['PATH', 'PWD', 'SHLVL', '_', 'OLDPWD'].includes(l.slice(0, eq))) out[l.slice(0, eq)] = l.slice(eq + 1);
    }
    return { argv: program === undefined ? [] : program.slice(5).split(' '), env: out, status: r.status ?? -1 };
  } finally {
    fs.rmSync(bin, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The checks.

/** Every top-level file is in kustomization.yaml and the reverse; the Secret example is not. */
function kustomizationProblems(m: Manifests): string[] {
  const problems: string[] = [];
  const resources: string[] = Array.isArray(m.kustomization.resources) ? m.kustomization.resources.map(String) : [];
  const files = Object.keys(m.files);
  for (const f of files) if (!resources.includes(f)) problems.push(`kustomization.yaml does not list ${f}`);
  for (const r of resources) if (!files.includes(r)) problems.push(`kustomization.yaml lists ${r}, which is not a file of deploy/kubernetes`);
  if (m.kustomization.namespace !== NAMESPACE) problems.push(`kustomization.yaml: namespace is ${String(m.kustomization.namespace)}, expected ${NAMESPACE}`);
  for (const o of Object.values(m.files).flat()) {
    if (o.metadata?.namespace !== undefined) problems.push(`${String(o.kind)}/${String(o.metadata?.name)}: sets its own namespace; kustomization.yaml sets it for all`);
  }
  if (!Object.values(m.files).flat().some((o) => o.kind === 'Namespace' && o.metadata?.name === NAMESPACE)) problems.push(`no Namespace ${NAMESPACE}`);
  for (const s of m.examples) {
    if (s.metadata?.namespace !== NAMESPACE) problems.push(`examples: Secret ${String(s.metadata?.name)} is not in namespace ${NAMESPACE}`);
    for (const v of Object.values({ ...(s.stringData ?? {}) })) if (!/REPLACE/.test(String(v))) problems.push(`examples: Secret ${String(s.metadata?.name)} holds a value that does not look like a placeholder`);
  }
  if (Object.values(m.files).flat().some((o) => o.kind === 'Secret')) problems.push('a Secret among the applied manifests: every apply would put its value back over the real one');
  const images = new Set(list(m.kustomization.images).map((i) => String(i.name)));
  for (const want of ['shardkv/router', 'shardkv/shard']) if (!images.has(want)) problems.push(`kustomization.yaml: images does not name ${want}`);
  return problems;
}

function workloadProblems(c: Cluster, w: Dict): string[] {
  const name = `${String(w.kind)}/${String(w.metadata?.name)}`;
  const problems: string[] = [];
  const labels: Record<string, string> = w.spec?.template?.metadata?.labels ?? {};
  if (!selects(w.spec?.selector?.matchLabels, labels)) problems.push(`${name}: selector.matchLabels does not select its own pod template`);
  const spec: Dict = w.spec?.template?.spec ?? {};
  // Docker-link variables (ETCD_PORT, ROUTER_PORT, ...) would land beside the settings we read.
  if (spec.enableServiceLinks !== false) problems.push(`${name}: enableServiceLinks is not false`);
  const others = c.pods.filter((p) => p.workload !== w && selects(w.spec?.selector?.matchLabels, p.labels));
  if (others.length > 0) problems.push(`${name}: its selector also selects ${others[0]!.name}`);
  if (w.kind === 'StatefulSet') {
    const svc = c.find('Service', String(w.spec?.serviceName));
    if (svc === undefined) problems.push(`${name}: serviceName ${String(w.spec?.serviceName)} is not a Service`);
    else {
      if (svc.spec?.clusterIP !== 'None') problems.push(`${name}: Service ${String(svc.metadata.name)} is not headless (clusterIP: None), so its pods get no DNS names`);
      if (svc.spec?.publishNotReadyAddresses !== true) problems.push(`${name}: Service ${String(svc.metadata.name)} does not publish not-ready pods; peers could not reach a recovering pod`);
      if (!selects(svc.spec?.selector, labels)) problems.push(`${name}: Service ${String(svc.metadata.name)} does not select its pods`);
    }
    if (w.spec?.podManagementPolicy !== 'Parallel') problems.push(`${name}: podManagementPolicy is ${String(w.spec?.podManagementPolicy)}, expected Parallel (a pod is not ready before its peers run)`);
  }
  problems.push(...volumeProblems(name, w, spec));
  for (const ctr of list(spec.containers)) problems.push(...containerProblems(name, ctr));
  return problems;
}

function volumeProblems(name: string, w: Dict, spec: Dict): string[] {
  const problems: string[] = [];
  const claims = list(w.spec?.volumeClaimTemplates).map((t) => String(t.metadata?.name));
  const volumes = list(spec.volumes).map((v) => String(v.name));
  const mounted = new Set<string>();
  for (const ctr of list(spec.containers)) {
    for (const vm of list(ctr.volumeMounts)) {
      mounted.add(String(vm.name));
      if (!claims.includes(String(vm.name)) && !volumes.includes(String(vm.name))) problems.push(`${name}: volumeMount ${String(vm.name)} has no volume nor volumeClaimTemplate`);
    }
  }
  for (const cl of claims) if (!mounted.has(cl)) problems.push(`${name}: volumeClaimTemplate ${cl} is mounted nowhere`);
  return problems;
}

function containerProblems(name: string, ctr: Dict): string[] {
  const problems: string[] = [];
  const image = String(ctr.image);
  const ours = SHARD_IMAGE.test(image) || ROUTER_IMAGE.test(image);
  if (!ours && !ETCD_IMAGE.test(image)) problems.push(`${name}: image ${image} is neither shardkv/{router,shard}:X.Y.Z nor a pinned etcd 3.4+`);
  const ports = list(ctr.ports);
  const portOk = (p: unknown) => ports.some((cp) => cp.name === p || cp.containerPort === p);
  for (const probe of ['readinessProbe', 'livenessProbe'] as const) {
    const pr = ctr[probe];
    if (!isDict(pr)) {
      problems.push(`${name}: no ${probe}`);
      continue;
    }
    const target = pr.httpGet?.port ?? pr.tcpSocket?.port;
    if (!portOk(target)) problems.push(`${name}: ${probe} probes port ${String(target)}, which the container does not have`);
  }
  if (ours) {
    if (ctr.readinessProbe?.httpGet?.path !== '/health') problems.push(`${name}: readinessProbe is not GET /health`);
    const env = new Map(list(ctr.env).map((e) => [String(e.name), e.value]));
    if (!portOk(Number(env.get('PORT')))) problems.push(`${name}: PORT ${String(env.get('PORT'))} is not a container port`);
    if (env.get('HOST') !== '0.0.0.0') problems.push(`${name}: HOST is ${String(env.get('HOST'))}, expected 0.0.0.0`);
  }
  // A node answers /health with 503 while it catches up: liveness there would restart it and
  // start the catch-up again.
  if (SHARD_IMAGE.test(image) && ctr.livenessProbe?.httpGet?.path === '/health') problems.push(`${name}: livenessProbe is GET /health, which a catching-up node fails`);
  return problems;
}

function serviceProblems(c: Cluster, svc: Dict): string[] {
  const name = `Service/${String(svc.metadata?.name)}`;
  const pods = selectedPods(c, svc.spec?.selector);
  if (pods.length === 0) return [`${name}: selects no pod`];
  const problems: string[] = [];
  for (const sp of list(svc.spec?.ports)) {
    const target = sp.targetPort ?? sp.port;
    const missing = pods.find((p) => containerPort(p, target) === undefined);
    if (missing !== undefined) problems.push(`${name}: port ${String(sp.port)} targets ${String(target)}, which pod ${missing.name} does not have`);
    else if (containerPort(pods[0]!, target) !== sp.port) problems.push(`${name}: port ${String(sp.port)} maps to container port ${String(containerPort(pods[0]!, target))}; the URLs use the same number on both`);
  }
  return problems;
}

function pdbProblems(c: Cluster, pdb: Dict): string[] {
  const name = `PodDisruptionBudget/${String(pdb.metadata?.name)}`;
  const pods = selectedPods(c, pdb.spec?.selector?.matchLabels);
  if (pods.length === 0) return [`${name}: selects no pod`];
  const workloads = new Set(pods.map((p) => p.workload));
  if (workloads.size !== 1) return [`${name}: selects pods of ${workloads.size} workloads`];
  // One pod of a shard, one etcd member, one router may be gone at a time.
  const min = pdb.spec?.minAvailable ?? pods.length - Number(pdb.spec?.maxUnavailable);
  return min === pods.length - 1 ? [] : [`${name}: lets ${pods.length - Number(min)} of ${pods.length} pods go at once, expected 1`];
}

interface RunningPod {
  pod: Pod;
  argv: string[];
  env: Record<string, string>;
  status: number;
}

/** Every pod's one container, started: its program and final environment. */
function runPods(c: Cluster, problems: string[]): RunningPod[] {
  return c.pods.flatMap((pod) => {
    const ctr = containersOf(pod)[0];
    if (ctr === undefined) return [];
    const env = containerEnv(c, pod, ctr, problems);
    return [{ pod, ...runContainer(pod, ctr, env, problems) }];
  });
}

const imageOf = (r: RunningPod) => String(containersOf(r.pod)[0]?.image);

function shardPodProblems(c: Cluster, running: RunningPod[]): string[] {
  const problems: string[] = [];
  const nodes = running.filter((r) => SHARD_IMAGE.test(imageOf(r)));
  const configs = new Map<RunningPod, ReturnType<typeof loadShardConfig>>();
  for (const r of nodes) {
    if (r.status !== 0 || r.argv.join(' ') !== 'node dist/main.js') {
      problems.push(`${r.pod.name}: its start-up ends in "${r.argv.join(' ')}" with status ${r.status}, expected node dist/main.js`);
      continue;
    }
    try {
      configs.set(r, loadShardConfig(r.env));
    } catch (err) {
      problems.push(`${r.pod.name}: the shard's config parser refuses its environment: ${(err as Error).message}`);
    }
  }
  const names = new Set<string>();
  for (const [r, cfg] of configs) {
    if (names.has(cfg.nodeName)) problems.push(`${r.pod.name}: NODE_NAME ${cfg.nodeName} is another pod's too`);
    names.add(cfg.nodeName);
    if (containerPort(r.pod, cfg.port) !== cfg.port) problems.push(`${r.pod.name}: PORT ${cfg.port} is not its container port`);
    problems.push(...dataDirProblems(r, cfg.dataDir));
    const peer = resolveUrl(c, cfg.peerUrl);
    if ('problem' in peer) problems.push(`${r.pod.name}: ${cfg.role === 'leader' ? 'FOLLOWER_URL' : 'LEADER_URL'} ${peer.problem}`);
    else {
      const other = [...configs].find(([p]) => p.pod === peer.pods[0]);
      if (peer.pods.length !== 1 || other === undefined) problems.push(`${r.pod.name}: its peer URL ${cfg.peerUrl} does not name one shard node`);
      else {
        const [, o] = other;
        if (o.shardId !== cfg.shardId || o.role === cfg.role) problems.push(`${r.pod.name}: its peer ${other[0].pod.name} is ${o.shardId}'s ${o.role}, expected ${cfg.shardId}'s ${cfg.role === 'leader' ? 'follower' : 'leader'}`);
        const back = resolveUrl(c, o.peerUrl);
        if (!('pods' in back) || back.pods[0] !== r.pod) problems.push(`${r.pod.name}: its peer ${other[0].pod.name} does not point back at it`);
      }
    }
    if (cfg.coordinatorUrls.length === 0) problems.push(`${r.pod.name}: no COORDINATOR_URLS (it would never fail over)`);
    for (const u of cfg.coordinatorUrls) {
      const to = resolveUrl(c, u);
      if ('problem' in to) problems.push(`${r.pod.name}: COORDINATOR_URLS ${to.problem}`);
      else if (!to.pods.every((p) => ROUTER_IMAGE.test(String(containersOf(p)[0]?.image)))) problems.push(`${r.pod.name}: COORDINATOR_URLS ${u} reaches pods that are not routers`);
    }
  }
  // Per StatefulSet: one shard id, one leader and one follower.
  const bySet = new Map<Dict, ReturnType<typeof loadShardConfig>[]>();
  for (const [r, cfg] of configs) bySet.set(r.pod.workload, [...(bySet.get(r.pod.workload) ?? []), cfg]);
  const ids = new Set<string>();
  for (const [w, cfgs] of bySet) {
    const roles = cfgs.map((x) => x.role).sort().join(',');
    if (roles !== 'follower,leader') problems.push(`StatefulSet/${String(w.metadata.name)}: its nodes start as [${roles}], expected a leader and a follower`);
    const shardIds = new Set(cfgs.map((x) => x.shardId));
    if (shardIds.size !== 1) problems.push(`StatefulSet/${String(w.metadata.name)}: its pods are of shards [${[...shardIds].join(', ')}]`);
    for (const id of shardIds) {
      if (ids.has(id)) problems.push(`StatefulSet/${String(w.metadata.name)}: shard ${id} is another StatefulSet's too`);
      ids.add(id);
    }
  }
  return problems;
}

function dataDirProblems(r: RunningPod, dataDir: string): string[] {
  const ctr = containersOf(r.pod)[0]!;
  const claims = list(r.pod.workload.spec?.volumeClaimTemplates).map((t) => String(t.metadata?.name));
  const mount = list(ctr.volumeMounts).find((vm) => path.resolve(String(vm.mountPath)) === dataDir);
  if (mount === undefined || !claims.includes(String(mount.name))) return [`${r.pod.name}: DATA_DIR ${dataDir} is not on a volume of its own (a volumeClaimTemplate)`];
  return [];
}

function routerPodProblems(c: Cluster, running: RunningPod[]): string[] {
  const problems: string[] = [];
  const routers = running.filter((r) => ROUTER_IMAGE.test(imageOf(r)));
  if (routers.length < 2) problems.push(`${routers.length} router pod(s), expected at least 2`);
  // Each shard id's leader and follower as the shard pods start.
  const nodes = new Map<string, { leader?: Pod; follower?: Pod }>();
  for (const r of running.filter((x) => SHARD_IMAGE.test(imageOf(x)))) {
    const id = r.env.SHARD_ID ?? '?';
    const entry = nodes.get(id) ?? {};
    if (r.env.ROLE === 'leader') entry.leader = r.pod;
    if (r.env.ROLE === 'follower') entry.follower = r.pod;
    nodes.set(id, entry);
  }
  const ids = new Set<string>();
  const etcdPods = c.pods.filter((p) => ETCD_IMAGE.test(String(containersOf(p)[0]?.image)));
  for (const r of routers) {
    let cfg: ReturnType<typeof loadRouterConfig>;
    try {
      cfg = loadRouterConfig(r.env);
    } catch (err) {
      problems.push(`${r.pod.name}: the router's config parser refuses its environment: ${(err as Error).message}`);
      continue;
    }
    if (ids.has(cfg.self.id)) problems.push(`${r.pod.name}: ROUTER_ID ${cfg.self.id} is another router's too`);
    ids.add(cfg.self.id);
    const self = resolveUrl(c, cfg.self.url);
    if (!('pods' in self) || self.pods.length !== 1 || self.pods[0] !== r.pod) problems.push(`${r.pod.name}: ROUTER_URL ${cfg.self.url} does not reach this pod`);
    problems.push(...grpcPortProblems(c, r.pod, cfg.grpc?.port));
    const listed = cfg.shards.map((s) => s.id).sort();
    const expected = [...nodes.keys()].sort();
    if (JSON.stringify(listed) !== JSON.stringify(expected)) problems.push(`${r.pod.name}: SHARDS lists [${listed.join(', ')}], the StatefulSets run [${expected.join(', ')}]`);
    for (const s of cfg.shards) {
      const want = nodes.get(s.id);
      for (const role of ['leader', 'follower'] as const) {
        const to = resolveUrl(c, s[role]);
        if ('problem' in to) problems.push(`${r.pod.name}: SHARDS ${s.id} ${role} ${to.problem}`);
        else if (to.pods.length !== 1 || to.pods[0] !== want?.[role]) problems.push(`${r.pod.name}: SHARDS ${s.id} ${role} ${s[role]} is not the pod that starts as ${s.id}'s ${role}`);
      }
    }
    if (cfg.etcd === undefined) {
      problems.push(`${r.pod.name}: no ETCD_ENDPOINTS, yet ${routers.length} routers (each would be a coordinator of its own)`);
      continue;
    }
    const reached = new Set<Pod>();
    for (const e of cfg.etcd.endpoints) {
      const to = resolveUrl(c, e);
      if ('problem' in to) problems.push(`${r.pod.name}: ETCD_ENDPOINTS ${to.problem}`);
      else if (to.pods.length !== 1 || !etcdPods.includes(to.pods[0]!) || containerPort(to.pods[0]!, 'client') !== Number(new URL(e).port)) problems.push(`${r.pod.name}: ETCD_ENDPOINTS ${e} is not one etcd member's client port`);
      else reached.add(to.pods[0]!);
    }
    if (reached.size !== etcdPods.length) problems.push(`${r.pod.name}: ETCD_ENDPOINTS names ${reached.size} of the ${etcdPods.length} etcd members`);
  }
  const tokens = new Set(running.filter((x) => SHARD_IMAGE.test(imageOf(x)) || ROUTER_IMAGE.test(imageOf(x))).map((x) => `${x.env.CLUSTER_TOKEN}|${x.env.CLUSTER_ID}`));
  if (tokens.size !== 1) problems.push('the routers and nodes do not all get the same CLUSTER_TOKEN and CLUSTER_ID');
  return problems;
}

/** The router's gRPC port is its container port named grpc, and the router Service reaches it on the same number. */
function grpcPortProblems(c: Cluster, pod: Pod, port: number | undefined): string[] {
  if (port === undefined) return [`${pod.name}: GRPC_PORT=off, the gRPC service is not served`];
  const named = list(containersOf(pod)[0]?.ports).find((p) => p.name === 'grpc');
  if (named?.containerPort !== port) return [`${pod.name}: GRPC_PORT ${port} is not its container port named grpc (${String(named?.containerPort)})`];
  const via = resolveUrl(c, `http://router:${port}`);
  if ('problem' in via) return [`${pod.name}: gRPC clients cannot reach it: ${via.problem}`];
  return via.pods.includes(pod) ? [] : [`${pod.name}: the router Service's port ${port} does not reach it`];
}

/** `--flag=value` from a resolved command line. */
function flagsOf(argv: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (const a of argv) {
    const m = /^--([\w-]+)=(.*)$/.exec(a);
    if (m) flags.set(m[1]!, m[2]!);
  }
  return flags;
}

function etcdPodProblems(c: Cluster, running: RunningPod[]): string[] {
  const problems: string[] = [];
  const members = running.filter((r) => ETCD_IMAGE.test(imageOf(r)));
  if (members.length < 3 || members.length % 2 === 0) problems.push(`${members.length} etcd members, expected an odd number, at least 3`);
  const tokens = new Set<string | undefined>();
  for (const r of members) {
    const flags = flagsOf(r.argv);
    tokens.add(flags.get('initial-cluster-token'));
    if (flags.get('name') !== r.pod.name) problems.push(`${r.pod.name}: --name is ${String(flags.get('name'))}`);
    const urlAt = (flag: string, portName: string) => {
      const u = flags.get(flag) ?? '';
      const to = resolveUrl(c, u);
      if ('problem' in to) problems.push(`${r.pod.name}: --${flag} ${to.problem}`);
      else if (to.pods.length !== 1 || to.pods[0] !== r.pod || containerPort(r.pod, portName) !== Number(new URL(u).port)) problems.push(`${r.pod.name}: --${flag} ${u} is not this member's ${portName} port`);
    };
    urlAt('advertise-client-urls', 'client');
    urlAt('initial-advertise-peer-urls', 'peer');
    for (const [flag, portName] of [['listen-client-urls', 'client'], ['listen-peer-urls', 'peer']] as const) {
      if (Number(new URL(flags.get(flag) ?? 'http://x:0').port) !== containerPort(r.pod, portName)) problems.push(`${r.pod.name}: --${flag} is not on its ${portName} container port`);
    }
    const cluster = new Map((flags.get('initial-cluster') ?? '').split(',').map((kv) => kv.split('=') as [string, string]));
    const names = [...cluster.keys()].sort();
    const want = members.map((x) => x.pod.name).sort();
    if (JSON.stringify(names) !== JSON.stringify(want)) problems.push(`${r.pod.name}: --initial-cluster names [${names.join(', ')}], the members are [${want.join(', ')}]`);
    for (const [n, u] of cluster) {
      const to = resolveUrl(c, u ?? '');
      const member = members.find((x) => x.pod.name === n)?.pod;
      if ('problem' in to) problems.push(`${r.pod.name}: --initial-cluster ${n}: ${to.problem}`);
      else if (member === undefined || to.pods[0] !== member || containerPort(member, 'peer') !== Number(new URL(u).port)) problems.push(`${r.pod.name}: --initial-cluster ${n}=${u} is not ${n}'s peer port`);
    }
    const dataDir = flags.get('data-dir') ?? '';
    const claims = list(r.pod.workload.spec?.volumeClaimTemplates).map((t) => String(t.metadata?.name));
    const mount = list(containersOf(r.pod)[0]!.volumeMounts).find((vm) => vm.mountPath === dataDir);
    if (mount === undefined || !claims.includes(String(mount.name))) problems.push(`${r.pod.name}: --data-dir ${dataDir} is not on a volumeClaimTemplate`);
  }
  if (tokens.size > 1) problems.push('the etcd members do not share one --initial-cluster-token');
  return problems;
}

/** The env var names docker-compose gives each kind of service, which the pods must get too. */
function composeParityProblems(running: RunningPod[]): string[] {
  const compose = YAML.parse(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as Dict;
  const keys = (svc: string) => Object.keys(compose.services[svc].environment as Dict);
  const problems: string[] = [];
  const want = (r: RunningPod): string[] => {
    if (ROUTER_IMAGE.test(imageOf(r))) return keys('router-2');
    if (SHARD_IMAGE.test(imageOf(r))) return keys(r.env.ROLE === 'follower' ? 'shard0-follower' : 'shard0-leader');
    return [];
  };
  for (const r of running) {
    const missing = want(r).filter((k) => r.env[k] === undefined && !(k === 'ADMIN_TOKEN' && hasOptionalSecret(r.pod, k)));
    if (missing.length > 0) problems.push(`${r.pod.name}: lacks ${missing.join(', ')}, which docker-compose gives the same service`);
  }
  return problems;
}

const hasOptionalSecret = (pod: Pod, name: string) => list(containersOf(pod)[0]?.env).some((e) => e.name === name && e.valueFrom?.secretKeyRef?.optional === true);

/** Every way the manifests depart from a cluster that would run; [] when none. */
function manifestProblems(m: Manifests): string[] {
  const c = clusterOf(m);
  const problems = [...kustomizationProblems(m), ...[...c.objects, ...c.secrets].flatMap(schemaProblems)];
  for (const w of [...c.of('StatefulSet'), ...c.of('Deployment')]) problems.push(...workloadProblems(c, w));
  for (const s of c.of('Service')) problems.push(...serviceProblems(c, s));
  for (const p of c.of('PodDisruptionBudget')) problems.push(...pdbProblems(c, p));
  const running = runPods(c, problems);
  problems.push(...shardPodProblems(c, running), ...routerPodProblems(c, running), ...etcdPodProblems(c, running), ...composeParityProblems(running));
  return problems;
}

// ---------------------------------------------------------------------------------------------
const good = loadManifests();
const clone = (): Manifests => structuredClone(good);
const byName = (m: Manifests, kind: string, name: string): Dict => {
  const o = Object.values(m.files).flat().find((x) => x.kind === kind && x.metadata?.name === name);
  if (o === undefined) throw new Error(`no ${kind}/${name}`);
  return o;
};
const container = (m: Manifests, kind: string, name: string): Dict => byName(m, kind, name).spec.template.spec.containers[0];
const envVar = (m: Manifests, kind: string, name: string, v: string): Dict => {
  const e = list(container(m, kind, name).env).find((x) => x.name === v);
  if (e === undefined) throw new Error(`no env ${v} in ${kind}/${name}`);
  return e;
};
const config = (m: Manifests): Dict => byName(m, 'ConfigMap', 'shardkv-config').data;

describe('Kubernetes manifests', () => {
  it('describe a cluster that would run: schemas, references, ports, URLs and every pod\'s config', () => {
    expect(manifestProblems(good)).toEqual([]);
  });

  it('run 3 shards of 2 nodes, 2 routers and 3 etcd members', () => {
    const c = clusterOf(good);
    expect(c.pods.map((p) => p.name).filter((n) => /^shard-/.test(n)).sort()).toEqual(['shard-0-0', 'shard-0-1', 'shard-1-0', 'shard-1-1', 'shard-2-0', 'shard-2-1']);
    expect(c.pods.filter((p) => p.workload.kind === 'Deployment')).toHaveLength(2);
    expect(c.pods.filter((p) => p.workload.metadata.name === 'etcd')).toHaveLength(3);
  });

  it('keeps every shard file a copy of shard-0.yaml with the shard renamed', () => {
    const text = fs.readFileSync(path.join(DIR, 'shard-0.yaml'), 'utf8');
    for (const f of Object.keys(good.files).filter((x) => /^shard-\d+\.yaml$/.test(x))) {
      const i = /\d+/.exec(f)![0];
      expect(fs.readFileSync(path.join(DIR, f), 'utf8')).toBe(text.replace(/shard-0/g, `shard-${i}`));
    }
  });

  it('refuses a third pod in a shard\'s StatefulSet (exit 78)', () => {
    const m = clone();
    byName(m, 'StatefulSet', 'shard-1').spec.replicas = 3;
    expect(manifestProblems(m)).toEqual(expect.arrayContaining([expect.stringMatching(/shard-1-2: its start-up ends in "" with status 78/)]));
  });

  it.each<[string, (m: Manifests) => void, RegExp]>([
    ['a file missing from kustomization.yaml', (m) => (m.kustomization.resources = (m.kustomization.resources as string[]).filter((r) => r !== 'etcd.yaml')), /kustomization.yaml does not list etcd.yaml/],
    ['a Secret among the applied files', (m) => m.files['config.yaml']!.push(structuredClone(m.examples[0]!)), /a Secret among the applied manifests/],
    ['a real-looking token in the example', (m) => (m.examples[0]!.stringData['cluster-token'] = 'a3f9'), /does not look like a placeholder/],
    ['a string containerPort (schema)', (m) => (container(m, 'StatefulSet', 'shard-0').ports[0].containerPort = '5001'), /StatefulSet\/shard-0: schema: .*containerPort must be integer/],
    ['a Service without ports (schema)', (m) => (byName(m, 'Service', 'router').spec.ports = [{ name: 'http' }]), /Service\/router: schema: .*required property .?port/],
    ['an unknown kind', (m) => (byName(m, 'PodDisruptionBudget', 'router').apiVersion = 'policy/v1beta1'), /PodDisruptionBudget\/router: apiVersion\/kind policy\/v1beta1/],
    ['a wrong Secret name', (m) => (envVar(m, 'StatefulSet', 'shard-2', 'CLUSTER_TOKEN').valueFrom.secretKeyRef.name = 'shardkv'), /shard-2-0\/shard: env CLUSTER_TOKEN reads Secret shardkv,/],
    ['a wrong Secret key', (m) => (envVar(m, 'Deployment', 'router', 'CLUSTER_TOKEN').valueFrom.secretKeyRef.key = 'token'), /env CLUSTER_TOKEN reads Secret shardkv-token key token/],
    ['a wrong ConfigMap key', (m) => (envVar(m, 'StatefulSet', 'shard-0', 'COORDINATOR_URLS').valueFrom.configMapKeyRef.key = 'coordinators'), /shard-0-0\/shard: env COORDINATOR_URLS reads ConfigMap shardkv-config key coordinators/],
    ['a wrong ConfigMap name', (m) => (envVar(m, 'Deployment', 'router', 'SHARDS').valueFrom.configMapKeyRef.name = 'config'), /env SHARDS reads ConfigMap config/],
    ['serviceName naming no Service', (m) => (byName(m, 'StatefulSet', 'shard-1').spec.serviceName = 'shard1'), /StatefulSet\/shard-1: serviceName shard1 is not a Service/],
    ['a StatefulSet Service with a cluster IP', (m) => delete byName(m, 'Service', 'etcd').spec.clusterIP, /Service etcd is not headless/],
    ['a headless Service hiding not-ready pods', (m) => delete byName(m, 'Service', 'shard-2').spec.publishNotReadyAddresses, /StatefulSet\/shard-2: .*does not publish not-ready pods/],
    ['a Service selecting another shard', (m) => (byName(m, 'Service', 'shard-0').spec.selector['shardkv/shard'] = 'shard-1'), /StatefulSet\/shard-0: Service shard-0 does not select its pods/],
    ['OrderedReady pods', (m) => (byName(m, 'StatefulSet', 'etcd').spec.podManagementPolicy = 'OrderedReady'), /StatefulSet\/etcd: podManagementPolicy is OrderedReady/],
    ['a selector missing its template', (m) => (byName(m, 'Deployment', 'router').spec.selector.matchLabels['app.kubernetes.io/component'] = 'routers'), /Deployment\/router: selector.matchLabels does not select/],
    ['service links on', (m) => delete byName(m, 'StatefulSet', 'etcd').spec.template.spec.enableServiceLinks, /StatefulSet\/etcd: enableServiceLinks/],
    ['a Service targeting a missing port', (m) => (byName(m, 'Service', 'router').spec.ports[0].targetPort = 'web'), /Service\/router: port 5000 targets web/],
    ['a Service port unlike its container port', (m) => (byName(m, 'Service', 'shard-1').spec.ports[0].port = 80), /Service\/shard-1: port 80 maps to container port 5001/],
    ['a containerPort unlike PORT', (m) => (container(m, 'StatefulSet', 'shard-0').ports[0].containerPort = 6001), /StatefulSet\/shard-0: PORT 5001 is not a container port/],
    ['a router PORT unlike its containerPort', (m) => (envVar(m, 'Deployment', 'router', 'PORT').value = '5010'), /Deployment\/router: PORT 5010 is not a container port/],
    ['a router GRPC_PORT unlike its containerPort', (m) => (envVar(m, 'Deployment', 'router', 'GRPC_PORT').value = '5101'), /GRPC_PORT 5101 is not its container port named grpc \(5100\)/],
    ['the router Service without the gRPC port', (m) => (byName(m, 'Service', 'router').spec.ports = byName(m, 'Service', 'router').spec.ports.slice(0, 1)), /gRPC clients cannot reach it: http:\/\/router:5100: Service router has no port 5100/],
    ['gRPC off on the routers', (m) => (envVar(m, 'Deployment', 'router', 'GRPC_PORT').value = 'off'), /GRPC_PORT=off/],
    ['a router lacking GRPC_PORT (compose has it)', (m) => (container(m, 'Deployment', 'router').env = list(container(m, 'Deployment', 'router').env).filter((e) => e.name !== 'GRPC_PORT')), /lacks GRPC_PORT, which docker-compose gives/],
    ['a probe on a missing port', (m) => (container(m, 'StatefulSet', 'etcd').livenessProbe.httpGet.port = 'http'), /StatefulSet\/etcd: livenessProbe probes port http/],
    ['readiness not on /health', (m) => (container(m, 'Deployment', 'router').readinessProbe.httpGet.path = '/status'), /Deployment\/router: readinessProbe is not GET \/health/],
    ['liveness on /health for a node', (m) => (container(m, 'StatefulSet', 'shard-2').livenessProbe.httpGet.path = '/health'), /StatefulSet\/shard-2: livenessProbe is GET \/health/],
    ['no liveness probe', (m) => delete container(m, 'StatefulSet', 'shard-0').livenessProbe, /StatefulSet\/shard-0: no livenessProbe/],
    ['a mount of no volume', (m) => (container(m, 'Deployment', 'router').volumeMounts[0].name = 'data'), /Deployment\/router: volumeMount data has no volume/],
    ['a claim template mounted nowhere', (m) => (container(m, 'StatefulSet', 'shard-1').volumeMounts = []), /StatefulSet\/shard-1: volumeClaimTemplate data is mounted nowhere/],
    ['DATA_DIR off the volume', (m) => (envVar(m, 'StatefulSet', 'shard-0', 'DATA_DIR').value = '/var/lib/shardkv'), /shard-0-1: DATA_DIR \/var\/lib\/shardkv is not on a volume/],
    ['an etcd data dir off the volume', (m) => (container(m, 'StatefulSet', 'etcd').volumeMounts[0].mountPath = '/data'), /etcd-2: --data-dir \/etcd-data is not on a volumeClaimTemplate/],
    ['a $(VAR) used before it is defined', (m) => container(m, 'Deployment', 'router').env.splice(5, 0, container(m, 'Deployment', 'router').env.splice(1, 1)[0]), /env ROUTER_URL: \$\(POD_IP\)/],
    ['a mutable image', (m) => (container(m, 'StatefulSet', 'shard-0').image = 'shardkv/shard:latest'), /image shardkv\/shard:latest/],
    ['a leader\'s peer on another shard', (m) => (envVar(m, 'StatefulSet', 'shard-1', 'SHARD_SERVICE').value = 'shard-2'), /shard-1-0: FOLLOWER_URL .*shard-1-1 is named under its StatefulSet's serviceName shard-1, not shard-2/],
    ['a script that makes both pods leaders', (m) => (container(m, 'StatefulSet', 'shard-0').args[0] = container(m, 'StatefulSet', 'shard-0').args[0].replace('export ROLE=follower LEADER_URL', 'export ROLE=leader FOLLOWER_URL')), /StatefulSet\/shard-0: its nodes start as \[leader,leader\]/],
    ['a script that runs something else', (m) => (container(m, 'StatefulSet', 'shard-2').args[0] = container(m, 'StatefulSet', 'shard-2').args[0].replace('exec node dist/main.js', 'exec node main.js')), /shard-2-0: its start-up ends in "node main.js"/],
    ['a peer URL on the wrong port', (m) => (container(m, 'StatefulSet', 'shard-0').args[0] = container(m, 'StatefulSet', 'shard-0').args[0].replace('$SHARD_SERVICE:$PORT" ;;\n  "$set_name-1"', '$SHARD_SERVICE:6001" ;;\n  "$set_name-1"')), /shard-0-0: FOLLOWER_URL http:\/\/shard-0-1.shard-0:6001: pod shard-0-1 has no container port 6001/],
    ['two StatefulSets of one shard', (m) => (envVar(m, 'StatefulSet', 'shard-2', 'SHARD_ID').value = 'shard-1'), /StatefulSet\/shard-2: shard shard-1 is another StatefulSet's too/],
    ['an invalid SHARD_ID', (m) => (envVar(m, 'StatefulSet', 'shard-0', 'SHARD_ID').value = ''), /shard-0-0: the shard's config parser refuses/],
    ['COORDINATOR_URLS at a missing Service', (m) => (config(m)['coordinator-urls'] = 'http://routers:5000'), /COORDINATOR_URLS http:\/\/routers:5000: no Service named routers/],
    ['COORDINATOR_URLS at the nodes', (m) => (config(m)['coordinator-urls'] = 'http://shard-0:5001'), /COORDINATOR_URLS http:\/\/shard-0:5001 reaches pods that are not routers/],
    ['SHARDS without a shard', (m) => (config(m).shards = String(config(m).shards).split(';').slice(0, 2).join(';')), /SHARDS lists \[shard-0, shard-1\], the StatefulSets run \[shard-0, shard-1, shard-2\]/],
    ['SHARDS with leader and follower swapped', (m) => (config(m).shards = String(config(m).shards).replace('http://shard-1-0.shard-1:5001,http://shard-1-1.shard-1:5001', 'http://shard-1-1.shard-1:5001,http://shard-1-0.shard-1:5001')), /SHARDS shard-1 leader http:\/\/shard-1-1.shard-1:5001 is not the pod that starts as shard-1's leader/],
    ['SHARDS naming a pod that does not exist', (m) => (config(m).shards = String(config(m).shards).replace('shard-2-1.shard-2', 'shard-2-2.shard-2')), /SHARDS shard-2 follower .*no StatefulSet pod named shard-2-2/],
    ['routers without etcd', (m) => (container(m, 'Deployment', 'router').env = list(container(m, 'Deployment', 'router').env).filter((e) => e.name !== 'ETCD_ENDPOINTS')), /no ETCD_ENDPOINTS, yet 2 routers/],
    ['ETCD_ENDPOINTS short of a member', (m) => (config(m)['etcd-endpoints'] = 'http://etcd-0.etcd:2379,http://etcd-1.etcd:2379'), /ETCD_ENDPOINTS names 2 of the 3 etcd members/],
    ['ETCD_ENDPOINTS on the peer port', (m) => (config(m)['etcd-endpoints'] = 'http://etcd-0.etcd:2380,http://etcd-1.etcd:2379,http://etcd-2.etcd:2379'), /ETCD_ENDPOINTS http:\/\/etcd-0.etcd:2380 is not one etcd member's client port/],
    ['one ROUTER_ID for all routers', (m) => (envVar(m, 'Deployment', 'router', 'ROUTER_ID').value = 'router-1'), /ROUTER_ID router-1 is another router's too/],
    ['a ROUTER_URL nodes cannot reach the router at', (m) => (envVar(m, 'Deployment', 'router', 'ROUTER_URL').value = 'http://$(POD_IP):8080'), /ROUTER_URL http:\/\/10\.[\d.]+:8080 does not reach this pod/],
    ['a single router', (m) => (byName(m, 'Deployment', 'router').spec.replicas = 1), /1 router pod\(s\), expected at least 2/],
    ['an even number of etcd members', (m) => (byName(m, 'StatefulSet', 'etcd').spec.replicas = 4), /4 etcd members/],
    ['--initial-cluster missing a member', (m) => (container(m, 'StatefulSet', 'etcd').args[6] = '--initial-cluster=etcd-0=http://etcd-0.etcd:2380,etcd-1=http://etcd-1.etcd:2380'), /--initial-cluster names \[etcd-0, etcd-1\], the members are \[etcd-0, etcd-1, etcd-2\]/],
    ['--initial-cluster with a member at another\'s URL', (m) => (container(m, 'StatefulSet', 'etcd').args[6] = '--initial-cluster=etcd-0=http://etcd-0.etcd:2380,etcd-1=http://etcd-0.etcd:2380,etcd-2=http://etcd-2.etcd:2380'), /--initial-cluster etcd-1=http:\/\/etcd-0.etcd:2380 is not etcd-1's peer port/],
    ['a member advertising the Service instead of itself', (m) => (container(m, 'StatefulSet', 'etcd').args[3] = '--advertise-client-urls=http://etcd:2379'), /etcd-0: --advertise-client-urls http:\/\/etcd:2379 is not this member's client port/],
    ['a fixed member name', (m) => (container(m, 'StatefulSet', 'etcd').args[0] = '--name=etcd-0'), /etcd-1: --name is etcd-0/],
    ['a PDB letting a whole shard go', (m) => (byName(m, 'PodDisruptionBudget', 'shard-0').spec.minAvailable = 0), /PodDisruptionBudget\/shard-0: lets 2 of 2 pods go at once/],
    ['a PDB selecting nothing', (m) => (byName(m, 'PodDisruptionBudget', 'etcd').spec.selector.matchLabels['app.kubernetes.io/component'] = 'etc'), /PodDisruptionBudget\/etcd: selects no pod/],
    ['a node lacking a compose variable', (m) => (container(m, 'StatefulSet', 'shard-1').env = list(container(m, 'StatefulSet', 'shard-1').env).filter((e) => e.name !== 'LOG_LEVEL')), /shard-1-0: lacks LOG_LEVEL, which docker-compose gives/],
    ['a router lacking a compose variable', (m) => (container(m, 'Deployment', 'router').env = list(container(m, 'Deployment', 'router').env).filter((e) => e.name !== 'MIN_INSYNC_REPLICAS')), /lacks MIN_INSYNC_REPLICAS/],
    ['routers on another cluster id', (m) => (envVar(m, 'Deployment', 'router', 'CLUSTER_ID').valueFrom = undefined, envVar(m, 'Deployment', 'router', 'CLUSTER_ID').value = 'other'), /do not all get the same CLUSTER_TOKEN and CLUSTER_ID/],
  ])('flags %s', (_what, change, expected) => {
    const m = clone();
    change(m);
    const problems = manifestProblems(m);
    expect(problems.filter((p) => expected.test(p))).not.toEqual([]);
  });
});
