import { migrationEnded, ownersOf, runsOf, SLOT_COUNT, slotMidpoint, slotOf, SlotSet, type ClusterMap, type MigrationStarted } from './slots';

describe('hash slots', () => {
  test('a key has one slot, the same for its string and its UTF-8 bytes, within 0..4095', () => {
    for (const k of ['a', 'user:1', 'ключ', 'emoji-😀', 'x'.repeat(1024)]) {
      expect(slotOf(k)).toBe(slotOf(Buffer.from(k, 'utf8')));
      expect(slotOf(k)).toBeGreaterThanOrEqual(0);
      expect(slotOf(k)).toBeLessThan(SLOT_COUNT);
    }
  });

  test('every slot midpoint is a non-negative 32-bit point inside its slot (slots from 2048 up once came out negative)', () => {
    for (const s of [0, 1, 2047, 2048, 4095]) {
      const p = slotMidpoint(s);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThan(2 ** 32);
      expect(p >>> 20).toBe(s);
    }
  });

  test('runs and owners convert both ways; runs that miss a slot are refused', () => {
    const owners = Array.from({ length: SLOT_COUNT }, (_, s) => (s < 100 ? 'a' : s < 3000 ? 'b' : 'a'));
    expect(runsOf(owners)).toEqual([[0, 100, 'a'], [100, 3000, 'b'], [3000, SLOT_COUNT, 'a']]);
    expect(ownersOf(runsOf(owners))).toEqual(owners);
    expect(() => ownersOf([[0, 100, 'a'], [101, SLOT_COUNT, 'b']])).toThrow(/cover/);
    expect(new SlotSet([[5, 8], [8, 10]]).ranges()).toEqual([[5, 10]]);
  });

  test('a migration counts as ended only on a map newer than the one that recorded it (a lagging router may show an older one)', () => {
    const migration = { id: 'm1' } as MigrationStarted['migration'];
    const started: MigrationStarted = { migration, mapVersion: 7 };
    const map = (version: number, m: ClusterMap['migration']) => ({ version, migration: m }) as ClusterMap;
    expect(migrationEnded(map(6, null), started)).toBe(false); // a lagging router, before the migration
    expect(migrationEnded(map(9, migration), started)).toBe(false); // still under way
    expect(migrationEnded(map(10, null), started)).toBe(true);
    expect(migrationEnded(map(12, { id: 'm2' } as MigrationStarted['migration']), started)).toBe(true); // and another has begun
  });
});
