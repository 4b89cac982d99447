// Linearizability under faults, against real processes: 8 clients send a random get/put/delete
// mix through the router over 12 contended keys for ~22 s while a nemesis kills (kill -9, the
// supervisor restarts it) or pauses (SIGSTOP for 1-4 s) one shard node at a time, covering
// kill and pause of both a leader and a follower (whichever node has that role at the moment, as
// its /health reports, so the coverage holds once roles move on failover). The history must be linearizable,
// every answer must be one the API documents, and every fault must be followed by a successful
// write on its shard. Write outages are measured and printed, not yet bounded (see below).
import { formatReport, runChaos, type ChaosReport } from '@shardkv/tools/dist/chaos';
import { expectClean, startCluster, type TestCluster } from './helpers';

const FAST_ENV = { LOG_LEVEL: 'info', HEARTBEAT_INTERVAL_MS: '100', RETRY_BACKOFF_MS: '100', REPLICATION_TIMEOUT_MS: '1000' };

const DURATION_MS = 22_000;
const CLIENTS = 8;
const KEYS = 12;
/** The run must do real work across the faults, or a clean check proves nothing. */
const MIN_OK_OPERATIONS = 1000;
const MIN_OK_WRITES = 300;
const MIN_READS_FOUND = 300;

// The target is a write outage of at most 2 s per fault with the default health
// settings (measured: ~1.5 s for a paused leader, ~0.6 s for a killed one, ~1 s for a paused
// follower). The bound here leaves room for a loaded 2-core CI machine.
const WRITE_OUTAGE_MAX_MS = 3000;

let cluster: TestCluster | undefined;

afterAll(async () => {
  if (cluster !== undefined) await cluster.stop();
}, 30_000);

test('random kills and pauses of leaders and followers under contended load: the history is linearizable', async () => {
  cluster = await startCluster({ env: FAST_ENV });
  let report: ChaosReport;
  try {
    report = await runChaos({
      cluster,
      durationMs: DURATION_MS,
      clients: CLIENTS,
      keys: KEYS,
      nemesis: { startDelayMs: 1000, settleMs: 1200, pauseMinMs: 1000, pauseMaxMs: 4000, finalQuietMs: 3000, coverFirst: true },
    });
  } catch (err) {
    throw new Error(`${String(err)}\nlog tail:\n${cluster.logs.slice(-40).join('\n')}`);
  }
  console.log(formatReport(report));
  const failing = report.check.anomalies.length + report.unexpected.length + report.nemesisErrors.length + report.check.undecided.length;
  if (failing > 0) {
    const warnings = cluster.logs.filter((l) => /"level":(4|5|6)0/.test(l)).slice(-30);
    console.log(`history of the failing keys:\n${JSON.stringify(report.history)}\nlast node warnings/errors:\n${warnings.join('\n')}\nlog tail:\n${cluster.logs.slice(-20).join('\n')}`);
  }

  expectClean(report);

  // Not vacuous: real traffic with reads that saw values, writes that took effect, and faults of
  // every kind on both roles.
  expect(report.operations.ok).toBeGreaterThanOrEqual(MIN_OK_OPERATIONS);
  expect(report.operations.byKind.put.ok + report.operations.byKind.del.ok).toBeGreaterThanOrEqual(MIN_OK_WRITES);
  expect(report.operations.readsFound).toBeGreaterThanOrEqual(MIN_READS_FOUND);
  expect(report.faults.length).toBeGreaterThanOrEqual(4);
  expect(new Set(report.faults.map((f) => `${f.kind} ${f.role}`))).toEqual(new Set(['kill leader', 'kill follower', 'pause leader', 'pause follower']));
  for (const f of report.faults.filter((x) => x.kind === 'kill')) expect({ node: f.node, restarts: f.restarts }).toEqual({ node: f.node, restarts: 1 });

  // Every fault is followed by a successful write on its shard before the end.
  expect(report.faults.filter((f) => !f.recovered)).toEqual([]);
  expect(report.faults.filter((f) => f.outageMs > WRITE_OUTAGE_MAX_MS).map((f) => ({ fault: `${f.kind} ${f.node} (${f.role})`, outageMs: f.outageMs }))).toEqual([]);
}, 120_000);
