// No single point of failure, proven against real processes: two routers on a control plane in a
// real 3-member etcd, every process on its own loopback address, faults made with kill -9,
// SIGSTOP and iptables partitions. Clients write and read through both routers during each
// fault; the whole history must be linearizable (so no acknowledged write is lost and no read is
// stale), every answer one the API documents, and the cluster must settle afterwards.
import { appendFileSync } from 'node:fs';
import { formatReport, runChaos, type ChaosReport, type ScenarioFault } from '@shardkv/tools/dist/chaos';
import { HA_FAULTS, startHaEnv, type HaEnv, type HaFault } from '@shardkv/tools/dist/ha-faults';
import { KvClient } from '@shardkv/client';
import { expectClean } from './helpers';

const ENV = { LOG_LEVEL: 'info', HEARTBEAT_INTERVAL_MS: '100', RETRY_BACKOFF_MS: '100', REPLICATION_TIMEOUT_MS: '1000', COORDINATOR_LEASE_TTL_S: '2' };
/** The coordinator lease is 2 s: a pause this long outlives it. */
const PAUSE_PAST_LEASE_MS = 4000;
/** Not vacuous: each run must do real work across its fault. */
const MIN_OK_OPERATIONS = 200;

let env: HaEnv | undefined;
let runNo = 0;
const logs: string[] = [];

let starting: Promise<HaEnv> | undefined;

beforeAll(async () => {
  starting = startHaEnv({
    env: ENV,
    restart: { backoffMinMs: 100, backoffMaxMs: 1000, stableAfterMs: 5000 },
    sink: (name, line) => {
      // SHARDKV_TEST_LOG=<file> keeps every process's log lines, for a failure's post-mortem.
      if (process.env.SHARDKV_TEST_LOG !== undefined) appendFileSync(process.env.SHARDKV_TEST_LOG, `${name} ${line}\n`);
      logs.push(`${name} ${line}`);
      if (logs.length > 3000) logs.shift();
    },
  });
  env = await starting;
}, 120_000);

afterAll(async () => {
  // Also when set-up timed out: what it started is stopped once it has finished starting.
  const started = env ?? (await starting?.catch(() => undefined));
  await started?.stop();
}, 90_000);

/** Runs clients through both routers while `fault` happens once, and checks the history. */
async function underFault(fault: HaFault, o: { holdMs?: number; shard?: number; keepHistory?: boolean } = {}): Promise<{ report: ChaosReport; fault: ScenarioFault }> {
  const e = env!;
  let report: ChaosReport;
  try {
    report = await runChaos({
      cluster: e.cluster,
      durationMs: 60_000,
      clients: 6,
      keys: 10,
      // Fresh keys per run: values written by an earlier run are not in this run's history.
      keyPrefix: `ha${(runNo += 1)}`,
      keepHistory: o.keepHistory ?? false,
      nemesis: { finalQuietMs: 1500 },
      scenario: async (ctx) => {
        await new Promise((r) => setTimeout(r, 1000));
        ctx.record(await fault(e, ctx, { holdMs: o.holdMs ?? 2000, pauseMs: PAUSE_PAST_LEASE_MS, shard: o.shard ?? 0 }));
      },
    });
  } catch (err) {
    throw new Error(`${String(err)}\nlog tail:\n${logs.slice(-60).join('\n')}`);
  }
  const failing = report.check.anomalies.length + report.unexpected.length + report.nemesisErrors.length + report.check.undecided.length;
  if (failing > 0) console.log(`${formatReport(report)}\nlog tail:\n${logs.filter((l) => /"level":(4|5|6)0/.test(l)).slice(-40).join('\n')}`);
  expectClean(report);
  expect(report.operations.ok).toBeGreaterThanOrEqual(MIN_OK_OPERATIONS);
  expect(report.scenarioFaults).toHaveLength(1);
  console.log(formatReport(report).split('\n').filter((l) => /faults|at |operations|linearizability|not ok/.test(l)).join('\n'));
  return { report, fault: report.scenarioFaults[0]! };
}

describe('no single point of failure (etcd control plane, two routers)', () => {
  test('kill -9 of the coordinator router: the other router takes over and coordinates', async () => {
    const { fault } = await underFault(HA_FAULTS.killCoordinator);
    const f = fault.figures!;
    expect(f['newCoordinator']).not.toBe(f['killed']);
    expect(Number(f['generationAfter'])).toBeGreaterThan(Number(f['generationBefore']));
    expect(Number(f['takeoverMs'])).toBeLessThan(10_000);
  }, 120_000);

  test('SIGSTOP of the coordinator past its lease: another router is elected, the resumed one steps down, and nodes refuse its generation', async () => {
    const { fault } = await underFault(HA_FAULTS.pauseCoordinator);
    expect(Number(fault.figures!['generationAfter'])).toBeGreaterThan(Number(fault.figures!['generationBefore']));
    expect(fault.figures!['oldGenerationRefusedWith']).toBe('409 stale_coordinator');
  }, 120_000);

  test('a leader cut off from the coordinator but not from its follower is replaced by it', async () => {
    const { fault } = await underFault(HA_FAULTS.partitionLeaderFromCoordinator, { shard: 1 });
    expect(Number(fault.figures!['promotedMs'])).toBeLessThan(10_000);
    expect(fault.recovered).toBe(true);
  }, 120_000);

  test('the leader <-> follower link cut: the leader commits alone, and the follower rejoins when healed', async () => {
    const { fault } = await underFault(HA_FAULTS.partitionLeaderFollower, { shard: 2 });
    const f = fault.figures!;
    // The cut was real: the control plane took the follower out of the in-sync set (a new epoch), same leader.
    expect({ inSync: f['inSyncDuring'], sameLeader: f['sameLeader'] }).toEqual({ inSync: false, sameLeader: true });
    expect(Number(f['epochDuring'])).toBeGreaterThan(Number(f['epochBefore']));
    expect(fault.recovered).toBe(true);
  }, 120_000);

  test('a router with a stale map (cut from etcd) after a failover made through the other router still serves correctly', async () => {
    const { fault } = await underFault(HA_FAULTS.staleRouterAfterFailover, { shard: 0 });
    const f = fault.figures!;
    expect(f['failover']).toBe('200');
    expect(Number(f['staleEpoch'])).toBeLessThan(Number(f['currentEpoch']));
    expect(f['throughStaleRouter']).toBe('put 200 get 200');
    expect(fault.recovered).toBe(true);
  }, 120_000);

  test('a leader isolated from its coordinator and follower but still reached by a stale router: the follower is promoted and no read is stale', async () => {
    const { fault } = await underFault(HA_FAULTS.isolatedLeaderStaleRouter, { shard: 1 });
    expect(Number(fault.figures!['promotedMs'])).toBeLessThan(10_000);
    expect(fault.recovered).toBe(true);
  }, 120_000);

  test('the typed client given both routers keeps working while one of them is down, writes included', async () => {
    const e = env!;
    const [first, second] = e.cluster.routers;
    const client = new KvClient([first!.url, second!.url], { timeoutMs: 5000 });
    const proc = e.cluster.process(first!.name);
    try {
      await client.put('two-routers', 'before');
      await proc.stop(); // down for good until started again: its port refuses connections
      const seq = (await client.put('two-routers', 'while-one-is-down')).seq;
      expect({ seq: typeof seq, value: await client.get('two-routers'), via: client.url }).toEqual({ seq: 'number', value: 'while-one-is-down', via: second!.url });
    } finally {
      proc.start();
      await client.close();
    }
    await e.cluster.waitHealthy(20_000, [first!]);
  }, 60_000);

  test('etcd quorum lost: routers keep serving on their map, and nothing is promoted meanwhile or when it returns', async () => {
    const holdMs = 3000;
    const { report, fault } = await underFault(HA_FAULTS.etcdQuorumLoss, { holdMs, keepHistory: true });
    const f = fault.figures!;
    expect({ during: f['leadersDuring'], after: f['leadersAfter'] }).toEqual({ during: f['leadersBefore'], after: f['leadersBefore'] });
    // Writes went on while etcd had no quorum (invoked and answered inside the outage).
    const during = report.history.filter((op) => op.kind !== 'get' && op.outcome === 'ok' && op.invokeMs > fault.startMs + 500 && op.completeMs < fault.startMs + holdMs);
    expect(during.length).toBeGreaterThan(20);
  }, 120_000);
});
