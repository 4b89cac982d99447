import { MemoryStore } from '../store';
import type { Command } from './commands';
import { ExpirySweeper } from './expiry';
import { record, type Op } from './log';

// The sweep without a leader: a store, and a write function that records what it is asked to delete.
async function storeWith(ops: Op[]): Promise<MemoryStore> {
  const s = new MemoryStore({ entriesMax: 1000, bytesMax: 1 << 20 });
  await s.apply(ops.map((op, i) => record({ ...op, seq: i + 1 } as never)));
  return s;
}

test('a pass deletes, in bounded pieces, exactly the expired keys, each at the version that expired', async () => {
  const ops: Op[] = [];
  for (let i = 0; i < 25; i += 1) ops.push(i % 2 === 0 ? { op: 'put', key: `k${i}`, value: 'v', exp: 1000 } : { op: 'put', key: `k${i}`, value: 'v' });
  const store = await storeWith(ops);
  const asked: Command[][] = [];
  const sweeper = new ExpirySweeper((c, max) => store.scan(c, max), async (cmds) => (asked.push(cmds), cmds.map(() => ({}))), { intervalMs: 1000, keysMax: 10 });
  // Not expired yet: nothing asked.
  expect(await sweeper.sweep(999)).toBe(0);
  let deleted = 0;
  for (let i = 0; i < 3; i += 1) deleted += await sweeper.sweep(1000);
  expect(deleted).toBe(13);
  expect(asked.every((cmds) => cmds.length <= 10)).toBe(true);
  // The pass wrapped around (the first sweep, too early, had already gone past k0..k9).
  expect(asked.flat().sort((a, b) => a.expiredVersion! - b.expiredVersion!)).toEqual(ops.flatMap((op, i) => (i % 2 === 0 ? [{ op: 'del', key: op.key, expiredVersion: i + 1 }] : [])));
});

test('a key a read found expired is deleted by the next sweep, conditionally; a refused delete is not counted', async () => {
  const store = await storeWith([]);
  const asked: Command[] = [];
  const counted: number[] = [];
  const sweeper = new ExpirySweeper((c, max) => store.scan(c, max), async (cmds) => (asked.push(...cmds), cmds.map(() => ({ refused: new Error('version_mismatch') }))), { intervalMs: 1000, keysMax: 10 }, (n) => counted.push(n));
  sweeper.expired('gone', 7);
  expect(await sweeper.sweep()).toBe(0);
  expect(asked).toEqual([{ op: 'del', key: 'gone', expiredVersion: 7 }]);
  expect(counted).toEqual([0]);
  // Seen once: the next sweep does not ask again.
  await sweeper.sweep();
  expect(asked).toHaveLength(1);
});
