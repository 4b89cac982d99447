// Counters and compare-and-set under faults, against real processes: 8 clients run the chaos
// harness's rmw workload through the router (tools/src/chaos-workloads.ts): increments on three
// counters, and on three registers a read then a compare-and-set at the version read (or a put
// if absent, or a delete at that version), plain puts, deletes and gets, every write resent with
// its Idempotency-Key while its outcome is unknown. Meanwhile the nemesis kills (kill -9, the
// supervisor restarts it) and pauses (SIGSTOP) a leader and a follower, one at a time. The whole
// history must be linearizable for the read-modify-write checker (tools/src/linearizability-rmw.ts:
// no increment lost or applied twice, no two compare-and-sets won on one version, no stale read,
// no 412 that contradicts the state, versions one per write), and every answer a documented one.
// Afterwards both nodes of each key's shard hold the same value, which the linearization allows
// (the final reads are checked with the history), and each counter lies between its acknowledged
// increments and those plus the ones whose outcome stayed unknown.
import { freshPlacement } from '@shardkv/router/dist/placement';
import { formatReport, runChaos, type ChaosReport } from '@shardkv/tools/dist/chaos';
import { isCounterSlot } from '@shardkv/tools/dist/chaos-workloads';
import type { Operation } from '@shardkv/tools/dist/linearizability';
import { checkRmwHistory } from '@shardkv/tools/dist/linearizability-rmw';
import { expectClean, http, startCluster, type TestCluster } from './helpers';

const FAST_ENV = { LOG_LEVEL: 'info', HEARTBEAT_INTERVAL_MS: '100', RETRY_BACKOFF_MS: '100', REPLICATION_TIMEOUT_MS: '1000' };
const DURATION_MS = 15_000;
const CLIENTS = 8;
/** Even slots are counters, odd ones registers: 3 of each. */
const KEYS = 6;
/** The run must do real work across the faults, or a clean check proves nothing. */
const MIN_OK_OPERATIONS = 1000;
const MIN_OK_INCREMENTS = 200;
const MIN_OK_CONDITIONAL_WRITES = 60;
const MIN_REFUSALS = 10;
/** How long the nodes of a shard may take to agree once the run is over. */
const CONVERGE_TIMEOUT_MS = 15_000;
const CONVERGE_POLL_MS = 200;

let cluster: TestCluster | undefined;
afterAll(async () => {
  await cluster?.stop();
}, 30_000);

const slotKey = (prefix: string, slot: number) => `${prefix}-${isCounterSlot(slot) ? 'n' : 'r'}${slot}`;

/**
 * A key prefix whose counters lie on every shard, and whose registers too, so that every fault hits
 * both kinds. Placement is a pure function of the shard ids, so the choice is the same every run.
 */
function prefixOnEveryShard(shardIds: string[]): string {
  const placement = freshPlacement(shardIds);
  for (let i = 0; i < 10_000; i += 1) {
    const prefix = `cf${i}`;
    const shardsOf = (counter: boolean) => new Set([...Array(KEYS).keys()].filter((s) => isCounterSlot(s) === counter).map((s) => placement.shardFor(slotKey(prefix, s))));
    if (shardsOf(true).size === shardIds.length && shardsOf(false).size === shardIds.length) return prefix;
  }
  throw new Error('no key prefix spreads the keys over every shard');
}

/** Each key's value as both nodes of its shard hold it (null: absent), once they agree. */
async function convergedValue(c: TestCluster, key: string, shardId: string): Promise<string | null> {
  const shard = c.shards.find((s) => s.id === shardId)!;
  const deadline = Date.now() + CONVERGE_TIMEOUT_MS;
  for (;;) {
    const answers = await Promise.all([shard.leader, shard.follower].map((n) => http('GET', `${n.url}/get?key=${encodeURIComponent(key)}`).catch(() => undefined)));
    const values = answers.map((a) => (a?.status === 200 ? (a.body.value as string) : a?.status === 404 ? null : undefined));
    if (values[0] !== undefined && values[0] === values[1]) return values[0];
    if (Date.now() > deadline) throw new Error(`${key}: the nodes of ${shardId} do not agree: ${JSON.stringify(values)}`);
    await new Promise((r) => setTimeout(r, CONVERGE_POLL_MS));
  }
}

/** The final state through the router, as operations after the whole history (a read of each key). */
async function finalReads(c: TestCluster, keys: string[], lastMs: number): Promise<Operation[]> {
  const reads: Operation[] = [];
  for (const key of keys) {
    const invokeMs = lastMs + 1;
    const res = await http('GET', `${c.router.url}/get?key=${encodeURIComponent(key)}`);
    if (res.status !== 200 && res.status !== 404) throw new Error(`final read of ${key}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    const found = res.status === 200;
    reads.push({ id: -1 - reads.length, client: -1, key, kind: 'get', invokeMs, completeMs: invokeMs, outcome: 'ok', result: found ? res.body.value : null, ...(found ? { version: res.body.version } : {}) });
  }
  return reads;
}

/** A counter's bounds from its history: acknowledged increments, and those plus the indeterminate ones. */
function counterBounds(history: readonly Operation[], key: string): { acked: number; unknown: number } {
  const incrs = history.filter((op) => op.key === key && op.kind === 'incr');
  const sum = (ops: Operation[]) => ops.reduce((n, op) => n + op.by!, 0);
  return { acked: sum(incrs.filter((op) => op.outcome === 'ok')), unknown: sum(incrs.filter((op) => op.outcome === 'info')) };
}

test('kills and pauses of leaders and followers under counters and compare-and-set: the history is linearizable', async () => {
  cluster = await startCluster({ env: FAST_ENV });
  const keyPrefix = prefixOnEveryShard(cluster.shards.map((s) => s.id));
  let report: ChaosReport;
  try {
    report = await runChaos({
      cluster,
      workload: 'rmw',
      durationMs: DURATION_MS,
      clients: CLIENTS,
      keys: KEYS,
      keyPrefix,
      // One key per slot for the whole run (no rotation), so that each final value sums the whole history.
      maxOpsPerKey: 0,
      keepHistory: true,
      nemesis: { kinds: ['kill', 'pause'], roles: ['leader', 'follower'], startDelayMs: 1000, settleMs: 1000, pauseMinMs: 1000, pauseMaxMs: 1500, finalQuietMs: 2000, coverFirst: true },
    });
  } catch (err) {
    throw new Error(`${String(err)}\nlog tail:\n${cluster.logs.slice(-40).join('\n')}`);
  }
  console.log(formatReport(report));
  const failing = report.check.anomalies.length + report.unexpected.length + report.nemesisErrors.length + report.check.undecided.length;
  if (failing > 0) console.log(`last node warnings/errors:\n${cluster.logs.filter((l) => /"level":(4|5|6)0/.test(l)).slice(-30).join('\n')}`);
  expectClean(report);

  // Not vacuous: real increments, compare-and-sets won and lost, and faults of every kind on both roles.
  const ops = report.history;
  expect(report.operations.ok).toBeGreaterThanOrEqual(MIN_OK_OPERATIONS);
  expect(report.operations.byKind.incr.ok).toBeGreaterThanOrEqual(MIN_OK_INCREMENTS);
  expect(ops.filter((op) => op.outcome === 'ok' && (op.ifVersion !== undefined || op.ifAbsent === true)).length).toBeGreaterThanOrEqual(MIN_OK_CONDITIONAL_WRITES);
  expect(report.operations.refused.put + report.operations.refused.del).toBeGreaterThanOrEqual(MIN_REFUSALS);
  expect(new Set(report.faults.map((f) => `${f.kind} ${f.role}`))).toEqual(new Set(['kill leader', 'kill follower', 'pause leader', 'pause follower']));
  for (const f of report.faults.filter((x) => x.kind === 'kill')) expect({ node: f.node, restarts: f.restarts }).toEqual({ node: f.node, restarts: 1 });
  expect(report.faults.filter((f) => !f.recovered)).toEqual([]);
  // The faults reached the clients: some requests failed, timed out or were resent.
  const hurt = report.operations.fail - report.operations.refused.put - report.operations.refused.del + report.operations.info + Object.values(report.resends).reduce((n, v) => n + v, 0);
  expect(hurt).toBeGreaterThan(0);

  // Afterwards: both nodes agree on every key, and the router's final reads fit the linearization.
  const placement = freshPlacement(cluster.shards.map((s) => s.id));
  const keys = [...new Set(ops.map((op) => op.key))];
  const finals = await finalReads(cluster, keys, Math.max(...ops.map((op) => op.completeMs)));
  for (const read of finals) expect({ key: read.key, nodes: await convergedValue(cluster, read.key, placement.shardFor(read.key)) }).toEqual({ key: read.key, nodes: read.result });
  const withFinals = checkRmwHistory([...ops, ...finals]);
  expect({ anomalies: withFinals.anomalies, undecided: withFinals.undecided }).toEqual({ anomalies: [], undecided: [] });

  // The counters' bounds, independently of the checker: nothing acknowledged lost, nothing applied twice.
  const counters = finals.filter((read) => /-n\d+$/.test(read.key));
  expect(counters.length).toBe(3);
  for (const read of counters) {
    const { acked, unknown } = counterBounds(ops, read.key);
    const final = Number(read.result ?? '0');
    console.log(`${read.key}: final ${final}, acknowledged ${acked}, unknown ${unknown}`);
    expect({ key: read.key, atLeastAcked: final >= acked, atMostAckedPlusUnknown: final <= acked + unknown }).toEqual({ key: read.key, atLeastAcked: true, atMostAckedPlusUnknown: true });
  }
}, 120_000);
