import { MemoryStore } from './store';
import type { Entry } from './replication/log';

const put = (seq: number, key: string, value: string): Entry => ({ seq, op: 'put', key, value });
const del = (seq: number, key: string): Entry => ({ seq, op: 'del', key });

describe('MemoryStore', () => {
  test('digest depends on the state only, not on the history that led to it', () => {
    const a = new MemoryStore();
    const b = new MemoryStore();
    [put(1, 'x', '1'), put(2, 'y', '2'), put(3, 'x', '3')].forEach((e) => a.apply(e));
    [put(1, 'y', '2'), put(2, 'z', 'gone'), put(3, 'x', '3'), del(4, 'z')].forEach((e) => b.apply(e));
    expect(a.digest()).toBe(b.digest());
  });

  test('digest tells apart states that differ in one value, or in where a key ends', () => {
    const a = new MemoryStore();
    const b = new MemoryStore();
    a.apply(put(1, 'ab', 'c'));
    b.apply(put(1, 'a', 'bc'));
    expect(a.digest()).not.toBe(b.digest());
    const empty = new MemoryStore().digest();
    const c = new MemoryStore();
    c.apply(put(1, 'k', 'v'));
    c.apply(del(2, 'k'));
    expect(c.digest()).toBe(empty);
  });

  test('apply reports whether the key existed, and refuses anything but seq + 1', () => {
    const s = new MemoryStore();
    expect(s.apply(put(1, 'k', 'v'))).toBe(false);
    expect(s.apply(put(2, 'k', 'w'))).toBe(true);
    expect(s.apply(del(3, 'k'))).toBe(true);
    expect(s.apply(del(4, 'k'))).toBe(false);
    expect(() => s.apply(put(6, 'k', 'v'))).toThrow(/seq 6 after 4/);
    expect(() => s.apply(put(4, 'k', 'v'))).toThrow();
  });

  test('restore replaces the whole state only on commit', () => {
    const s = new MemoryStore();
    s.apply(put(1, 'old', 'v'));
    const r = s.restore();
    r.put('new', 'v');
    expect(s.get('old')).toBe('v');
    r.commit(7);
    expect(s.get('old')).toBeUndefined();
    expect(s.get('new')).toBe('v');
    expect(s.seq).toBe(7);
  });
});
