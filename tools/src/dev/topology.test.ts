import { describeMigration } from './reshard';
import { parseTopology, planReload, withoutUnfinished, type Topology } from './topology';

const shard = (id: string, inMap = true) => ({ id, leaderPort: 5001 + Number(id.slice(6)), followerPort: 6001 + Number(id.slice(6)), inMap });
const topology = (...shards: ReturnType<typeof shard>[]): Topology => ({ version: 1, shards });

test('a reload starts the listed pairs not running, stops the running ones not listed, and flips map flags', () => {
  // Proves: the supervisor's reload is a pure diff of what runs against the file.
  const running = [{ id: 'shard-0', inMap: true }, { id: 'shard-1', inMap: true }, { id: 'shard-3', inMap: false }];
  const plan = planReload(running, topology(shard('shard-0'), shard('shard-3', true), shard('shard-4', false)));
  expect(plan).toEqual({ stop: ['shard-1'], start: [shard('shard-4', false)], inMap: [{ id: 'shard-3', inMap: true }] });
  expect(planReload(running, topology(shard('shard-0'), shard('shard-1'), shard('shard-3', false)))).toEqual({ stop: [], start: [], inMap: [] });
});

test('a restart leaves out a pair whose shard:add did not finish', () => {
  // Proves: only shards the router's map holds are started (a pair outside it would wait in standby forever).
  const { topology: kept, dropped } = withoutUnfinished(topology(shard('shard-0'), shard('shard-3', false)));
  expect(kept.shards.map((s) => s.id)).toEqual(['shard-0']);
  expect(dropped.map((s) => s.id)).toEqual(['shard-3']);
});

test.each<[string, string, RegExp]>([
  ['not JSON', '{', /not JSON/],
  ['another version', '{"version":2,"shards":[]}', /expected \{"version":1/],
  ['a shard without ports', '{"version":1,"shards":[{"id":"shard-0","inMap":true}]}', /malformed shard entry/],
  ['a shard listed twice', JSON.stringify(topology(shard('shard-0'), shard('shard-0'))), /shard-0 is listed twice/],
])('the topology file is refused when it is %s', (_what, text, expected) => {
  expect(() => parseTopology(text)).toThrow(expected);
});

test('a migration is printed as one progress line', () => {
  const line = describeMigration({
    id: 'm1', kind: 'add', shard: 'shard-3', state: 'copying', slotsMoving: 1024,
    moves: [{ source: 'shard-0', target: 'shard-3', slots: 342 }, { source: 'shard-1', target: 'shard-3', slots: 341 }],
    startedAt: '2026-12-01T00:00:00Z', progress: { keysCopied: 5000, entriesTailed: 12, lagEntries: 3, phase: 'copy' },
  });
  expect(line).toBe('migration m1 (add shard-3): copying, 1024 slots moving (shard-0->shard-3 342, shard-1->shard-3 341), copy: 5000 keys copied, 12 entries tailed, lag 3');
});
