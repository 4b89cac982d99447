import { movedSlots, OpLog, parseRouterLine, percentile, phaseDurations } from './reshard-ops';

// bench:reshard's pure parts: which slots moved, the figures of a window of operations, and the
// router log lines it reads its cutover and migration figures from.

describe('moved slots', () => {
  it('names exactly the slots whose owner differs between two maps', () => {
    const before: Array<[number, number, string]> = [[0, 2048, 'shard-0'], [2048, 4096, 'shard-1']];
    const after: Array<[number, number, string]> = [[0, 10, 'shard-0'], [10, 12, 'shard-2'], [12, 4095, 'shard-0'], [4095, 4096, 'shard-1']];
    // 10, 11 go to shard-2; 2048..4094 change from shard-1 to shard-0; 4095 stays.
    const moved = movedSlots(before, after);
    expect(moved.slice(0, 3)).toEqual([10, 11, 2048]);
    expect(moved.length).toBe(2 + (4095 - 2048));
    expect(moved).not.toContain(4095);
  });

  it('finds nothing moved between a map and itself', () => {
    expect(movedSlots([[0, 4096, 'shard-0']], [[0, 4096, 'shard-0']])).toEqual([]);
  });
});

describe('percentile', () => {
  it('is the nearest rank: p50 of 1..100 is 50, p99 is 99, and NaN of nothing', () => {
    const v = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(v, 0.5)).toBe(50);
    expect(percentile(v, 0.99)).toBe(99);
    expect(percentile(v, 1)).toBe(100);
    expect(percentile([], 0.5)).toBeNaN();
  });
});

describe('op log windows', () => {
  it('counts only ops that ended in [from, to), success per second, errors by code', () => {
    const log = new OpLog();
    log.record(999, 5, 1); // before the window
    for (let i = 0; i < 10; i += 1) log.record(1000 + i * 100, i + 1, i % 2);
    log.record(1500, 40, 7, 'migrating');
    log.record(1600, 30, 7, 'wrong_shard');
    log.record(1700, 20, 7, 'migrating');
    log.record(2000, 5, 1); // the window's end is open
    const w = log.window(1000, 2000);
    expect(w.ops).toBe(13);
    expect(w.errors).toBe(3);
    expect(w.errorsByCode).toEqual({ migrating: 2, wrong_shard: 1 });
    expect(w.okOpsPerSec).toBeCloseTo(10, 6);
    expect(w.maxMs).toBe(40);
    expect(w.p50Ms).toBe(7);
  });

  it('filters by slot, so moved keys can be looked at alone', () => {
    const log = new OpLog();
    log.record(10, 100, 3);
    log.record(11, 900, 4);
    log.record(12, 50, 3);
    const moved = new Set([3]);
    const w = log.window(0, 100, (s) => moved.has(s));
    expect(w.ops).toBe(2);
    expect(w.maxMs).toBe(100);
  });

  it('keeps every op past its first allocation', () => {
    const log = new OpLog();
    const n = (1 << 16) * 2 + 5;
    for (let i = 0; i < n; i += 1) log.record(i, 1, i % 4096);
    expect(log.count).toBe(n);
    expect(log.window(0, n).ops).toBe(n);
  });
});

describe('router log lines', () => {
  it('reads the cutover (ISO time, as the nodes log it), the end of a migration and a thaw (epoch ms time), and ignores other lines', () => {
    const cut = '{"level":40,"time":"2026-12-02T21:37:36.123Z","migration":"m1","frozenMs":87,"msg":"cutover committed: the moved slots are served by their new shards"}';
    expect(parseRouterLine(cut)).toEqual({ kind: 'cutover', atMs: Date.UTC(2026, 11, 2, 21, 37, 36, 123), migration: 'm1', frozenMs: 87 });
    const fin = '{"level":40,"time":5,"migration":"m1","kind":"add","shard":"shard-3","keysCopied":250000,"movedKeysDeleted":249000,"msg":"migration finished"}';
    expect(parseRouterLine(fin)).toEqual({ kind: 'finished', atMs: 5, migration: 'm1', keysCopied: 250000, movedKeysDeleted: 249000 });
    const thaw = '{"level":40,"time":6,"mapVersion":4,"why":"thaw: cutover took over 1000 ms","msg":"shard map changed"}';
    expect(parseRouterLine(thaw)).toEqual({ kind: 'thaw', atMs: 6, why: 'thaw: cutover took over 1000 ms' });
    expect(parseRouterLine('{"level":40,"time":7,"why":"freeze","msg":"shard map changed"}')).toBeUndefined();
    expect(parseRouterLine('not json')).toBeUndefined();
  });
});

describe('phase durations', () => {
  it('times each phase until the next change, merging repeats, the last one until the end', () => {
    const changes = [
      { atMs: 0, state: 'none', phase: null },
      { atMs: 500, state: 'copying', phase: 'copying' },
      { atMs: 4500, state: 'copying', phase: 'tailing' },
      { atMs: 5000, state: 'frozen', phase: 'cutover' },
      { atMs: 5100, state: 'cleanup', phase: 'cutover' },
      { atMs: 5200, state: 'cleanup', phase: 'cleanup' },
    ];
    expect(phaseDurations(changes, 8000)).toEqual([
      { label: 'none', ms: 500 },
      { label: 'copying', ms: 4000 },
      { label: 'tailing', ms: 500 },
      { label: 'cutover', ms: 200 },
      { label: 'cleanup', ms: 2800 },
    ]);
  });
});
