import type { Operation, Outcome } from './linearizability';
import { checkRmwHistory } from './linearizability-rmw';
import { bruteForceLinearizable as bruteForce } from './linearizability-brute';

// Small builders: times are [invokeMs, completeMs]; ids number ops in the order they are built.
let nextId = 0;
type Span = [number, number];
/** What a client read before its compare-and-set: the value and its version. */
type Read = { value: string; version: number };

function base(client: number, key: string, [invokeMs, completeMs]: Span, outcome: Outcome) {
  return { id: nextId++, client, key, invokeMs, completeMs, outcome };
}

/** An increment: acknowledged with its new value (and version), or 'info' / 'fail'. */
function incr(client: number, key: string, by: number, span: Span, answer: string | 'info' | 'fail', version?: number): Operation {
  if (answer === 'info' || answer === 'fail') return { ...base(client, key, span, answer), kind: 'incr', by };
  return { ...base(client, key, span, 'ok'), kind: 'incr', by, result: answer, ...(version === undefined ? {} : { version }) };
}

function get(client: number, key: string, result: string | null, span: Span, version?: number): Operation {
  return { ...base(client, key, span, 'ok'), kind: 'get', result, ...(version === undefined ? {} : { version }) };
}

function put(client: number, key: string, value: string, span: Span, outcome: Outcome = 'ok', version?: number): Operation {
  return { ...base(client, key, span, outcome), kind: 'put', value, ...(version === undefined ? {} : { version }) };
}

/** put `value` if the key still holds what the client read (`ifVersion`). */
function cas(client: number, key: string, value: string, read: Read, span: Span, outcome: Outcome = 'ok', version?: number): Operation {
  return { ...put(client, key, value, span, outcome, version), ifVersion: read.version, expectedValue: read.value };
}

function putIfAbsent(client: number, key: string, value: string, span: Span, outcome: Outcome = 'ok', version?: number): Operation {
  return { ...put(client, key, value, span, outcome, version), ifAbsent: true };
}

function delIf(client: number, key: string, read: Read, span: Span, outcome: Outcome = 'ok'): Operation {
  return { ...base(client, key, span, outcome), kind: 'del', ifVersion: read.version, expectedValue: read.value, ...(outcome === 'ok' ? { existed: true } : {}) };
}

function del(client: number, key: string, span: Span, existed?: boolean, outcome: Outcome = 'ok'): Operation {
  return { ...base(client, key, span, outcome), kind: 'del', ...(existed === undefined ? {} : { existed }) };
}

/** A conditional write refused with 412 version_mismatch, reporting `current` (null: absent). */
function refused(op: Operation, current: number | null): Operation {
  return { ...op, outcome: 'fail', mismatchVersion: current };
}

function expectLinearizable(history: Operation[]): void {
  const result = checkRmwHistory(history);
  expect(result.anomalies).toEqual([]);
  expect(result.undecided).toEqual([]);
  expect(result.linearizable).toBe(true);
}

/** The one anomaly's message; the key is `a` unless said. */
function expectAnomaly(history: Operation[], key = 'a'): string {
  const result = checkRmwHistory(history);
  expect(result.undecided).toEqual([]);
  expect(result.linearizable).toBe(false);
  expect(result.anomalies.map((a) => a.key)).toEqual([key]);
  const anomaly = result.anomalies[0]!;
  expect(anomaly.operations.length).toBeGreaterThan(0);
  expect(anomaly.operations.every((op) => op.key === key)).toBe(true);
  return anomaly.message;
}

describe('counters: linearizable histories', () => {
  test('sequential increments from absent count from 0, and gets read the latest sum', () => {
    // Proves the counter model: absent is 0, each increment adds `by` and answers the sum.
    expectLinearizable([
      get(1, 'a', null, [0, 1]),
      incr(1, 'a', 1, [2, 3], '1'),
      incr(2, 'a', 5, [4, 5], '6'),
      get(1, 'a', '6', [6, 7]),
      incr(1, 'a', -2, [8, 9], '4'),
    ]);
  });

  test.each([['1', '3'], ['2', '3']])('concurrent increments may be ordered either way (answers %s and %s)', (first, second) => {
    // Proves overlapping increments can take effect in either order, as their answers say.
    const byFirst = Number(first);
    expectLinearizable([incr(1, 'a', byFirst, [0, 10], first), incr(2, 'a', 3 - byFirst, [0, 10], second), get(3, 'a', '3', [11, 12])]);
  });

  test('an indeterminate increment that applied, long after its invocation, explains a later sum', () => {
    // Proves an info increment may take effect at any instant after its invocation.
    expectLinearizable([
      incr(1, 'a', 1, [0, 1], '1'),
      incr(2, 'a', 5, [2, 3], 'info'),
      get(3, 'a', '1', [50, 51]),
      incr(1, 'a', 1, [60, 61], '7'),
    ]);
  });

  test('an indeterminate increment that never applied is not needed', () => {
    // Proves an info increment is optional.
    expectLinearizable([incr(1, 'a', 1, [0, 1], '1'), incr(2, 'a', 5, [2, 3], 'info'), incr(1, 'a', 1, [60, 61], '2'), get(3, 'a', '2', [70, 71])]);
  });

  test('of two indeterminate increments by the same amount, one applied', () => {
    // Proves interchangeable info increments can be used one at a time.
    expectLinearizable([incr(1, 'a', 2, [0, 1], 'info'), incr(2, 'a', 2, [0, 1], 'info'), get(3, 'a', '2', [10, 11]), get(3, 'a', '2', [12, 13])]);
  });

  test('a failed increment is dropped', () => {
    // Proves a definite failure has no effect and is not counted.
    const result = checkRmwHistory([incr(1, 'a', 1, [0, 1], 'fail'), get(2, 'a', null, [2, 3])]);
    expect(result).toEqual({ linearizable: true, keys: 1, operations: 1, indeterminate: 0, anomalies: [], undecided: [] });
  });
});

describe('counters: histories that are not linearizable', () => {
  test('a lost increment: two acknowledged increments by 1 both answer 1', () => {
    // Proves two increments cannot both see 0: one of them was lost.
    const message = expectAnomaly([incr(1, 'a', 1, [0, 10], '1'), incr(2, 'a', 1, [0, 10], '1')]);
    expect(message).toMatch(/incr "a" by 1 -> "1"/);
  });

  test('a lost increment seen by a read: the sum of two acknowledged increments is read as one', () => {
    // Proves a get after two completed increments must see both.
    const message = expectAnomaly([incr(1, 'a', 1, [0, 1], '1'), incr(2, 'a', 1, [2, 3], '2'), get(3, 'a', '1', [4, 5])]);
    expect(message).toMatch(/get "a" -> "1" \[4\.\.5ms\] cannot be linearized/);
  });

  test('an increment applied twice', () => {
    // Proves one acknowledged increment by 1 cannot leave 2.
    expectAnomaly([incr(1, 'a', 1, [0, 1], '1'), get(2, 'a', '2', [2, 3])]);
  });

  test('an indeterminate increment that must have applied twice to explain the answers', () => {
    // Proves each info increment applies at most once: one incr by 5 cannot take 0 to 10.
    expectAnomaly([incr(1, 'a', 5, [0, 1], 'info'), get(2, 'a', '5', [10, 11]), get(2, 'a', '10', [20, 21])]);
  });

  test('an indeterminate increment cannot take effect before it was invoked', () => {
    // Proves the info write's invocation bounds when it may apply.
    expectAnomaly([get(1, 'a', '1', [0, 5]), incr(2, 'a', 1, [10, 11], 'info')]);
  });

  test('a counter that goes back', () => {
    // Proves reads are ordered: after reading 3, a later read cannot see 1.
    expectAnomaly([incr(1, 'a', 1, [0, 1], '1'), incr(2, 'a', 2, [2, 30], '3'), get(3, 'a', '3', [5, 6]), get(3, 'a', '1', [7, 8])]);
  });
});

describe('compare-and-set: linearizable histories', () => {
  test('a chain of compare-and-sets, each on the value the client read, and the loser of a race refused', () => {
    // Proves the CAS model: it writes only on the value read; a 412 is a state that was not that value.
    expectLinearizable([
      putIfAbsent(1, 'a', 'v1', [0, 1], 'ok', 1),
      get(1, 'a', 'v1', [2, 3], 1),
      get(2, 'a', 'v1', [2, 3], 1),
      cas(1, 'a', 'v2', { value: 'v1', version: 1 }, [4, 10], 'ok', 5),
      refused(cas(2, 'a', 'v3', { value: 'v1', version: 1 }, [4, 10]), 5),
      get(3, 'a', 'v2', [11, 12], 5),
    ]);
  });

  test('of two putIfAbsent racing, one wins and the other is refused with its version', () => {
    // Proves ifAbsent and a refusal that reports the winner's version (so the state then was the winner's value).
    expectLinearizable([putIfAbsent(1, 'a', 'x', [0, 10], 'ok', 3), refused(putIfAbsent(2, 'a', 'y', [0, 10]), 3), get(3, 'a', 'x', [11, 12], 3)]);
  });

  test('a delete at the version read, then a putIfAbsent', () => {
    // Proves a conditional delete writes absent, and ifAbsent then holds.
    expectLinearizable([
      put(1, 'a', 'x', [0, 1], 'ok', 1),
      delIf(1, 'a', { value: 'x', version: 1 }, [2, 3]),
      refused(delIf(2, 'a', { value: 'x', version: 1 }, [4, 5]), null),
      putIfAbsent(2, 'a', 'y', [6, 7], 'ok', 4),
    ]);
  });

  test.each([['applied', 'v2'], ['not applied', 'v1']])('an indeterminate compare-and-set that %s', (_label, read) => {
    // Proves an info CAS may or may not have taken effect (if it did, its condition held then).
    expectLinearizable([put(1, 'a', 'v1', [0, 1], 'ok', 1), cas(2, 'a', 'v2', { value: 'v1', version: 1 }, [2, 3], 'info'), get(3, 'a', read, [10, 11])]);
  });

  test('a refusal explained by an indeterminate write that took effect', () => {
    // Proves a 412 can be the trace of an info write applied before it.
    expectLinearizable([
      put(1, 'a', 'v1', [0, 1], 'ok', 1),
      put(2, 'a', 'v2', [2, 3], 'info'),
      refused(cas(3, 'a', 'v3', { value: 'v1', version: 1 }, [4, 5]), 2),
      get(3, 'a', 'v2', [6, 7], 2),
    ]);
  });
});

describe('compare-and-set: histories that are not linearizable', () => {
  test('two compare-and-sets on the same version both succeed', () => {
    // Proves a CAS sees the state its rival left: both cannot have found v1.
    const message = expectAnomaly([
      put(1, 'a', 'v1', [0, 1], 'ok', 1),
      cas(1, 'a', 'v2', { value: 'v1', version: 1 }, [2, 10], 'ok', 2),
      cas(2, 'a', 'v3', { value: 'v1', version: 1 }, [2, 10], 'ok', 3),
    ]);
    expect(message).toMatch(/if version 1 \("v1"\)/);
  });

  test('a get returns the older value after a newer acknowledged write', () => {
    // Proves a stale read after a completed CAS is caught.
    // (The get reports no version here: with one, the version checks would flag it too.)
    expectAnomaly([put(1, 'a', 'v1', [0, 1], 'ok', 1), cas(1, 'a', 'v2', { value: 'v1', version: 1 }, [2, 3], 'ok', 2), get(2, 'a', 'v1', [4, 5])]);
  });

  test('a 412 says "not v1" while v1 was certainly current', () => {
    // Proves a refusal is an observation: nothing but v1 was possible in its interval.
    const message = expectAnomaly([put(1, 'a', 'v1', [0, 1], 'ok', 1), refused(cas(2, 'a', 'v2', { value: 'v1', version: 1 }, [2, 3]), 7), get(3, 'a', 'v1', [4, 5], 1)]);
    expect(message).toMatch(/refused, version 7 .* cannot be linearized/);
  });

  test('a 412 reporting the key absent while it certainly held a value', () => {
    // Proves a refusal's reported version counts: null means absent.
    expectAnomaly([put(1, 'a', 'v1', [0, 1], 'ok', 1), refused(cas(2, 'a', 'v2', { value: 'v0', version: 0 }, [2, 3]), null)]);
  });

  test("a 412 reporting a version tied to another value than the key's", () => {
    // Proves the tie: version 2 is v2's, so "version 2 then" is "v2 then", impossible before v2 was written.
    expectAnomaly([
      put(1, 'a', 'v1', [0, 1], 'ok', 1),
      refused(cas(2, 'a', 'x', { value: 'v0', version: 0 }, [2, 3]), 2),
      put(1, 'a', 'v2', [4, 5], 'ok', 2),
    ]);
  });

  test('an indeterminate compare-and-set cannot apply when its condition did not hold', () => {
    // Proves an info CAS that applied found its expected value: here v1 was gone before it began.
    expectAnomaly([
      put(1, 'a', 'v1', [0, 1], 'ok', 1),
      put(1, 'a', 'v2', [2, 3], 'ok', 2),
      cas(2, 'a', 'v3', { value: 'v1', version: 1 }, [4, 5], 'info'),
      get(3, 'a', 'v3', [6, 7]),
    ]);
  });
});

describe('versions, checked after the search', () => {
  test('two acknowledged writes with one version', () => {
    // Proves check 1: a log position is given to one write (check 2 sees it too: version 4 would name "1" and "2").
    const result = checkRmwHistory([incr(1, 'a', 1, [0, 10], '1', 4), incr(2, 'a', 1, [0, 10], '2', 4)]);
    expect(result.anomalies.map((a) => a.message.replace(/:.*/, ''))).toEqual(['versions', 'versions']);
    expect(result.anomalies[0]!.message).toMatch(/^versions: 2 acknowledged writes report version 4/);
  });

  test('a get of a value reporting another version than its writer acknowledged', () => {
    // Proves check 3: the value is right, the version is not (the get overlaps the put, so check 5 stays out).
    expect(expectAnomaly([put(1, 'a', 'x', [0, 1], 'ok', 3), get(2, 'a', 'x', [1, 3], 2)])).toMatch(/"x", written once, is reported at versions 3 and 2/);
  });

  test("a get reporting a version that names another write's value", () => {
    // Proves check 2, where the search alone accepts the values (y's writer timed out, so its version is unknown).
    const message = expectAnomaly([put(1, 'a', 'x', [0, 1], 'ok', 3), put(1, 'a', 'y', [0, 1], 'info'), get(2, 'a', 'y', [2, 3], 3)]);
    expect(message).toMatch(/version 3 is reported for two states/);
  });

  test('a counter version that goes back after a later write', () => {
    // Proves check 5: versions grow with real time.
    expect(expectAnomaly([incr(1, 'a', 1, [0, 1], '1', 9), incr(1, 'a', 1, [2, 3], '2', 8)])).toMatch(/version 8 after version 9/);
  });

  test('a refusal reporting the very version its condition asked for', () => {
    // Proves check 4.
    const history = [put(1, 'a', 'x', [0, 1], 'ok', 1), refused(cas(2, 'a', 'y', { value: 'x', version: 1 }, [2, 3]), 1)];
    const result = checkRmwHistory(history);
    expect(result.anomalies.some((a) => /refused although the version reported is the one it asked for/.test(a.message))).toBe(true);
  });

  test('consistent versions on a busy key pass', () => {
    // Proves the version checks do not fire on a correct history with concurrent writes.
    expectLinearizable([
      incr(1, 'a', 1, [0, 10], '1', 1),
      incr(2, 'a', 2, [0, 10], '3', 2),
      get(3, 'a', '3', [11, 12], 2),
      incr(1, 'a', 1, [13, 14], 'info'),
      get(3, 'a', '4', [20, 21], 5),
      incr(2, 'a', 1, [22, 23], '5', 6),
    ]);
  });
});

describe('records', () => {
  test('malformed records are refused rather than checked', () => {
    // Proves a recording bug is named instead of producing a verdict on bad data.
    const noBy: Operation = { client: 1, key: 'a', kind: 'incr', invokeMs: 0, completeMs: 1, outcome: 'ok', result: '1' };
    expect(() => checkRmwHistory([noBy])).toThrow(/amount it adds/);
    expect(() => checkRmwHistory([{ ...put(1, 'a', 'x', [0, 1]), ifVersion: 3 }])).toThrow(/expectedValue/);
    expect(() => checkRmwHistory([{ ...put(1, 'a', 'x', [0, 1]), mismatchVersion: 3 }])).toThrow(/version mismatch/);
  });

  test('only the bad key is reported, and the counts add up', () => {
    // Proves per-key splitting and the bookkeeping: 412s are kept, other failures and info gets dropped.
    const infoGet: Operation = { client: 3, key: 'b', kind: 'get', invokeMs: 0, completeMs: 0, outcome: 'info' };
    const history = [
      incr(1, 'bad', 1, [0, 1], '1'),
      get(2, 'bad', '5', [2, 3]),
      put(1, 'b', 'x', [0, 1], 'ok', 1),
      refused(putIfAbsent(2, 'b', 'y', [2, 3]), 1),
      incr(2, 'b', 1, [4, 5], 'fail'),
      infoGet,
      incr(3, 'c', 1, [0, 1], 'info'),
    ];
    const result = checkRmwHistory(history);
    expect(result.anomalies.map((a) => a.key)).toEqual(['bad']);
    expect({ keys: result.keys, operations: result.operations, indeterminate: result.indeterminate }).toEqual({ keys: 3, operations: 5, indeterminate: 1 });
  });

  test('a key past the step budget is undecided, not passed or failed', () => {
    // Proves the budget: twenty overlapping increments with distinct amounts, then an impossible read, make
    // the failing search visit every subset of them; a small budget stops it and says so.
    const history = Array.from({ length: 20 }, (_, i) => incr(i, 'hot', 2 ** i, [0, 100], 'info'));
    history.push(get(99, 'hot', '-1', [200, 201]), incr(98, 'hot', 1, [200, 300], String(2 ** 20)));
    const result = checkRmwHistory(history, { maxStepsPerKey: 10_000 });
    expect(result.undecided).toEqual(['hot']);
    expect(result.linearizable).toBe(false);
  });
});

/** Deterministic random numbers in [0, 1) (mulberry32), so every run checks the same histories. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let z = Math.imul(s ^ (s >>> 15), s | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 2 ** 32;
  };
}

const pickFrom = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

interface SimOptions {
  seed: number;
  key: string;
  /** counter: increments and gets; register: gets, compare-and-sets on the value read, puts, deletes */
  shape: 'counter' | 'register';
  clients: number;
  ops: number;
  clientBase?: number;
  /** share of ops left indeterminate (half of them applied); 5% more fail */
  infoRate?: number;
}

/** A planned operation: the instant it takes effect, whether it does, and for a CAS whose read it follows. */
interface Planned {
  op: Operation;
  atMs: number;
  applied: boolean;
}

/**
 * A simulated linearizable store, as in linearizability.test.ts: each client runs one op at a time; each op
 * takes effect at a random instant inside its interval (or never, if it failed or was left indeterminate
 * without effect), and answers, versions and refusals are computed by applying the ops in instant order. A
 * register client's compare-and-set (or conditional delete) is on the last value it read. Linearizable by construction.
 */
function simulate({ seed, key, shape, clients, ops, clientBase = 0, infoRate = 0.05 }: SimOptions): Operation[] {
  const random = rng(seed);
  const clockMs = new Array<number>(clients).fill(0);
  const planned: Planned[] = [];
  for (let i = 0; i < ops; i++) {
    const c = Math.floor(random() * clients);
    const invokeMs = clockMs[c]! + Math.floor(random() * 5);
    const completeMs = invokeMs + 1 + Math.floor(random() * 30);
    clockMs[c] = completeMs;
    const roll = random();
    const outcome: Outcome = roll < 0.05 ? 'fail' : roll < 0.05 + infoRate ? 'info' : 'ok';
    const b = { id: i, client: clientBase + c, key, invokeMs, completeMs, outcome };
    const kindRoll = random();
    const op: Operation =
      shape === 'counter'
        ? kindRoll < 0.6 ? { ...b, kind: 'incr', by: pickFrom(random, [1, 2, 5]) } : { ...b, kind: 'get' }
        : kindRoll < 0.35 ? { ...b, kind: 'get' } : kindRoll < 0.75 ? { ...b, kind: 'put', value: `${key}-v${i}` } : kindRoll < 0.85 ? { ...b, kind: 'del' } : { ...b, kind: 'put', value: `${key}-v${i}`, ifAbsent: false };
    planned.push({ op, atMs: invokeMs + random() * (completeMs - invokeMs), applied: outcome === 'ok' || (outcome === 'info' && random() < 0.5) });
  }
  applyInInstantOrder(planned, random);
  return planned.map((p) => p.op);
}

/** The store itself: the state and its version, a seq per applied write, each client's last read. */
function applyInInstantOrder(planned: Planned[], random: () => number): void {
  let state: { value: string; version: number } | null = null;
  let seq = 0;
  const lastRead = new Map<number, { value: string; version: number } | null>();
  for (const p of [...planned].sort((a, b) => a.atMs - b.atMs)) {
    const op = p.op;
    // Register clients: a plain put marked ifAbsent:false is "a compare-and-set on my last read" (fixed here).
    if (op.ifAbsent === false) conditionOnLastRead(op, lastRead.get(op.client), random);
    if (!p.applied) continue;
    const ok = op.outcome === 'ok';
    if (op.kind === 'get') {
      if (ok) Object.assign(op, { result: state?.value ?? null }, state === null ? {} : { version: state.version });
      lastRead.set(op.client, state);
      continue;
    }
    const expected = op.ifAbsent === true ? null : op.expectedValue;
    if ((op.ifAbsent === true || op.ifVersion !== undefined) && (state?.value ?? null) !== expected) {
      // The condition fails: a definite answer is a 412 reporting the version; nothing applies.
      if (ok) Object.assign(op, { outcome: 'fail', mismatchVersion: state?.version ?? null });
      continue;
    }
    seq += 1;
    if (op.kind === 'del') {
      if (ok) Object.assign(op, { existed: state !== null, version: seq });
      state = null;
    } else {
      const value: string = op.kind === 'put' ? op.value! : String(Number(state?.value ?? '0') + op.by!);
      state = { value, version: seq };
      if (ok) Object.assign(op, { version: seq }, op.kind === 'incr' ? { result: value } : {});
    }
  }
}

/** A CAS on the value the client read last (put if absent when it read none), sometimes a conditional delete. */
function conditionOnLastRead(op: Operation, read: { value: string; version: number } | null | undefined, random: () => number): void {
  delete op.ifAbsent;
  if (read == null) {
    op.ifAbsent = true;
    return;
  }
  Object.assign(op, { ifVersion: read.version, expectedValue: read.value });
  if (random() < 0.2) {
    op.kind = 'del';
    delete op.value;
  }
}

/** An acknowledged get that must be stale if it read `w`'s value: w completed, then another write, then the get began. */
function staleReadTarget(history: Operation[]): { get: Operation; value: string } | undefined {
  const writes = history.filter((op) => op.outcome === 'ok' && (op.kind === 'put' || op.kind === 'incr'));
  const gets = history.filter((op) => op.kind === 'get' && op.outcome === 'ok');
  for (const w of writes) {
    const value = w.kind === 'put' ? w.value! : w.result!;
    for (const later of writes) {
      if (later.invokeMs <= w.completeMs) continue;
      const g = gets.find((op) => op.invokeMs > later.completeMs);
      if (g) return { get: g, value };
    }
  }
  return undefined;
}

/** A copy with versions stripped from gets, so that a corrupted read is the search's catch, not the version checks'. */
const copy = (history: Operation[]) => history.map((op) => ({ ...op }));

describe.each(['counter', 'register'] as const)('randomized %s histories from a simulated linearizable store', (shape) => {
  test.each([1, 2, 3, 4, 5, 6])('seed %i: 300 ops from 5 clients pass; a corrupted answer fails', (seed) => {
    // Proves no false alarms on real concurrency with timeouts, and that one bad answer among 300 is caught.
    const history = simulate({ seed, key: 'r', shape, clients: 5, ops: 300, infoRate: 0.1 });
    expectLinearizable(history);
    expect(history.some((op) => op.mismatchVersion !== undefined) || shape === 'counter').toBe(true);

    const ghost = copy(history);
    const victim = ghost.filter((op) => op.kind === 'get' && op.outcome === 'ok')[10]!;
    Object.assign(victim, { result: shape === 'counter' ? '-7' : 'never-written' });
    delete victim.version;
    expectAnomaly(ghost, 'r');

    const stale = copy(history);
    const target = staleReadTarget(stale);
    if (target === undefined) throw new Error(`seed ${seed}: no stale-read candidate in the simulated history`);
    Object.assign(target.get, { result: target.value });
    delete target.get.version;
    expectAnomaly(stale, 'r');
  });

  test('a wrong version on one read is caught by the version checks', () => {
    // Proves the version checks on a realistic history: one get reports its value with a version off by one.
    const history = simulate({ seed: 21, key: 'r', shape, clients: 5, ops: 300, infoRate: 0.1 });
    const victim = history.filter((op) => op.kind === 'get' && op.version !== undefined)[20]!;
    victim.version! += 1000;
    const result = checkRmwHistory(history);
    expect(result.anomalies.length).toBeGreaterThan(0);
    expect(result.anomalies.every((a) => a.message.startsWith('versions: '))).toBe(true);
  });

  test('a long key with many indeterminate writes gets a verdict, passing and failing', () => {
    // Proves the rules on indeterminate writes keep a failing search tractable: 3000 ops, 10% timeouts, half
    // of them applied, one bad read at the end (the search must exhaust the whole key to fail it).
    const history = simulate({ seed: 11, key: 'busy', shape, clients: 5, ops: 3000, infoRate: 0.1 });
    const startedMs = performance.now();
    expectLinearizable(history);
    const lastGet = [...history].reverse().find((op) => op.kind === 'get' && op.outcome === 'ok')!;
    Object.assign(lastGet, { result: 'never-written' });
    delete lastGet.version;
    expectAnomaly(history, 'busy');
    console.log(`linearizability-rmw: a 3000-op ${shape} key checked twice in ${(performance.now() - startedMs).toFixed(0)} ms`);
  });
});

/**
 * The checker's definition, with no shortcuts: every order of the definite operations, with any subset of the
 * indeterminate writes, that respects real time, applied to the model written out again here. Exponential,
 * so only for a handful of operations.
 */
function bruteForceLinearizable(history: readonly Operation[]): boolean {
  return bruteForce(history.filter((op) => (op.outcome === 'fail' ? op.mismatchVersion !== undefined : !(op.outcome === 'info' && op.kind === 'get'))), null, modelStep);
}

/** The model; undefined when op (with its answer, if definite) is impossible from state. */
function modelStep(state: string | null, op: Operation): string | null | undefined {
  const conditional = op.ifAbsent === true || op.ifVersion !== undefined;
  const holds = !conditional || state === (op.ifAbsent === true ? null : op.expectedValue);
  if (op.mismatchVersion !== undefined) return holds || (op.mismatchVersion === null && state !== null) ? undefined : state;
  if (op.kind === 'get') return op.result === state ? state : undefined;
  if (!holds) return undefined;
  if (op.kind === 'put') return op.value!;
  if (op.kind === 'del') return op.outcome === 'ok' && op.existed !== undefined && op.existed !== (state !== null) ? undefined : null;
  if (state !== null && !/^-?(0|[1-9][0-9]*)$/.test(state)) return undefined;
  const sum = String(Number(state ?? '0') + op.by!);
  return op.outcome === 'ok' && op.result !== sum ? undefined : sum;
}

/** A few ops on one key with tiny value and time ranges, so that ties, repeats, conflicts and info writes are common. */
function smallRandomHistory(random: () => number): Operation[] {
  const pick = <T>(items: readonly T[]) => pickFrom(random, items);
  const ops: Operation[] = [];
  for (let i = 0; i < 2 + Math.floor(random() * 7); i++) {
    const invokeMs = Math.floor(random() * 12);
    const b = { id: i, client: i, key: 'k', invokeMs, completeMs: invokeMs + Math.floor(random() * 6), outcome: pick<Outcome>(['ok', 'ok', 'ok', 'info', 'fail']) };
    const kind = pick(['incr', 'incr', 'get', 'get', 'put', 'cas', 'ifAbsent', 'delIf', 'del'] as const);
    // Versions stay out (the brute force has no versions): a refusal reports none the others tie, or absent.
    const mismatch = b.outcome === 'fail' && random() < 0.6 ? { outcome: 'fail' as const, mismatchVersion: pick([null, 1000 + i]) } : {};
    const expected = { ifVersion: 1, expectedValue: pick(['x', 'y', '1', '2']) };
    if (kind === 'incr') ops.push({ ...b, kind, by: pick([1, 2]), ...(b.outcome === 'ok' ? { result: pick(['1', '2', '3', '4']) } : {}) });
    if (kind === 'get') ops.push({ ...b, kind, result: pick([null, 'x', 'y', '1', '2', '3']) });
    if (kind === 'put') ops.push({ ...b, kind, value: pick(['x', 'y', '1']) });
    if (kind === 'cas') ops.push({ ...b, kind: 'put', value: pick(['x', 'y', '2']), ...expected, ...mismatch });
    if (kind === 'ifAbsent') ops.push({ ...b, kind: 'put', value: pick(['x', '1']), ifAbsent: true, ...mismatch });
    if (kind === 'delIf') ops.push({ ...b, kind: 'del', ...expected, ...mismatch, ...(b.outcome === 'ok' ? { existed: true } : {}) });
    if (kind === 'del') ops.push({ ...b, kind, ...(b.outcome === 'ok' ? { existed: pick([true, false]) } : {}) });
  }
  return ops;
}

describe('agreement with the definition', () => {
  test('gives the same verdict as a brute-force search on 20000 small random histories', () => {
    // Proves the search and its shortcuts (memo with dominance, forced observers, indeterminate writes only
    // where a candidate rejects, interchangeable classes) neither miss a linearization nor invent one.
    const random = rng(2025);
    const verdicts = { linearizable: 0, not: 0, withInfo: 0, withRefusal: 0 };
    for (let n = 0; n < 20000; n++) {
      const history = smallRandomHistory(random);
      const expected = bruteForceLinearizable(history);
      const result = checkRmwHistory(history);
      if (result.linearizable !== expected) throw new Error(`verdict ${result.linearizable}, expected ${expected}: ${JSON.stringify(history)}`);
      verdicts[expected ? 'linearizable' : 'not']++;
      if (expected && history.some((op) => op.outcome === 'info' && op.kind !== 'get')) verdicts.withInfo++;
      if (expected && history.some((op) => op.mismatchVersion !== undefined)) verdicts.withRefusal++;
    }
    // Both verdicts, and linearizable histories that need info writes or 412s, must be well represented.
    expect(verdicts.linearizable).toBeGreaterThan(4000);
    expect(verdicts.not).toBeGreaterThan(4000);
    expect(verdicts.withInfo).toBeGreaterThan(1000);
    expect(verdicts.withRefusal).toBeGreaterThan(500);
  });
});
