import { ShardRing } from './ring';

const ids = (n: number) => Array.from({ length: n }, (_, i) => `shard-${i}`);
const keys = Array.from({ length: 30_000 }, (_, i) => `user:${i}:${(i * 2654435761) % 1000003}`);

describe('ShardRing', () => {
  test('spreads 30k keys over 3 shards within +-15% of even', () => {
    const ring = new ShardRing(ids(3));
    const counts = new Map<string, number>();
    for (const k of keys) counts.set(ring.shardFor(k), (counts.get(ring.shardFor(k)) ?? 0) + 1);
    expect([...counts.keys()].sort()).toEqual(ids(3));
    for (const c of counts.values()) {
      expect(c).toBeGreaterThanOrEqual(10_000 * 0.85);
      expect(c).toBeLessThanOrEqual(10_000 * 1.15);
    }
  });

  test('is stable across restarts: a new ring over the same ids places every key the same', () => {
    const a = new ShardRing(ids(3));
    const b = new ShardRing([...ids(3)].reverse());
    for (const k of keys) expect(b.shardFor(k)).toBe(a.shardFor(k));
  });

  test('adding a 4th shard moves about 1/4 of the keys, all of them to the new shard', () => {
    const before = new ShardRing(ids(3));
    const after = new ShardRing(ids(4));
    let moved = 0;
    for (const k of keys) {
      const from = before.shardFor(k);
      const to = after.shardFor(k);
      if (from !== to) {
        moved += 1;
        expect(to).toBe('shard-3');
      }
    }
    expect(moved / keys.length).toBeGreaterThan(0.18);
    expect(moved / keys.length).toBeLessThan(0.32);
  });

  test('places a key given as bytes exactly where it places the key as a string', () => {
    for (const n of [1, 3, 7]) {
      const ring = new ShardRing(ids(n));
      for (const k of [...keys.slice(0, 5000), 'ключ', 'emoji-😀', 'a b', 'x'.repeat(1024)]) expect(ring.shardForBytes(Buffer.from(k))).toBe(ring.shardFor(k));
    }
  });

  test('refuses duplicate or missing shard ids', () => {
    expect(() => new ShardRing([])).toThrow();
    expect(() => new ShardRing(['a', 'a'])).toThrow();
  });
});
