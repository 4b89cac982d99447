import type { CheckResult, Operation } from './linearizability';
import { budgetOf, describeOp, groupByKey, type Budget } from './linearizability-parts';
import type { Effect, SearchOp, State } from './linearizability-rmw-model';
import { RmwSearch } from './linearizability-rmw-search';
import { versionAnomalies, versionTies } from './linearizability-versions';

/**
 * Linearizability checker for read-modify-write histories: counters (`/incr`), compare-and-set (`ifVersion`,
 * `ifAbsent`, a delete's `ifVersion`), and the plain gets, puts and deletes beside them.
 *
 * The model, per key (linearizability is local, so each key is checked alone, as in linearizability.ts). The
 * state is a value or absent. A get returns it. A put writes its value, a delete writes absent (an
 * acknowledged delete's `existed` must match). An increment adds `by` to the decimal integer held (absent
 * counts as 0); acknowledged, it returned the sum. A compare-and-set is a put (or delete) with `ifVersion`
 * that its client sent after reading (value V, version v): values are unique per write, so "the version is v"
 * is "the value is V" (no ABA), and it is modelled as "write only if the state is V"; `ifAbsent` as "only if
 * absent". Versions themselves stay out of the search; linearizability-versions.ts checks them after the fact
 * (two acknowledged writes never share one, a get of V reports the version V's writer acknowledged, ...).
 * A 412 version_mismatch applied nothing but observed the state: at its instant the state was not the
 * expected one. It is kept as an operation that writes nothing, with its interval, like a get. When the
 * version it reports is tied to one state by another answer (an acknowledgement or a get; null: absent),
 * the state at its instant was that one, which constrains more.
 *
 * Outcomes. ok and 412 are definite, with their interval. Another definite failure applied nothing and
 * observed nothing: dropped. An indeterminate write (timeout, 504, lost connection) may have taken effect at
 * any instant after its invocation, or never: Porcupine's reading, a return at +infinity. An indeterminate get
 * constrains nothing: dropped. The search is over when every definite operation is placed.
 *
 * The search: Wing & Gong with Lowe's memo, as in linearizability.ts, depth first over an explicit stack. A
 * configuration is (the definite operations linearized, the state, how many of each class of indeterminate
 * writes are used). Its moves: a candidate (a definite operation whose call comes before the first return
 * still in the event list) that accepts the state, or the next indeterminate write of a class, if invoked by
 * that first return. Why the restrictions below lose no linearization: each turns any linearization from a
 * configuration into one of the restricted form, no longer, so by induction on its length the search, which
 * tries every move of that form, finds one when one exists.
 *  1. Forced observers. A candidate get or 412 that accepts the state is taken at once, with no alternative:
 *     moved to the front of any linearization of the rest it sees the same state and changes none, and breaks
 *     no real-time order (it is a candidate: no operation left returned before its call).
 *  2. Indeterminate writes only where needed. Take the run of them at the front of a linearization, and D the
 *     definite operation after it. If D accepts the state before the run too: D a write whose result does not
 *     depend on the state (put, delete, a compare-and-set that holds) leaves the same state either way, so the
 *     run can be dropped; D an acknowledged increment accepts exactly one state (its answer minus `by`), so
 *     the run changed nothing and can be dropped; D an observer (get, 412) can go before the run (as in 1). A
 *     run at the end is dropped.
 *     So indeterminate writes are tried only when some candidate rejects the state (D is a candidate there).
 *  3. Interchangeable indeterminate writes. Those with the same effect (an incr by the same amount, the same
 *     put) are used in invocation order: an earlier-invoked one can stand wherever a later one stands. The
 *     configuration records how many of each class are used, and one with fewer used in every class, the same
 *     linearized set and the same state dominates it (it can do all it can), so the memo skips the dominated.
 *  4. Short runs. Take a linearization of least length. In its runs of indeterminate writes, a blind one (a put
 *     or delete with no condition) comes first: it overwrites the state, so the writes before it in the run
 *     could be dropped. Each write in a run leaves a state that the next write of the run accepts, or D, which
 *     rejected the state the run started from (rule 2). So inside a run a blind write is not tried, only such
 *     a D may end it, and a write is tried only if such a D or the next write of some class accepts the state
 *     it leaves. When every indeterminate write is an increment by a positive amount, the counter only goes
 *     up inside a run, so it need not go past the largest value such a D accepts. Configurations inside a run
 *     are memoised apart, with the state the run started from.
 * The argument runs in that order: where a candidate observer accepts the state, rule 1 applies; where none
 * does, a least-length linearization that starts with a run has a D that rejects the state (else dropping the
 * run would shorten it, or D is an observer that accepts it), and rules 3-4 pick its first write; inside a run,
 * what is left of that linearization still has that form.
 * As in linearizability.ts, a relaxed search runs first, where indeterminate writes may take effect any number
 * of times (no usage counts, so a failing search stays cheap; see checkKey and linearizability-rmw-search.ts).
 * The memo bounds the search by the number of distinct configurations; for the histories a chaos run makes (a
 * few operations in flight per key, few indeterminate ones) that is about linear in the length. The limits:
 * k indeterminate increments in flight at once can multiply a failing search by the number of their subsets
 * with distinct sums; many definite operations overlapping on one key multiply it too. A key over the budget
 * (steps, time, memo memory) is reported undecided, never guessed. Every shortcut is checked against a
 * brute-force search over all orders in linearizability-rmw.test.ts.
 */

export function checkRmwHistory(history: readonly Operation[], opts: { maxStepsPerKey?: number; timeoutMs?: number } = {}): CheckResult {
  const budget = budgetOf(opts);
  const byKey = groupByKey(history, assertWellFormed);
  const result: CheckResult = { linearizable: true, keys: byKey.size, operations: 0, indeterminate: 0, anomalies: [], undecided: [] };
  for (const [key, sources] of byKey) {
    result.anomalies.push(...versionAnomalies(key, sources));
    const ops = searchOps(sources, versionTies(sources));
    const info = ops.filter((op) => !op.definite);
    result.operations += ops.length;
    result.indeterminate += info.length;
    const verdict = checkKey(ops.filter((op) => op.definite), info, budget);
    if (verdict.kind === 'undecided') result.undecided.push(key);
    if (verdict.kind === 'violation') result.anomalies.push(verdict.search.describe(key, sources));
  }
  // An undecided key is not a proof of linearizability, so it does not count as passing.
  result.linearizable = result.anomalies.length === 0 && result.undecided.length === 0;
  return result;
}

/** A malformed record is a bug in whoever recorded the history; a verdict built on it would mislead. */
function assertWellFormed(op: Operation): void {
  const fail = (why: string): never => {
    throw new RangeError(`checkRmwHistory: ${describeOp(op)}: ${why}`);
  };
  if (!Number.isFinite(op.invokeMs)) fail('invokeMs must be a finite number');
  if (op.kind === 'put' && typeof op.value !== 'string') fail('a put must carry the value it wrote');
  if (op.kind === 'incr' && !Number.isSafeInteger(op.by)) fail('an incr must carry the amount it adds (a safe integer)');
  if (op.ifVersion !== undefined && (op.kind === 'get' || op.kind === 'incr' || typeof op.expectedValue !== 'string')) fail('ifVersion is for a put or a del, with the value read at that version (expectedValue)');
  if (op.ifAbsent !== undefined && (op.kind !== 'put' || op.ifVersion !== undefined)) fail('ifAbsent is for a put without ifVersion');
  if (op.mismatchVersion !== undefined && (op.outcome !== 'fail' || (op.ifVersion === undefined && op.ifAbsent !== true))) fail('a version mismatch is a definite failure of a conditional write');
  if (op.outcome === 'info' || (op.outcome === 'fail' && op.mismatchVersion === undefined)) return;
  if (!Number.isFinite(op.completeMs) || op.completeMs < op.invokeMs) fail('completeMs must be finite and not before invokeMs');
  if (op.outcome !== 'ok') return;
  if (op.kind === 'get' && op.result === undefined) fail('a successful get must carry its result (null when absent)');
  if (op.kind === 'incr' && typeof op.result !== 'string') fail('a successful incr must carry the new value');
}

/** Keeps what constrains the verdict: acknowledged operations, 412s, indeterminate writes. */
function searchOps(sources: readonly Operation[], ties: ReadonlyMap<number, State>): SearchOp[] {
  const ops: SearchOp[] = [];
  for (const op of sources) {
    const refused = op.mismatchVersion !== undefined;
    if ((op.outcome === 'fail' && !refused) || (op.outcome === 'info' && op.kind === 'get')) continue;
    const definite = op.outcome !== 'info';
    ops.push({ source: op, effect: effectOf(op, definite, ties), definite, invokeMs: op.invokeMs, completeMs: definite ? op.completeMs : Infinity });
  }
  return ops;
}

function effectOf(op: Operation, definite: boolean, ties: ReadonlyMap<number, State>): Effect {
  const requires = op.ifAbsent === true ? { state: null } : op.ifVersion !== undefined ? { state: op.expectedValue! } : undefined;
  if (op.mismatchVersion !== undefined) {
    const current = op.mismatchVersion === null ? null : ties.get(op.mismatchVersion);
    return current === undefined ? { type: 'refused', expected: requires!.state } : { type: 'refused', expected: requires!.state, current };
  }
  switch (op.kind) {
    case 'get':
      return { type: 'read', result: op.result! };
    case 'incr':
      return definite ? { type: 'add', by: op.by!, result: op.result! } : { type: 'add', by: op.by! };
    case 'put':
      return requires === undefined ? { type: 'write', writes: op.value! } : { type: 'write', writes: op.value!, requires };
    case 'del': {
      // An indeterminate delete's `existed` was never answered.
      const existed = definite ? op.existed : undefined;
      return { type: 'write', writes: null, ...(requires === undefined ? {} : { requires }), ...(existed === undefined ? {} : { existed }) };
    }
  }
}

/** The relaxed search gets at most this share of a key's step budget; the exact one gets the rest. */
const RELAXED_SHARE_OF_STEPS = 0.5;

/**
 * Why two searches (as in linearizability.ts): the usage counts of rule 3 make a failing search revisit the
 * same operations and state once per combination of indeterminate writes used. The relaxed search lets each
 * of them take effect any number of times, needs no counts and allows more than the truth: when it fails, the
 * key is not linearizable. When it passes (or runs out of its share), the exact search decides.
 */
function checkKey(definite: readonly SearchOp[], info: readonly SearchOp[], budget: Budget): { kind: 'linearizable' | 'undecided' } | { kind: 'violation'; search: RmwSearch } {
  const relaxed = new RmwSearch(definite, info, true);
  const relaxedVerdict = relaxed.runSearch({ ...budget, maxSteps: Math.ceil(budget.maxSteps * RELAXED_SHARE_OF_STEPS) });
  if (relaxedVerdict === 'violation') return { kind: 'violation', search: relaxed };
  if (info.length === 0 && relaxedVerdict === 'linearizable') return { kind: relaxedVerdict };
  const exact = new RmwSearch(definite, info, false);
  const verdict = exact.runSearch({ ...budget, maxSteps: budget.maxSteps - relaxed.steps });
  return verdict === 'violation' ? { kind: verdict, search: exact } : { kind: verdict };
}
