// Online resharding, proven against real processes: a shard added and removed while clients
// write and read every key through the router, with a source leader killed mid-copy and the
// coordinator killed mid-cutover. Each run's whole history must be linearizable, clients must
// see no error from the migration itself, and afterwards every slot has one owner, both nodes
// of every shard serve exactly the map's slots and hold the same state, nothing preloaded is
// lost or duplicated, and the per-shard key counts add up.
import { KvClient } from '@shardkv/client';
import { SLOT_COUNT } from '@shardkv/common';
import { formatReport, runChaos, type ChaosReport, type ScenarioContext, type ScenarioFault } from '@shardkv/tools/dist/chaos';
import { addOnline, placementReport, removeOnline, strayKeys, type PlacementReport } from '@shardkv/tools/dist/reshard-faults';
import { expectClean, http, startCluster, type TestCluster } from './helpers';

const PRELOADED = 20_000;
const preKey = (i: number) => `pre:${i}`;
const preValue = (i: number) => `value-${i}-${'x'.repeat(40)}`;
/** The coordinator kill needs a window: the cutover holds the slots frozen this much longer (a test failpoint). */
const FROZEN_PAUSE_MS = 700;

let cluster: TestCluster | undefined;
let client: KvClient | undefined;
let runNo = 0;
/** Every key any run's clients used: the key counts must add up over all of them. */
const touched = new Set<string>();

beforeAll(async () => {
  cluster = await startCluster({ env: { REPLICATION_TIMEOUT_MS: '1000', MIGRATION_FAILPOINT_FROZEN_PAUSE_MS: String(FROZEN_PAUSE_MS), MIGRATION_FREEZE_MAX_MS: '3000', CUTOVER_WAIT_MS: '5000' } });
  client = new KvClient(cluster.router.url, { timeoutMs: 10_000 });
  for (let i = 0; i < PRELOADED; i += 1000) await client.mput(Array.from({ length: 1000 }, (_, j) => ({ key: preKey(i + j), value: preValue(i + j) })));
}, 120_000);

afterAll(async () => {
  await client?.close();
  await cluster?.stop();
}, 60_000);

/** Clients on contended keys while `steps` run once; the report, with each step's figures. */
async function underClients(steps: (ctx: ScenarioContext) => Promise<void>): Promise<ChaosReport> {
  let report: ChaosReport;
  try {
    report = await runChaos({ cluster: cluster!, durationMs: 150_000, clients: 6, keys: 10, keyPrefix: `rs${(runNo += 1)}`, keepHistory: true, nemesis: { finalQuietMs: 1000 }, scenario: steps });
  } catch (err) {
    throw new Error(`${String(err)}\nlog tail:\n${cluster!.logs.slice(-60).join('\n')}`);
  }
  // Counted before any check can fail, so a failed test does not throw the next one's key count off.
  for (const op of report.history) touched.add(op.key);
  if (report.check.anomalies.length + report.unexpected.length + report.nemesisErrors.length > 0) console.log(`${formatReport(report)}\nlog tail:\n${cluster!.logs.filter((l) => /"level":(4|5|6)0/.test(l)).slice(-40).join('\n')}`);
  expectClean(report);
  expect(report.operations.ok).toBeGreaterThan(100);
  // The router rides every cutover out: no request fails because its slot was moving.
  expect(Object.keys(report.reasons).filter((r) => /migrating|wrong_shard/.test(r))).toEqual([]);
  return report;
}

/** Every preloaded key has its value, every key the clients left is found once, and the counts add up. */
async function expectDataIntact(placement: PlacementReport): Promise<void> {
  for (let i = 0; i < PRELOADED; i += 1000) {
    const keys = Array.from({ length: 1000 }, (_, j) => preKey(i + j));
    const { results } = await client!.mget(keys);
    expect(results.filter((r, j) => !r.ok || (r as { value?: string }).value !== preValue(i + j)).map((r) => r.key)).toEqual([]);
  }
  // No shard holds a key of a slot it does not own (left by an abandoned copy or a missed purge).
  expect((await strayKeys(cluster!.router.url, cluster!.token)).slice(0, 20)).toEqual([]);
  const all = [...touched];
  let present = 0;
  for (let i = 0; i < all.length; i += 1000) present += (await client!.mget(all.slice(i, i + 1000))).results.filter((r) => r.ok).length;
  expect(placement.totalKeys).toBe(PRELOADED + present);
}

function expectPlacement(p: PlacementReport, shardIds: string[]): void {
  expect(p.migration).toBe(false);
  expect(p.shards.map((s) => s.id)).toEqual(shardIds);
  expect(p.shards.reduce((n, s) => n + s.slots, 0)).toBe(SLOT_COUNT);
  for (const s of p.shards) {
    // Both nodes serve exactly the map's slots for their shard, at the map's version, with equal state.
    expect({ id: s.id, served: s.slotsServed, versions: s.nodeMapVersions, same: s.digestsEqual }).toEqual({ id: s.id, served: [s.slots, s.slots], versions: [p.mapVersion, p.mapVersion], same: true });
  }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('online resharding under concurrent clients', () => {
  test('add a 4th shard, then remove it: ~1/4 of the slots and keys move to it and back, linearizable, no client error', async () => {
    const steps: ScenarioFault[] = [];
    let during: PlacementReport | undefined;
    await underClients(async (ctx) => {
      await pause(1000);
      const add = await addOnline(cluster!, ctx);
      steps.push(add);
      ctx.record(add);
      during = await placementReport(cluster!.router.url);
      await pause(1000);
      const remove = await removeOnline(cluster!, add.figures!['shard'] as string, ctx);
      steps.push(remove);
      ctx.record(remove);
    });
    expect(steps.map((s) => s.kind)).toEqual(['reshardAdd', 'reshardRemove']);
    const moved = Number(steps[0]!.figures!['slotsMoving']) / SLOT_COUNT;
    expect(Math.abs(moved - 1 / 4)).toBeLessThan(0.03);
    expectPlacement(during!, ['shard-0', 'shard-1', 'shard-2', 'shard-3']);
    const newShare = during!.shards[3]!.keys[0] / during!.totalKeys;
    expect(Math.abs(newShare - 1 / 4)).toBeLessThan(0.05);
    const after = await placementReport(cluster!.router.url);
    expectPlacement(after, ['shard-0', 'shard-1', 'shard-2']);
    await expectDataIntact(after);
  }, 180_000);

  // Where the kill lands decides the path, and both are right: in the source's snapshot or tail,
  // the copy step fails and starts again from the promoted follower; after that source's copy
  // (others still copying), the next tail round reads the promoted follower's log, which holds
  // every committed entry. Either way the migration cannot end without that source answering.
  test('kill -9 of a source leader mid-copy: the migration rides it out (copying again, or tailing the promoted follower) and the shard is added', async () => {
    let added: ScenarioFault | undefined;
    let killed: { name: string; restartsBefore: number } | undefined;
    const stepFailures = () => cluster!.logs.filter((l) => /migration step failed/.test(l)).length;
    let stepFailuresBefore = 0;
    await underClients(async (ctx) => {
      await pause(500);
      stepFailuresBefore = stepFailures();
      const restarts = new Map(cluster!.nodes.map((n) => [n.name, cluster!.process(n.name).restarts]));
      added = await addOnline(cluster!, ctx, { at: 'copying', fault: 'killSourceLeader' });
      ctx.record(added);
      const name = added.figures!['faulted'] as string;
      killed = { name, restartsBefore: restarts.get(name)! };
    });
    // The kill happened during the migration, which ended after it.
    expect(cluster!.process(killed!.name).restarts).toBeGreaterThan(killed!.restartsBefore);
    expect(Number(added!.figures!['faultAtMs'])).toBeLessThan(added!.endMs);
    const path = stepFailures() > stepFailuresBefore ? 'copy step failed and ran again' : 'tailed the promoted follower';
    console.log(`source leader ${killed!.name} killed mid-copy: ${path}`);
    const after = await placementReport(cluster!.router.url);
    expectPlacement(after, ['shard-0', 'shard-1', 'shard-2', added!.figures!['shard'] as string]);
    await expectDataIntact(after);
  }, 180_000);

  test('kill -9 of the coordinator mid-cutover (slots frozen): the restarted one thaws them, copies again, and the shard is removed', async () => {
    const id = cluster!.shards[cluster!.shards.length - 1]!.id;
    let removed: ScenarioFault | undefined;
    await underClients(async (ctx) => {
      await pause(500);
      removed = await removeOnline(cluster!, id, ctx, { at: 'frozen', fault: 'killCoordinator' });
      ctx.record(removed);
    });
    expect(removed!.figures!['faulted']).toBe(cluster!.router.name);
    // The killed coordinator had frozen the slots; its successor logged the thaw.
    expect(cluster!.logs.some((l) => /thaw: found frozen/.test(l))).toBe(true);
    const after = await placementReport(cluster!.router.url);
    expectPlacement(after, ['shard-0', 'shard-1', 'shard-2']);
    await expectDataIntact(after);
  }, 180_000);

  test('a leader refuses migration writes it must not take: an abandoned copy\'s import, a key it is not importing, a purge of its own slots', async () => {
    const leader = cluster!.shards[0]!.leader.url;
    const auth = { authorization: `Bearer ${cluster!.token}` };
    const before = await http('GET', `${leader}/status`);
    const stale = await http('POST', `${leader}/internal/import`, { copy: 'abandoned', ops: [{ op: 'put', key: 'ghost', value: 'x' }] }, auth);
    expect({ status: stale.status, code: stale.body.error?.code }).toEqual({ status: 409, code: 'wrong_shard' });
    const own = await http('POST', `${leader}/internal/purge`, { slots: [[0, 4096]] }, auth);
    expect({ status: own.status, code: own.body.error?.code }).toEqual({ status: 400, code: 'bad_request' });
    // A copy it was told of, but a key of a slot it is not importing (no migration runs).
    const map = (await http('GET', `${cluster!.router.url}/cluster/map`)).body as { slots: Array<[number, number, string]> };
    const [from, to] = map.slots.find(([, , owner]) => owner !== 'shard-0')!;
    expect((await http('POST', `${leader}/internal/purge`, { slots: [[from, to]], copy: 'probe' }, auth)).status).toBe(200);
    const notIncoming = await http('POST', `${leader}/internal/import`, { copy: 'probe', ops: [{ op: 'put', key: 'ghost', value: 'x' }] }, auth);
    expect({ status: notIncoming.status, code: notIncoming.body.error?.code }).toEqual({ status: 409, code: 'wrong_shard' });
    const after = await http('GET', `${leader}/status`);
    expect({ seq: after.body.seq, keys: after.body.keys }).toEqual({ seq: before.body.seq, keys: before.body.keys });
  });
});
