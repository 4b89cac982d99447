import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { freshPlacement } from '@shardkv/router/dist/placement';
import { Pool, request } from 'undici';
import { Cluster, isHealthy, type ClusterNode, type ClusterOptions, type ClusterShard } from './cluster';
import { DEFAULT_RMW, isCounterSlot, registerStep, rmwStep, type Classified, type ClientIo, type Exchange, type HttpRequest, type OperationMix, type RmwOptions, type Workload } from './chaos-workloads';
import { checkHistory, type CheckResult, type OpKind, type Operation } from './linearizability';
import { checkRmwHistory } from './linearizability-rmw';
import type { RestartPolicy } from './supervisor';

export { classifyResponse, classifyRmwAnswer, classifyTransportError, pickKind, type Classified, type OperationMix, type RegisterKind, type RmwOptions, type Workload } from './chaos-workloads';

/**
 * The fault harness behind `npm run chaos`, test/chaos.test.ts and test/counters-faults.test.ts.
 * Concurrent clients send requests through the router over a small, contended key set and record
 * every operation (invocation, completion, outcome): the `register` workload a random mix of
 * get/put/delete, the `rmw` workload counters and compare-and-sets (chaos-workloads.ts). A nemesis
 * meanwhile kills (kill -9, the supervisor restarts the node) or pauses (SIGSTOP ... SIGCONT) one
 * random shard node at a time. At the end the history goes to the linearizability checker of its
 * workload (linearizability.ts, linearizability-rmw.ts), and for every fault the write outage of
 * its shard is measured from the same history.
 *
 * Outcomes follow the API's contract: 200 (and 404 key_not_found on a get) took effect; 503 is a
 * definite failure (nothing applied); 504, a lost connection or a client-side timeout is
 * indeterminate; in the rmw workload a 412 is a refusal that observed the state. Any other answer
 * (4xx, 500, a malformed 200) is a bug: it is listed under `unexpected` and, so that it cannot
 * cause a false anomaly, kept in the history as indeterminate.
 */

export type FaultKind = 'kill' | 'pause';
export type FaultRole = 'leader' | 'follower';

/** What a scripted nemesis (the HA faults, see ha-faults.ts) is given instead of the random one. */
export interface ScenarioContext {
  cluster: Cluster;
  /** ms since the run started (the history's clock). */
  now(): number;
  log(line: string): void;
  /** Aborts when the run ends. */
  signal: AbortSignal;
  /** Records a fault; its write outage is measured from the history at the end when it names a shard. */
  record(fault: ScenarioFault): void;
}

export interface ScenarioFault {
  /** The fault's kind (e.g. `killCoordinator`), for figures over several of them. */
  kind?: string;
  name: string;
  /** The shard whose write outage it causes, if any. */
  shard?: string;
  startMs: number;
  endMs: number;
  /** Filled in at the end from the history. */
  outageMs?: number;
  recovered?: boolean;
  /** Whatever the fault measured (e.g. the coordinator takeover time). */
  figures?: Record<string, number | string | boolean>;
}

export interface NemesisOptions {
  /** false: no faults at all (a baseline run). */
  enabled: boolean;
  kinds: FaultKind[];
  roles: FaultRole[];
  /** Quiet time before the first fault. */
  startDelayMs: number;
  /** Quiet time after each fault has ended (pause over / killed node healthy again). */
  settleMs: number;
  pauseMinMs: number;
  pauseMaxMs: number;
  /** How long a killed node may take to answer /health again before the run is marked broken. */
  recoverTimeoutMs: number;
  /** Poll interval while waiting for a killed node. */
  recoverPollMs: number;
  /**
   * Deadline of the /health probe that finds which node of the shard has the role to fault now
   * (roles move on failover); a node that does not say is taken by its configured name.
   */
  roleProbeTimeoutMs: number;
  /** No fault starts unless it can end (pauseMaxMs) and leave this much quiet time before the end. */
  finalQuietMs: number;
  /** Stop after this many faults (undefined: as many as fit in the run). */
  maxFaults?: number;
  /**
   * The first faults cover every kind x role combination once (in random order), then random.
   * The run goes on past durationMs until the cover is done and finalQuietMs has passed (a slow
   * machine recovers slowly), at most COVER_OVERTIME_FACTOR times durationMs in all.
   */
  coverFirst: boolean;
}

export interface CheckerOptions {
  maxStepsPerKey?: number;
  timeoutMs?: number;
}

/** How `runChaos` starts its own cluster when it is not given one. */
export interface ChaosClusterOptions {
  shardCount: number;
  env: Record<string, string>;
  restart: RestartPolicy;
  /** Node log lines (for a log tail on failure); none by default. */
  sink?: ClusterOptions['sink'];
  startTimeoutMs: number;
}

export interface ChaosOptions {
  durationMs: number;
  clients: number;
  keys: number;
  keyPrefix: string;
  /** What the clients send: a get/put/delete mix, or counters and compare-and-sets (see chaos-workloads.ts). */
  workload: Workload;
  /** Relative weights of get / put / del (register workload). */
  mix: OperationMix;
  /** The rmw workload's increments and resends. */
  rmw: RmwOptions;
  /** Client-side deadline per request: a bit above the router's upstream deadline (5 s). */
  requestTimeoutMs: number;
  /** A client waits this long after a failed or indeterminate operation (no spinning on 503). */
  errorBackoffMs: number;
  /** A client waits this long between operations (0: closed loop). */
  thinkMs: number;
  /**
   * A key slot moves on to a fresh key after this many operations (0: never), which bounds each
   * key's history and so the checker's work on long runs; `keys` keys stay contended at any time.
   */
  maxOpsPerKey: number;
  /** Seeds the choice of operations, keys and faults (timing still varies run to run). */
  seed: number;
  nemesis: NemesisOptions;
  checker: CheckerOptions;
  /** Keep the whole history in the report (large); otherwise only the keys with anomalies or undecided. */
  keepHistory: boolean;
  /** Run against this cluster (left running); otherwise one is started on free ports in a temp dir and removed. */
  cluster?: Cluster;
  clusterOptions: ChaosClusterOptions;
  /** Ends the run early (SIGINT): clients stop, the nemesis resumes a paused node, the checker still runs. */
  signal?: AbortSignal;
  /** Progress lines (faults as they happen). */
  log: (line: string) => void;
  /** A scripted nemesis, run instead of the random one (which is then not used). */
  scenario?: (ctx: ScenarioContext) => Promise<void>;
  /** Runs beside the random nemesis for the whole run (resharding: see reshard-faults.ts); its failure is a nemesis error. */
  beside?: (ctx: ScenarioContext) => Promise<void>;
}

export type ChaosInput = Partial<Omit<ChaosOptions, 'nemesis' | 'clusterOptions' | 'mix' | 'rmw'>> & {
  nemesis?: Partial<NemesisOptions>;
  clusterOptions?: Partial<ChaosClusterOptions>;
  mix?: Partial<OperationMix>;
  rmw?: Partial<RmwOptions>;
};

/** A run whose cover of faults is not done at durationMs may go on to this multiple of it. */
export const COVER_OVERTIME_FACTOR = 2;

export const DEFAULT_NEMESIS: NemesisOptions = {
  enabled: true,
  kinds: ['kill', 'pause'],
  roles: ['leader', 'follower'],
  startDelayMs: 1000,
  settleMs: 2000,
  pauseMinMs: 1000,
  pauseMaxMs: 4000,
  recoverTimeoutMs: 20_000,
  recoverPollMs: 50,
  roleProbeTimeoutMs: 500,
  finalQuietMs: 3000,
  coverFirst: true,
};

/** The same fast fault detection as the integration tests. */
export const CHAOS_ENV: Record<string, string> = { LOG_LEVEL: 'info', HEARTBEAT_INTERVAL_MS: '100', RETRY_BACKOFF_MS: '100', REPLICATION_TIMEOUT_MS: '1000' };

export const DEFAULT_CHAOS: Omit<ChaosOptions, 'seed' | 'cluster' | 'signal'> = {
  durationMs: 60_000,
  clients: 8,
  keys: 12,
  keyPrefix: 'chaos',
  workload: 'register',
  mix: { get: 50, put: 40, del: 10 },
  rmw: DEFAULT_RMW,
  requestTimeoutMs: 6000,
  errorBackoffMs: 50,
  thinkMs: 0,
  maxOpsPerKey: 2000,
  nemesis: DEFAULT_NEMESIS,
  checker: {},
  keepHistory: false,
  clusterOptions: {
    shardCount: 3,
    env: CHAOS_ENV,
    restart: { backoffMinMs: 100, backoffMaxMs: 1000, stableAfterMs: 5000 },
    startTimeoutMs: 30_000,
  },
  log: () => {},
};

export function resolveOptions(input: ChaosInput = {}): ChaosOptions {
  const opts: ChaosOptions = {
    ...DEFAULT_CHAOS,
    seed: Math.floor(Math.random() * 2 ** 31),
    ...input,
    mix: { ...DEFAULT_CHAOS.mix, ...input.mix },
    rmw: { ...DEFAULT_CHAOS.rmw, ...input.rmw },
    nemesis: { ...DEFAULT_NEMESIS, ...input.nemesis },
    checker: { ...DEFAULT_CHAOS.checker, ...input.checker },
    clusterOptions: { ...DEFAULT_CHAOS.clusterOptions, ...input.clusterOptions },
  };
  const positive = { durationMs: opts.durationMs, clients: opts.clients, keys: opts.keys, requestTimeoutMs: opts.requestTimeoutMs };
  for (const [name, v] of Object.entries(positive)) if (!(Number.isFinite(v) && v > 0)) throw new Error(`${name} must be a positive number (got ${v})`);
  if (opts.mix.get + opts.mix.put + opts.mix.del <= 0) throw new Error('the operation mix needs a positive weight');
  if (opts.workload !== 'register' && opts.workload !== 'rmw') throw new Error(`workload must be register or rmw (got ${String(opts.workload)})`);
  if (opts.rmw.incrBy.length === 0 || !opts.rmw.incrBy.every((by) => Number.isSafeInteger(by) && by !== 0)) throw new Error('rmw.incrBy needs non-zero safe integers');
  if (opts.workload === 'rmw' && opts.keys < 2) throw new Error('the rmw workload needs at least 2 keys (counters and registers)');
  const n = opts.nemesis;
  if (n.enabled && (n.kinds.length === 0 || n.roles.length === 0)) throw new Error('the nemesis needs at least one fault kind and one role');
  if (n.pauseMinMs > n.pauseMaxMs) throw new Error('pauseMinMs must not exceed pauseMaxMs');
  return opts;
}

// ---------------------------------------------------------------------------------------------
// records

export interface FaultRecord {
  kind: FaultKind;
  node: string;
  shard: string;
  /** The role the node had when it was signalled. */
  role: FaultRole;
  /** `observed`: the node's /health said so; `configured`: no node reported the role, so the one named for it was taken. */
  roleSource: 'observed' | 'configured';
  /** ms since the run started: the signal (SIGKILL / SIGSTOP) was sent. */
  startMs: number;
  /** ms since the run started: SIGCONT was sent, or the killed node answered /health again. */
  endMs: number;
  /** Supervisor restarts of the node seen after a kill. */
  restarts?: number;
  /** From the fault's start to the first successful write on its shard invoked after it (or to the run end). */
  outageMs: number;
  /** Whether a write on the shard succeeded after the fault before the run ended. */
  recovered: boolean;
  /** ms since the run started: completion of that first successful write, if any. */
  firstWriteOkMs: number | null;
}

export interface UnexpectedError {
  client: number;
  key: string;
  kind: OpKind;
  status: number;
  body: unknown;
  invokeMs: number;
  completeMs: number;
}

export interface OutcomeCounts {
  ok: number;
  fail: number;
  info: number;
}

export interface ChaosReport {
  seed: number;
  startedAt: string;
  /** Wall time of the client phase (ms). */
  elapsedMs: number;
  options: Omit<ChaosOptions, 'cluster' | 'signal' | 'log' | 'clusterOptions'> & { clusterOptions: Omit<ChaosClusterOptions, 'sink'> };
  aborted: boolean;
  operations: OutcomeCounts & {
    total: number;
    byKind: Record<OpKind, OutcomeCounts>;
    keysUsed: number;
    /** successful gets that found a value (not absent) */
    readsFound: number;
    /** conditional writes refused with 412 version_mismatch (counted as failed in byKind) */
    refused: { put: number; del: number };
  };
  /** Why operations failed or were indeterminate, e.g. `put 503 no_replica`, `get timeout`. */
  reasons: Record<string, number>;
  /** rmw workload: writes sent again with their Idempotency-Key, by what the attempt before got, e.g. `incr after client timeout`. */
  resends: Record<string, number>;
  faults: FaultRecord[];
  /** The scripted nemesis's faults, when one ran. */
  scenarioFaults: ScenarioFault[];
  /** The nemesis could not do its job (a node that did not come back); the run proves less. */
  nemesisErrors: string[];
  check: CheckResult & { ms: number };
  unexpected: UnexpectedError[];
  /** Operations on the keys with anomalies, undecided or unexpected errors (or all of them with keepHistory). */
  history: Operation[];
}

// ---------------------------------------------------------------------------------------------
// pure parts: write outages, seeded randomness

export interface OutageInput {
  shard: string;
  startMs: number;
}

export interface Outage {
  outageMs: number;
  recovered: boolean;
  firstWriteOkMs: number | null;
}

/**
 * The write outage a fault caused on its shard: from the fault's start to the completion of the
 * first write (put or delete) on that shard that was invoked at or after the start and succeeded;
 * capped at `endMs` (then `recovered` is false). Writes already in flight when the fault began do
 * not count: they may have been served before the signal landed.
 */
export function writeOutage(fault: OutageInput, history: readonly Operation[], shardOf: (key: string) => string, endMs: number): Outage {
  let first = Number.POSITIVE_INFINITY;
  for (const op of history) {
    if (op.kind === 'get' || op.outcome !== 'ok' || op.invokeMs < fault.startMs || op.completeMs >= first) continue;
    if (shardOf(op.key) === fault.shard) first = op.completeMs;
  }
  if (first === Number.POSITIVE_INFINITY || first > endMs) return { outageMs: Math.max(0, endMs - fault.startMs), recovered: false, firstWriteOkMs: null };
  return { outageMs: first - fault.startMs, recovered: true, firstWriteOkMs: first };
}

/** mulberry32: small, fast, good enough to pick operations and faults reproducibly. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// the run

/** Sleeps `ms`, or less when `signal` aborts. */
export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** A cluster on free ports with its data in a temp directory; `stop` removes it. */
export async function startChaosCluster(o: ChaosClusterOptions): Promise<{ cluster: Cluster; dataRoot: string; stop: () => Promise<void> }> {
  const dataRoot = mkdtempSync(join(tmpdir(), 'shardkv-chaos-'));
  const remove = () => rmSync(dataRoot, { recursive: true, force: true });
  let cluster: Cluster;
  try {
    cluster = await Cluster.create({ ports: 'free', shardCount: o.shardCount, dataRoot, clusterId: 'chaos', env: o.env, restart: o.restart, sink: o.sink });
  } catch (err) {
    remove();
    throw err;
  }
  const stop = async () => {
    try {
      await cluster.stop();
    } finally {
      remove();
    }
  };
  try {
    await cluster.start(o.startTimeoutMs);
  } catch (err) {
    await stop();
    throw err;
  }
  return { cluster, dataRoot, stop };
}

export async function runChaos(input: ChaosInput = {}): Promise<ChaosReport> {
  const opts = resolveOptions(input);
  if (opts.cluster !== undefined) return runOn(opts.cluster, opts);
  const own = await startChaosCluster(opts.clusterOptions);
  try {
    return await runOn(own.cluster, opts);
  } finally {
    await own.stop();
  }
}

async function runOn(cluster: Cluster, opts: ChaosOptions): Promise<ChaosReport> {
  const startedAt = new Date().toISOString();
  const ring = freshPlacement(cluster.shards.map((s) => s.id));
  const shardCache = new Map<string, string>();
  const shardOf = (key: string) => shardCache.get(key) ?? shardCache.set(key, ring.shardFor(key)).get(key)!;
  // One generator per client and one for the nemesis, so each one's choices repeat with the seed
  // whatever the interleaving (the timing itself still varies run to run).
  const clientRandom = Array.from({ length: opts.clients }, (_, c) => rng(opts.seed + 1 + c));
  const random = rng(opts.seed);
  // Clients spread over every router; one whose router stops answering moves to the next.
  const pools = cluster.routers.map((r) => new Pool(r.url, { connections: Math.ceil(opts.clients / cluster.routers.length) + 1 }));
  const scenarioFaults: ScenarioFault[] = [];

  const history: Operation[] = [];
  const unexpected: UnexpectedError[] = [];
  const reasons: Record<string, number> = {};
  const resends: Record<string, number> = {};
  const faults: FaultRecord[] = [];
  const nemesisErrors: string[] = [];

  // Run-scoped stop: the duration elapsed or the caller aborted.
  const stopRun = new AbortController();
  const onAbort = () => stopRun.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) stopRun.abort();
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  // With a cover of faults still to do at durationMs, the nemesis ends the run once it is done (bounded).
  let coverPending = opts.nemesis.enabled && opts.nemesis.coverFirst && opts.scenario === undefined;
  const timer = setTimeout(() => coverPending || stopRun.abort(), opts.durationMs);
  const hardStop = setTimeout(() => stopRun.abort(), opts.durationMs * COVER_OVERTIME_FACTOR);

  // Key slots: `keys` keys in use at any time; a slot moves to a fresh key after maxOpsPerKey.
  const slots = Array.from({ length: opts.keys }, () => ({ gen: 0, ops: 0 }));
  const keysUsed = new Set<string>();
  const slotName = (slot: number) => (opts.workload === 'register' ? String(slot) : `${isCounterSlot(slot) ? 'n' : 'r'}${slot}`);
  const keyFor = (slot: number): string => {
    const s = slots[slot]!;
    if (opts.maxOpsPerKey > 0 && s.ops >= opts.maxOpsPerKey) {
      s.gen += 1;
      s.ops = 0;
    }
    s.ops += 1;
    const key = s.gen === 0 ? `${opts.keyPrefix}-${slotName(slot)}` : `${opts.keyPrefix}-${slotName(slot)}.g${s.gen}`;
    keysUsed.add(key);
    return key;
  };

  let nextId = 0;
  const count = (reason: string) => (reasons[reason] = (reasons[reason] ?? 0) + 1);
  const finish = (op: Operation, answer: Classified, last: Exchange) => {
    op.completeMs = now();
    if ('unexpected' in answer) {
      const status = 'status' in last ? last.status : 0;
      unexpected.push({ client: op.client, key: op.key, kind: op.kind, status, body: 'body' in last ? last.body : undefined, invokeMs: op.invokeMs, completeMs: op.completeMs });
      count(`${op.kind} unexpected ${answer.unexpected}`);
      op.outcome = 'info'; // conservative: it cannot make the checker report a false anomaly
    } else {
      const { reason, ...fields } = answer;
      for (const [field, value] of Object.entries(fields)) if (value !== undefined) Object.assign(op, { [field]: value });
      if (reason !== undefined) count(`${op.kind} ${reason}`);
    }
    history.push(op);
  };

  /** A client's requests go to one router; one that does not answer moves it to the next. */
  const clientIo = (c: number): ClientIo => {
    const random = clientRandom[c]!;
    let n = 0;
    let routerIndex = c % pools.length;
    const send = async (req: HttpRequest): Promise<Exchange> => {
      try {
        const res = await pools[routerIndex]!.request({ ...req, signal: AbortSignal.timeout(opts.requestTimeoutMs) });
        const text = await res.body.text();
        return { status: res.statusCode, body: parseBody(text) };
      } catch (error) {
        routerIndex = (routerIndex + 1) % pools.length;
        return { error };
      }
    };
    return {
      random,
      send,
      sleep: (ms) => sleep(ms, stopRun.signal),
      stopped: () => stopRun.signal.aborted,
      start: (kind, key, fields = {}) => ({ id: (nextId += 1), client: c, key, kind, ...fields, invokeMs: now(), completeMs: 0, outcome: 'info' }),
      finish,
      uniqueValue: () => `c${c}-${(n += 1)}`,
      noteResend: (op, reason) => (resends[`${op.kind} after ${reason}`] = (resends[`${op.kind} after ${reason}`] ?? 0) + 1),
    };
  };

  const client = async (c: number) => {
    const io = clientIo(c);
    const pickSlot = () => Math.floor(io.random() * opts.keys);
    while (!stopRun.signal.aborted) {
      let ops: Operation[];
      if (opts.workload === 'register') ops = await registerStep(io, opts.mix, () => keyFor(pickSlot()));
      else {
        const slot = pickSlot();
        ops = await rmwStep(io, opts.rmw, keyFor(slot), isCounterSlot(slot));
      }
      // A 412 is an answer like any other: no reason to back off.
      if (ops.some((op) => op.outcome !== 'ok' && op.mismatchVersion === undefined)) await sleep(opts.errorBackoffMs, stopRun.signal);
      else if (opts.thinkMs > 0) await sleep(opts.thinkMs, stopRun.signal);
    }
  };

  // A scripted run ends once its scenario has, after the quiet time (or at durationMs at the latest).
  const scenario = async () => {
    try {
      await opts.scenario!({ cluster, now, log: opts.log, signal: stopRun.signal, record: (f) => scenarioFaults.push(f) });
    } catch (err) {
      nemesisErrors.push(`scenario failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
    await sleep(opts.nemesis.finalQuietMs, stopRun.signal);
    stopRun.abort();
  };

  const beside = async () => {
    try {
      await opts.beside?.({ cluster, now, log: opts.log, signal: stopRun.signal, record: (f) => scenarioFaults.push(f) });
    } catch (err) {
      if (!stopRun.signal.aborted) nemesisErrors.push(`beside the nemesis: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  };

  /** The cover is done: a run already past durationMs ends after the quiet time. */
  const endOfCover = async () => {
    coverPending = false;
    if (now() + opts.nemesis.finalQuietMs <= opts.durationMs) return;
    await sleep(opts.nemesis.finalQuietMs, stopRun.signal);
    stopRun.abort();
  };

  // The shards the random nemesis faults: those the run started with (resharding adds and removes others meanwhile).
  const faultable = [...cluster.shards];
  const nemesis = async () => {
    const n = opts.nemesis;
    if (opts.scenario !== undefined) return scenario();
    if (!n.enabled) return;
    const combos = n.kinds.flatMap((kind) => n.roles.map((role) => ({ kind, role })));
    const cover = n.coverFirst ? shuffle(combos, random) : [];
    let paused: string | undefined;
    try {
      await sleep(n.startDelayMs, stopRun.signal);
      while (!stopRun.signal.aborted && faults.length < (n.maxFaults ?? Number.POSITIVE_INFINITY)) {
        if (cover.length === 0 && now() + n.pauseMaxMs + n.finalQuietMs > opts.durationMs) break;
        const { kind, role } = cover.shift() ?? combos[Math.floor(random() * combos.length)]!;
        const shard = faultable[Math.floor(random() * faultable.length)]!;
        const { node, roleSource } = await nodeWithRole(shard, role, n.roleProbeTimeoutMs);
        const proc = cluster.process(node.name);
        const restartsBefore = proc.restarts;
        const startMs = now();
        if (kind === 'kill') {
          proc.signal('SIGKILL');
          opts.log(`${fmtMs(startMs)} kill -9 ${node.name}`);
          // Back = restarted by the supervisor and answering /health (a caller's abort stops waiting).
          const back = await waitUntil(async () => proc.restarts > restartsBefore && (await isHealthy(node.url)), n.recoverTimeoutMs, n.recoverPollMs, opts.signal);
          const endMs = now();
          faults.push({ kind, node: node.name, shard: shard.id, role, roleSource, startMs, endMs, restarts: proc.restarts - restartsBefore, outageMs: 0, recovered: false, firstWriteOkMs: null });
          if (!back) {
            if (opts.signal?.aborted) break;
            nemesisErrors.push(`${node.name} did not answer /health within ${n.recoverTimeoutMs} ms after kill -9${proc.gaveUp ? `: ${proc.gaveUp}` : ''}`);
            break;
          }
          opts.log(`${fmtMs(endMs)} ${node.name} healthy again (${fmtMs(endMs - startMs)} after the kill)`);
        } else {
          const pauseMs = Math.round(n.pauseMinMs + random() * (n.pauseMaxMs - n.pauseMinMs));
          proc.signal('SIGSTOP');
          paused = node.name;
          opts.log(`${fmtMs(startMs)} SIGSTOP ${node.name} for ${pauseMs} ms`);
          await sleep(pauseMs, opts.signal); // only a caller's abort cuts a pause short
          proc.signal('SIGCONT');
          paused = undefined;
          const endMs = now();
          opts.log(`${fmtMs(endMs)} SIGCONT ${node.name}`);
          faults.push({ kind, node: node.name, shard: shard.id, role, roleSource, startMs, endMs, outageMs: 0, recovered: false, firstWriteOkMs: null });
        }
        await sleep(n.settleMs, stopRun.signal);
        if (coverPending && cover.length === 0) await endOfCover();
      }
    } catch (err) {
      nemesisErrors.push(`nemesis failed: ${String(err)}`);
    } finally {
      if (coverPending) await endOfCover();
      if (paused !== undefined) {
        try {
          cluster.process(paused).signal('SIGCONT');
        } catch {
          // not running any more: nothing to resume
        }
      }
    }
  };

  let elapsedMs = 0;
  try {
    const clients = Array.from({ length: opts.clients }, (_, c) => client(c));
    const clientsDone = Promise.all(clients).then(() => {
      elapsedMs = now();
    });
    await Promise.all([clientsDone, nemesis(), beside()]);
  } finally {
    clearTimeout(timer);
    clearTimeout(hardStop);
    stopRun.abort(); // whatever happened, no client or fault outlives the run
    opts.signal?.removeEventListener('abort', onAbort);
    await Promise.all(pools.map((p) => p.close().catch(() => {})));
  }

  const endMs = elapsedMs;
  for (const f of faults) Object.assign(f, writeOutage(f, history, shardOf, endMs));
  for (const f of scenarioFaults) if (f.shard !== undefined) Object.assign(f, writeOutage({ shard: f.shard, startMs: f.startMs }, history, shardOf, endMs));

  const checkStarted = performance.now();
  const result = opts.workload === 'rmw' ? checkRmwHistory(history, opts.checker) : checkHistory(history, opts.checker);
  const check = { ...result, ms: Math.round(performance.now() - checkStarted) };

  const counts = (): OutcomeCounts => ({ ok: 0, fail: 0, info: 0 });
  const byKind: Record<OpKind, OutcomeCounts> = { get: counts(), put: counts(), del: counts(), incr: counts() };
  const total = counts();
  let readsFound = 0;
  const refused = { put: 0, del: 0 };
  for (const op of history) {
    byKind[op.kind][op.outcome] += 1;
    total[op.outcome] += 1;
    if (op.kind === 'get' && op.outcome === 'ok' && op.result !== null) readsFound += 1;
    if (op.mismatchVersion !== undefined && (op.kind === 'put' || op.kind === 'del')) refused[op.kind] += 1;
  }
  const interesting = new Set([...result.anomalies.map((a) => a.key), ...result.undecided, ...unexpected.map((u) => u.key)]);
  const { cluster: _c, signal: _s, log: _l, clusterOptions, ...rest } = opts;
  const { sink: _k, ...clusterOpts } = clusterOptions;
  return {
    seed: opts.seed,
    startedAt,
    elapsedMs: Math.round(elapsedMs),
    options: { ...rest, clusterOptions: clusterOpts },
    aborted: opts.signal?.aborted === true,
    operations: { total: history.length, ...total, byKind, keysUsed: keysUsed.size, readsFound, refused },
    reasons,
    resends,
    faults,
    scenarioFaults,
    nemesisErrors,
    check,
    unexpected,
    history: opts.keepHistory ? history : history.filter((op) => interesting.has(op.key)),
  };
}

/** A JSON body, or its text when it is not JSON. */
function parseBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, pollMs: number, signal?: AbortSignal): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline && signal?.aborted !== true) {
    if (await check()) return true;
    await sleep(pollMs, signal);
  }
  return false;
}

/** The shard's node that reports `role` on /health now; else the node configured for it. */
async function nodeWithRole(shard: ClusterShard, role: FaultRole, timeoutMs: number): Promise<{ node: ClusterNode; roleSource: 'observed' | 'configured' }> {
  const roles = await Promise.all([shard.leader, shard.follower].map((n) => reportedRole(n.url, timeoutMs)));
  const observed = [shard.leader, shard.follower].find((_, i) => roles[i] === role);
  return observed === undefined ? { node: shard[role], roleSource: 'configured' } : { node: observed, roleSource: 'observed' };
}

async function reportedRole(url: string, timeoutMs: number): Promise<string | undefined> {
  try {
    const res = await request(`${url}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.body.json()) as { role?: unknown };
    return res.statusCode === 200 && typeof body.role === 'string' ? body.role : undefined;
  } catch {
    return undefined;
  }
}

export function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// the readable report

export function fmtMs(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

export function formatReport(r: ChaosReport): string {
  const o = r.operations;
  const pct = (x: number) => (o.total === 0 ? '0' : ((100 * x) / o.total).toFixed(1));
  const lines: string[] = [];
  lines.push(`chaos run: ${fmtMs(r.elapsedMs)}, ${r.options.clients} clients, ${r.options.keys} contended keys (${o.keysUsed} used), seed ${r.seed}${r.aborted ? ' (ABORTED)' : ''}`);
  lines.push('');
  lines.push(`operations: ${o.total} (${(o.total / Math.max(1, r.elapsedMs / 1000)).toFixed(0)}/s)  ok ${o.ok} (${pct(o.ok)}%)  fail ${o.fail} (${pct(o.fail)}%)  indeterminate ${o.info} (${pct(o.info)}%)`);
  for (const k of r.options.workload === 'rmw' ? (['get', 'put', 'del', 'incr'] as const) : (['get', 'put', 'del'] as const)) {
    const c = o.byKind[k];
    const found = k === 'get' ? `  (${o.readsFound} found a value)` : k !== 'incr' && r.options.workload === 'rmw' ? `  (${o.refused[k]} refused: 412)` : '';
    lines.push(`  ${k.padEnd(4)} ok ${String(c.ok).padStart(7)}  fail ${String(c.fail).padStart(6)}  indeterminate ${String(c.info).padStart(5)}${found}`);
  }
  const reasons = Object.entries(r.reasons).sort((a, b) => b[1] - a[1]);
  if (reasons.length > 0) lines.push(`  not ok: ${reasons.map(([k, v]) => `${k} x${v}`).join(', ')}`);
  const resends = Object.entries(r.resends).sort((a, b) => b[1] - a[1]);
  if (resends.length > 0) lines.push(`  resent with their Idempotency-Key: ${resends.map(([k, v]) => `${k} x${v}`).join(', ')}`);
  lines.push('');
  lines.push(`faults: ${r.faults.length + r.scenarioFaults.length}`);
  for (const f of r.faults) {
    const who = `${f.node} (${f.role}${f.roleSource === 'configured' ? ' by name' : ''})`.padEnd(30);
    const what = f.kind === 'kill' ? `kill -9 ${who} back after ${fmtMs(f.endMs - f.startMs)}` : `pause   ${who} for ${fmtMs(f.endMs - f.startMs)}`;
    const outage = f.recovered ? `write outage ${fmtMs(f.outageMs)}` : `write outage >= ${fmtMs(f.outageMs)} (NO successful write on ${f.shard} afterwards)`;
    lines.push(`  at ${fmtMs(f.startMs).padStart(8)}  ${what.padEnd(62)} ${outage}`);
  }
  for (const f of r.scenarioFaults) {
    const outage = f.shard === undefined ? '' : f.recovered ? `write outage on ${f.shard} ${fmtMs(f.outageMs ?? 0)}` : `write outage on ${f.shard} >= ${fmtMs(f.outageMs ?? 0)} (NO successful write afterwards)`;
    const figures = f.figures === undefined ? '' : `  ${Object.entries(f.figures).map(([k, v]) => `${k}=${typeof v === 'number' ? Math.round(v) : v}`).join(' ')}`;
    lines.push(`  at ${fmtMs(f.startMs).padStart(8)}  ${f.name.padEnd(50)} for ${fmtMs(f.endMs - f.startMs).padEnd(8)} ${outage}${figures}`);
  }
  for (const e of r.nemesisErrors) lines.push(`  NEMESIS ERROR: ${e}`);
  lines.push('');
  const c = r.check;
  const model = r.options.workload === 'rmw' ? 'counters and compare-and-set, ' : '';
  lines.push(
    `linearizability: ${c.linearizable ? 'OK' : 'VIOLATED'}  (${model}${c.keys} keys, ${c.operations} operations, ${c.indeterminate} indeterminate, checked in ${fmtMs(c.ms)})`,
  );
  lines.push(`  anomalies: ${c.anomalies.length}   undecided keys: ${c.undecided.length}${c.undecided.length > 0 ? ` (${c.undecided.join(', ')})` : ''}`);
  for (const a of c.anomalies.slice(0, 10)) {
    lines.push(`  - ${a.key}: ${a.message}`);
    for (const op of a.operations.slice(0, 12)) lines.push(`      ${describeOp(op)}`);
    if (a.operations.length > 12) lines.push(`      ... ${a.operations.length - 12} more`);
  }
  lines.push(`unexpected errors: ${r.unexpected.length}`);
  for (const u of r.unexpected.slice(0, 10)) lines.push(`  - client ${u.client} ${u.kind} ${u.key} at ${fmtMs(u.invokeMs)}: HTTP ${u.status} ${JSON.stringify(u.body).slice(0, 200)}`);
  if (r.unexpected.length > 10) lines.push(`  ... ${r.unexpected.length - 10} more`);
  return lines.join('\n');
}

export function describeOp(op: Operation): string {
  const arg = op.kind === 'put' ? ` ${op.value}` : op.kind === 'incr' ? ` by ${op.by}` : '';
  const condition = op.ifAbsent === true ? ' if absent' : op.ifVersion === undefined ? '' : ` if version ${op.ifVersion} (${op.expectedValue})`;
  const version = op.version === undefined ? '' : ` @${op.version}`;
  const res =
    op.mismatchVersion !== undefined ? ` -> 412, version ${op.mismatchVersion ?? 'absent'}`
    : op.outcome !== 'ok' ? op.outcome
    : op.kind === 'get' || op.kind === 'incr' ? ` -> ${op.result === null ? 'not found' : op.result}${version}`
    : op.kind === 'del' ? ` -> existed=${op.existed}${version}`
    : ` -> ok${version}`;
  return `#${op.id ?? '?'} c${op.client} ${op.kind}${arg}${condition} [${op.invokeMs.toFixed(1)}, ${op.completeMs.toFixed(1)}] ${res}`;
}

/** True when the run found nothing wrong: no anomaly, no unexpected error, no nemesis error. */
export function chaosPassed(r: ChaosReport): boolean {
  return r.check.anomalies.length === 0 && r.unexpected.length === 0 && r.nemesisErrors.length === 0;
}
