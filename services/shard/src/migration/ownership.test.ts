import { slotOf, SLOT_COUNT } from '@shardkv/common';
import { Ownership } from './ownership';

const keyIn = (slot: number) => {
  for (let i = 0; ; i += 1) if (slotOf(`k${i}`) === slot) return `k${i}`;
};

describe('Ownership', () => {
  const half = SLOT_COUNT / 2;
  const own = new Ownership('a', { mapVersion: 7, owners: [[0, half, 'a'], [half, SLOT_COUNT, 'b']], frozen: [[0, 10]], incoming: [[half, half + 5]] });

  test('serves its own slots, names the owner of the others, and refuses frozen slots as migrating', () => {
    expect(own.refusal(keyIn(20), 'write')).toBeUndefined();
    const wrong = own.refusal(keyIn(half + 100), 'read');
    expect(wrong).toMatchObject({ code: 'wrong_shard', outcome: 'definite', details: { owner: 'b', mapVersion: 7 } });
    expect(own.refusal(keyIn(3), 'read')).toMatchObject({ code: 'migrating', outcome: 'definite' });
  });

  test('the copy may write only incoming slots; a purge only slots it does not own', () => {
    expect(own.importable(keyIn(half + 2))).toBe(true);
    expect(own.importable(keyIn(half + 50))).toBe(false);
    expect(own.importable(keyIn(20))).toBe(false);
    expect(own.purgeable(half + 50)).toBe(true);
    expect(own.purgeable(3)).toBe(false);
    expect([own.ownedCount, own.frozenCount]).toEqual([half, 10]);
  });
});
