import { isKvError, ownersOf, SLOT_COUNT, SlotSet, type SlotRanges } from '@shardkv/common';
import type { ShardAddress, ShardMap } from '../control/records';
import { mapFor } from '../control/records';
import { migrationPlan, slotConfigFor, slotCount } from './plan';

const addr = (i: number): ShardAddress => ({ id: `shard-${i}`, leader: `http://l:${5001 + i}`, follower: `http://f:${6001 + i}` });
const three = (): ShardMap => mapFor([0, 1, 2].map(addr));
/** Every slot of `part` is in `whole` (ranges of several moves merge where they touch). */
const within = (part: SlotRanges, whole: SlotRanges) => {
  const set = new SlotSet(whole);
  return part.every(([from, to]) => Array.from({ length: to - from }, (_, i) => from + i).every((s) => set.has(s)));
};
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return isKvError(err) ? err.code : String(err);
  }
  return 'no error';
};

describe('migration plan (pure)', () => {
  test('adding a 4th shard moves about 1/4 of the slots (within 3 points), every one of them to the new shard', () => {
    const before = three();
    const next = migrationPlan.add(before, addr(3), 0);
    const m = next.migration!;
    expect(m).toMatchObject({ kind: 'add', shard: 'shard-3', state: 'copying' });
    expect(new Set(m.moves.map((mv) => mv.target))).toEqual(new Set(['shard-3']));
    const moving = m.moves.reduce((n, mv) => n + slotCount(mv.slots), 0);
    expect(Math.abs(moving / SLOT_COUNT - 1 / 4)).toBeLessThan(0.03);
    // Nothing moves before the cutover: the owners are those of the map it started from.
    expect(next.slots).toEqual(before.slots);
    expect(next.version).toBe(before.version + 1);
  });

  test('freeze, cutover and finish: sources freeze their moving slots, targets import them, then own them', () => {
    const copying = migrationPlan.add(three(), addr(3), 0);
    const mv = copying.migration!.moves[0]!;
    expect(slotConfigFor(copying, 'shard-3')!.frozen).toEqual([]);
    expect(within(mv.slots, slotConfigFor(copying, 'shard-3')!.incoming)).toBe(true);
    expect(slotConfigFor(copying, mv.source)!.frozen).toEqual([]);
    const frozen = migrationPlan.freeze(copying);
    expect(within(mv.slots, slotConfigFor(frozen, mv.source)!.frozen)).toBe(true);
    expect(within(mv.slots, slotConfigFor(frozen, mv.target)!.frozen)).toBe(false);
    const cut = migrationPlan.cutover(frozen);
    const owners = ownersOf(cut.slots!);
    for (const [from, to] of mv.slots) for (let s = from; s < to; s += 1) expect(owners[s]).toBe('shard-3');
    expect(slotConfigFor(cut, mv.source)!.frozen).toEqual([]);
    expect(slotConfigFor(cut, 'shard-3')!.incoming).toEqual([]);
    const done = migrationPlan.finish(cut);
    expect(done.migration).toBeUndefined();
    expect(done.shards.map((s) => s.id)).toEqual(['shard-0', 'shard-1', 'shard-2', 'shard-3']);
    expect([copying, frozen, cut, done].map((m) => m.version)).toEqual([2, 3, 4, 5]);
  });

  test('a freeze that thaws returns the slots to copying, with the owners unchanged', () => {
    const copying = migrationPlan.add(three(), addr(3), 0);
    const thawed = migrationPlan.unfreeze(migrationPlan.freeze(copying));
    expect(thawed.migration!.state).toBe('copying');
    expect(thawed.slots).toEqual(copying.slots);
  });

  test('removing a shard moves only its slots, spread over the others; it leaves the map when the migration ends', () => {
    const four = migrationPlan.finish(migrationPlan.cutover(migrationPlan.freeze(migrationPlan.add(three(), addr(3), 0))));
    const removing = migrationPlan.remove(four, 'shard-3', 0);
    const m = removing.migration!;
    expect(new Set(m.moves.map((mv) => mv.source))).toEqual(new Set(['shard-3']));
    expect(m.moves.reduce((n, mv) => n + slotCount(mv.slots), 0)).toBe(ownersOf(four.slots!).filter((o) => o === 'shard-3').length);
    const done = migrationPlan.finish(migrationPlan.cutover(migrationPlan.freeze(removing)));
    expect(done.shards.map((s) => s.id)).toEqual(['shard-0', 'shard-1', 'shard-2']);
    expect(new Set(ownersOf(done.slots!))).toEqual(new Set(['shard-0', 'shard-1', 'shard-2']));
  });

  test('refuses what it cannot do: a second migration, a known id, a used node, the last shard, a map without slots', () => {
    const copying = migrationPlan.add(three(), addr(3), 0);
    expect(code(() => migrationPlan.add(copying, addr(4), 0))).toBe('migration_in_progress');
    expect(code(() => migrationPlan.remove(copying, 'shard-0', 0))).toBe('migration_in_progress');
    expect(code(() => migrationPlan.add(three(), addr(1), 0))).toBe('bad_request');
    expect(code(() => migrationPlan.add(three(), { ...addr(3), follower: addr(0).leader }, 0))).toBe('bad_request');
    expect(code(() => migrationPlan.remove(mapFor([addr(0)]), 'shard-0', 0))).toBe('resharding_unsupported');
    const { slots: _, ...legacy } = three();
    expect(code(() => migrationPlan.add(legacy, addr(3), 0))).toBe('resharding_unsupported');
    expect(code(() => migrationPlan.cutover(copying))).toBe('coordinator_unavailable');
  });
});
