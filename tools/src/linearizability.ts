import { Bitset, budgetOf, buildEventList, ConfigurationCache, describeOp, groupByKey, lift, opsAround, overBudget, unlift, type Budget, type EventNode } from './linearizability-parts';

/**
 * Linearizability checker for shardkv client histories.
 *
 * What it decides. Each operation in a history ran during the interval [invoke, complete] that a client saw.
 * The history is linearizable when every operation can be given one instant inside its interval such that
 * applying the operations one by one in that order to the model (one register per key, initially absent)
 * gives exactly the answers the clients got.
 *
 * The search: Wing & Gong (1993), with Lowe's memoisation ("Testing for linearizability", 2017), in the
 * iterative form Porcupine uses. All call and return events go into one list ordered by time. Walk it from
 * the front. At a call, try to linearize that operation now: the model may refuse it (a get that returned a
 * different value). If it accepts, remove the operation's call and return from the list, push it on a stack
 * and start again from the front. Reaching a return means that operation had to take effect before this
 * moment and nothing tried so far allows it, so pop the last linearized operation, put it back and try its
 * next alternative, then the next call after it. An empty list means a linearization was found; an empty
 * stack at a return means none exists. Lowe's addition: what the rest of the search can do depends only on
 * which operations are linearized and on the model state, so each (linearized set as a bitset, state) pair
 * is recorded and never explored twice. That bounds the search by the number of distinct configurations,
 * which for real histories (a few operations in flight at a time) grows about linearly with their length.
 *
 * Per-key splitting. Linearizability is local (Herlihy & Wing 1990; "P-compositionality" in Porcupine): a
 * history is linearizable iff each object's sub-history is. Every shardkv operation touches exactly one key
 * and the model keeps an independent register per key, so each key is an object and is checked alone. The
 * cost is then that of the worst key rather than of all interleavings across keys, and a failure names its key.
 *
 * Failed and indeterminate operations. A `fail` operation definitely had no effect, so it is dropped. An
 * `info` get got no answer, constrains nothing and is dropped. An `info` put or del may have taken effect at
 * any instant after its invocation, or never. Porcupine and Knossos give such an operation a return at
 * +infinity, so it may be linearized anywhere after its invocation or left for last (the same as never).
 * Done literally, every info write is a candidate at every step after its invocation and k of them multiply
 * what a failing search must exhaust by up to 2^k: a 10k-operation key with a few hundred timeouts could not
 * be decided. Three exchange arguments remove that; each turns any linearization into one of a restricted
 * form, so restricting the search to that form loses nothing:
 *  1. An info write matters only when the operation right after it observes the state (a get, or a del that
 *     reported `existed`) and would reject the state without it; otherwise it can be dropped from the
 *     linearization. So info writes are kept out of the event list and used only fused to such an observer:
 *     "the info write, then the observer", at a moment when both had been invoked.
 *  2. Info writes that leave the same state are interchangeable (no answer to check, no deadline), so each
 *     such class is used in invocation order: which ones are used is then just how many per class.
 *  3. Having used fewer of each class never hurts (the unused ones stay available), so a configuration counts
 *     as seen when one with the same linearized operations and state, and no more info writes used in any
 *     class, was seen.
 * The usage counts still multiply what a failing search must exhaust, so each key is first checked with info
 * writes that may take effect any number of times (no counts): that allows more than the truth, so if it
 * fails the key is not linearizable, and only if it passes does the exact search run (see checkKey).
 *
 * Two more exchange arguments cut the branching among definite operations in flight together: a get that
 * accepts the current state is linearized at once with no alternative tried (see Pass), and of two operations
 * with the same effect and answer (e.g. puts of values nobody read) only the earlier-completing is tried
 * first (see KeySearch.hasEarlierTwin). The cost still grows exponentially with the number of operations in
 * flight on one key at once in the worst case: a few to ten is cheap, twenty heavily overlapping can exceed
 * the budget. Every shortcut is checked against a brute-force search in the tests.
 *
 * The search is iterative (an explicit stack, so a 10k-operation key cannot overflow the call stack) and has
 * a budget of steps, time and memoisation memory; a key that exceeds it is reported undecided, not guessed.
 */

/** `incr` and the conditions below are for checkRmwHistory (linearizability-rmw.ts); this file's register checker refuses them. */
export type OpKind = 'get' | 'put' | 'del' | 'incr';
/** ok: it took effect (and `result` is what it returned); fail: definitely had no effect (e.g. 503); info: indeterminate (timeout/504/connection error): it may or may not have taken effect, at any time after its invocation. */
export type Outcome = 'ok' | 'fail' | 'info';
export interface Operation {
  id?: number;
  client: number;
  key: string;
  kind: OpKind;
  /** put: the value written */
  value?: string;
  /** incr: the amount added */
  by?: number;
  /** put, del: applied only at this version (`ifVersion`); always with `expectedValue` */
  ifVersion?: number;
  /** with `ifVersion`: the value the client read at that version (values are unique per write, so "at version v" is "holds this value") */
  expectedValue?: string;
  /** put: applied only if the key is absent (`ifAbsent`) */
  ifAbsent?: boolean;
  invokeMs: number;
  /** when the answer arrived; ignored for `info` (treated as never completing) */
  completeMs: number;
  outcome: Outcome;
  /** get with outcome ok: the value read, null when absent; incr with outcome ok: the new value */
  result?: string | null;
  /** del with outcome ok: whether the key existed, when the API said so */
  existed?: boolean;
  /** outcome ok: the version a get read, the version a put or incr made, the seq a del got (when the answer said) */
  version?: number;
  /**
   * outcome fail, on a conditional write refused with 412 version_mismatch: the key's version the answer
   * reported (null: absent). A refusal applied nothing but observed the state: the condition did not hold.
   */
  mismatchVersion?: number | null;
}
export interface Anomaly {
  key: string;
  message: string;
  operations: Operation[];
}
export interface CheckResult {
  linearizable: boolean;
  keys: number;
  operations: number; // after dropping `fail` ops and `info` gets
  indeterminate: number; // info ops kept (writes)
  anomalies: Anomaly[]; // one per non-linearizable key, with a short readable message and the key's ops (bounded, e.g. the ops around the failure)
  /** keys whose search hit the step/time budget: not proven either way */
  undecided: string[];
}


/**
 * Stands for every value that no get ever returned. Such values can only be told apart from each other by a
 * read, and there is none, so mapping them to one state loses nothing and lets the cache merge configurations
 * that differ only in which unread value the key holds (e.g. after concurrent puts taken in different orders).
 */
const UNREAD = Symbol('unread');
/** The model state of one key: its value (or UNREAD), or null when absent. */
type State = string | null | typeof UNREAD;

/** An operation as the search sees it. */
interface KeyOp {
  source: Operation;
  /** never an incr: assertWellFormed refuses them */
  kind: Exclude<OpKind, 'incr'>;
  /** put: the state it leaves (its value, or UNREAD); del: null */
  writes: State;
  /** get: the value read */
  result: string | null;
  /** del: whether the key existed, when the answer said so */
  existed: boolean | undefined;
  invokeMs: number;
  /** meaningful for definite ops only */
  completeMs: number;
  /** false for info writes: they may have taken effect or not */
  definite: boolean;
}

/** Info writes that leave the same state, in invocation order (see rule 2 at the top of the file). */
interface InfoClass {
  state: State;
  members: KeyOp[];
}

type Verdict =
  | { kind: 'linearizable' }
  | { kind: 'undecided' }
  | { kind: 'violation'; depth: number; total: number; blocked: KeyOp; lastWrite: KeyOp | undefined };

export function checkHistory(
  history: readonly Operation[],
  opts: { maxStepsPerKey?: number; timeoutMs?: number } = {},
): CheckResult {
  const budget = budgetOf(opts);
  const byKey = groupByKey(history, assertWellFormed);
  const result: CheckResult = { linearizable: true, keys: byKey.size, operations: 0, indeterminate: 0, anomalies: [], undecided: [] };
  for (const [key, sources] of byKey) {
    const ops = constrainingOps(sources);
    const infoWrites = ops.filter((op) => !op.definite);
    result.operations += ops.length;
    result.indeterminate += infoWrites.length;
    const verdict = checkKey(ops.filter((op) => op.definite), infoWrites, budget);
    if (verdict.kind === 'undecided') result.undecided.push(key);
    if (verdict.kind === 'violation') result.anomalies.push(describeAnomaly(key, sources, verdict));
  }
  // An undecided key is not a proof of linearizability, so it does not count as passing.
  result.linearizable = result.anomalies.length === 0 && result.undecided.length === 0;
  return result;
}

/** A malformed record is a bug in whoever recorded the history; a verdict built on it would mislead. */
function assertWellFormed(op: Operation): void {
  const fail = (why: string): never => {
    throw new RangeError(`checkHistory: ${describeOp(op)}: ${why}`);
  };
  if (!Number.isFinite(op.invokeMs)) fail('invokeMs must be a finite number');
  if (op.kind === 'incr' || op.ifVersion !== undefined || op.ifAbsent !== undefined || op.mismatchVersion !== undefined) {
    fail('the register model has no increments or conditions: check this history with checkRmwHistory');
  }
  if (op.kind === 'put' && typeof op.value !== 'string') fail('a put must carry the value it wrote');
  if (op.outcome !== 'ok') return;
  if (!Number.isFinite(op.completeMs) || op.completeMs < op.invokeMs) fail('completeMs must be finite and not before invokeMs');
  if (op.kind === 'get' && op.result === undefined) fail('a successful get must carry its result (null when absent)');
}

/** Drops what cannot constrain the verdict: `fail` ops (no effect) and `info` gets (no answer). */
function constrainingOps(sources: readonly Operation[]): KeyOp[] {
  const read = new Set(sources.filter((op) => op.outcome === 'ok' && op.kind === 'get').map((op) => op.result));
  const ops: KeyOp[] = [];
  for (const op of sources) {
    if (op.outcome === 'fail' || (op.outcome === 'info' && op.kind === 'get')) continue;
    const definite = op.outcome === 'ok';
    ops.push({
      source: op,
      kind: op.kind as KeyOp['kind'],
      writes: op.kind !== 'put' ? null : read.has(op.value) ? op.value! : UNREAD,
      result: op.result ?? null,
      existed: definite ? op.existed : undefined,
      invokeMs: op.invokeMs,
      completeMs: definite ? op.completeMs : Infinity,
      definite,
    });
  }
  return ops;
}

/**
 * Why two searches: with info writes, the usage counts of rule 2 are part of each configuration, and a failing
 * search (which must exhaust every configuration) can revisit the same ops and state once per usage level.
 * So the first search lets every info write take effect any number of times, which needs no counts and costs
 * about what a history without info writes costs. It allows more than the truth, so when it fails the history
 * is not linearizable. When it passes, the linearization it found may have used a write twice, so the exact
 * search runs next; on a linearizable history that one also finds a linearization without exhausting much.
 */
function checkKey(definite: readonly KeyOp[], infoWrites: readonly KeyOp[], budget: Budget): Verdict {
  const relaxed = new KeySearch(definite, infoWrites, true);
  const verdict = relaxed.run(budget);
  if (verdict.kind !== 'linearizable' || infoWrites.length === 0) return verdict;
  return new KeySearch(definite, infoWrites, false).run({ ...budget, maxSteps: budget.maxSteps - relaxed.steps });
}

function groupInfoClasses(infoWrites: readonly KeyOp[]): InfoClass[] {
  const byState = new Map<State, KeyOp[]>();
  for (const op of infoWrites) {
    const members = byState.get(op.writes);
    if (members) members.push(op);
    else byState.set(op.writes, [op]);
  }
  return [...byState].map(([state, members]) => ({ state, members: members.sort((a, b) => a.invokeMs - b.invokeMs) }));
}

/** The model: one register. Returns the state after `op`, or REJECTED when `op`'s answer is impossible from `state`. */
const REJECTED = Symbol('rejected');
function applyOp(state: State, op: KeyOp): State | typeof REJECTED {
  switch (op.kind) {
    case 'put':
      return op.writes;
    case 'del':
      return op.existed === undefined || op.existed === (state !== null) ? null : REJECTED;
    case 'get':
      return op.result === state ? state : REJECTED;
  }
}

/** What the search did at one linearization, so it can be undone and the next alternative tried. */
interface Step {
  call: EventNode;
  stateBefore: State;
  /** the pass it was taken in, and its index among the op's alternatives there (see alternativesFor) */
  pass: Pass;
  alternative: number;
  /** the info class one write was used from just before the op, or -1; and that write */
  infoClass: number;
  infoWrite: KeyOp | undefined;
}

/**
 * Moves from a configuration are tried in passes over the candidate calls (those before the first return).
 * Pass 0, forced reads: a get that accepts the current state is linearized at once and nothing else is tried
 * from that configuration. WLOG: in any linearization of the rest, moving that get to the front changes no
 * state (it writes nothing) and breaks no real-time order (every op left returns no earlier than the get was
 * invoked, or the get would not be a candidate). Pass 1: each op alone. Pass 2: each op fused to an info write
 * (rule 1). Why pass 2 comes last: a configuration reached with fewer info writes used dominates the same one
 * reached with more (rule 3), so reaching it the cheap way first lets the cache cut the expensive ways off.
 */
type Pass = 0 | 1 | 2;
const FORCED: Pass = 0;
/** The op taken alone: its only alternative in passes 0 and 1. */
const ALONE: readonly number[] = [-1];
const NONE: readonly number[] = [];

/** Wing & Gong's search over one key's operations, with Lowe's cache of visited configurations. */
class KeySearch {
  /** search steps taken, counted against the budget */
  steps = 0;
  private readonly ops: readonly KeyOp[];
  private readonly head: EventNode;
  private readonly linearized: Bitset;
  private readonly cache = new ConfigurationCache<State>();
  private readonly stack: Step[] = [];
  /** per op, the latest-completing earlier op with the same effect and answer (see hasEarlierTwin), or -1 */
  private readonly earlierTwin: Int32Array;
  private readonly classes: InfoClass[];
  /** per info class, how many members are used: always its earliest-invoked ones (rule 2); all 0 when reusing */
  private readonly infoUsed: Int32Array;
  /** per observation (a get's result, a del's `existed`), the info classes whose state it accepts */
  private readonly observableClasses = new Map<string | boolean | null | undefined, number[]>();
  private state: State = null;
  /** the first return in the list, found once per change of the list (undefined: not known yet) */
  private firstReturnMemo: EventNode | null | undefined;
  /** the furthest the search got, for the report: the op it could not place and the write that set the state */
  private deepest: { depth: number; blocked: number; lastWrite: KeyOp | undefined } = { depth: -1, blocked: -1, lastWrite: undefined };

  /**
   * `ops`: the definite operations; `infoWrites`: the info puts and dels, used only as rule 1 allows.
   * `reuseInfoWrites`: let each info write take effect any number of times (the relaxed search of checkKey).
   */
  constructor(
    ops: readonly KeyOp[],
    infoWrites: readonly KeyOp[],
    private readonly reuseInfoWrites: boolean,
  ) {
    // Numbered by completion, so that linearized sets are compact (see Bitset.trim).
    this.ops = [...ops].sort((a, b) => a.completeMs - b.completeMs);
    this.head = buildEventList(this.ops);
    this.linearized = new Bitset(ops.length);
    this.earlierTwin = earlierTwins(this.ops);
    this.classes = groupInfoClasses(infoWrites);
    this.infoUsed = new Int32Array(this.classes.length);
  }

  run(budget: Budget): Verdict {
    let entry = this.head.next;
    let pass: Pass = FORCED;
    let firstAlternative = 0;
    for (; this.head.next !== null; this.steps++) {
      if (overBudget(this.steps, this.cache.bytes, budget)) return { kind: 'undecided' };
      // Every call is followed by its own return, so the walk meets a return before the end of the list.
      if (entry === null) throw new Error('linearizability: walked off the end of the event list');
      if (entry.isCall) {
        const tried = this.tryLinearize(entry, pass, firstAlternative);
        firstAlternative = 0;
        if (tried === 'moved') [entry, pass] = [this.head.next, FORCED];
        if (tried === 'not now') entry = entry.next;
        if (tried !== 'dead end') continue;
      } else {
        const nextPass = this.passAfter(pass);
        if (nextPass !== undefined) {
          [entry, pass] = [this.head.next, nextPass];
          continue;
        }
        this.noteDeepest(entry);
      }
      const undone = this.backtrackToChoice();
      if (undone === undefined) return this.violation();
      ({ call: entry, pass } = undone);
      firstAlternative = undone.alternative + 1;
    }
    return { kind: 'linearizable' };
  }

  private passAfter(pass: Pass): Pass | undefined {
    if (pass === FORCED) return 1;
    return pass === 1 && this.classes.length > 0 ? 2 : undefined;
  }

  /**
   * Linearizes the op of `call` now by the first of its alternatives in `pass`, from `firstAlternative` on,
   * that works. 'dead end': the op is a forced read whose configuration was explored before (and failed), so
   * by the argument at Pass this configuration fails too and the search should backtrack at once.
   */
  private tryLinearize(call: EventNode, pass: Pass, firstAlternative: number): 'moved' | 'not now' | 'dead end' {
    const op = this.ops[call.op]!;
    const alternatives = this.alternativesFor(op, pass);
    if (alternatives.length === 0 || (pass !== FORCED && this.hasEarlierTwin(call.op))) return 'not now';
    for (let alternative = firstAlternative; alternative < alternatives.length; alternative++) {
      if (this.tryAlternative(call, op, pass, alternative, alternatives[alternative]!)) return 'moved';
    }
    return pass === FORCED ? 'dead end' : 'not now';
  }

  /**
   * Pass 0: a get that accepts the current state. Pass 1: any other op that accepts it. Pass 2, for an op that
   * does not: per rule 1, "one info write, then the op", for each class whose state the op accepts. (When the
   * op accepts the current state, an info write before it would only use one up for the same outcome: a
   * dominated configuration, rule 3.)
   */
  private alternativesFor(op: KeyOp, pass: Pass): readonly number[] {
    const accepts = applyOp(this.state, op) !== REJECTED;
    if (pass !== 2) return accepts && (op.kind === 'get') === (pass === FORCED) ? ALONE : NONE;
    if (accepts) return NONE;
    // What the op accepts depends only on what it observed, so the answer is memoised per observation.
    const observation = op.kind === 'get' ? op.result : op.existed;
    let classes = this.observableClasses.get(observation);
    if (classes === undefined) {
      classes = this.classes.flatMap((c, i) => (applyOp(c.state, op) === REJECTED ? [] : [i]));
      this.observableClasses.set(observation, classes);
    }
    return classes;
  }

  /**
   * Whether an op with the same effect and answer that completed earlier is still unlinearized and a
   * candidate: then only that one is tried first. WLOG: two such twins can swap places in any linearization
   * (same state changes), and putting the earlier-completing one first cannot break a real-time order.
   * Without this, k unread puts in flight together would be tried in all 2^k subsets.
   */
  private hasEarlierTwin(opIndex: number): boolean {
    const twin = this.earlierTwin[opIndex]!;
    if (twin < 0 || this.linearized.has(twin)) return false;
    const firstReturn = this.firstReturn();
    return this.ops[twin]!.invokeMs <= (firstReturn === null ? Infinity : firstReturn.timeMs);
  }

  private tryAlternative(call: EventNode, op: KeyOp, pass: Pass, alternative: number, infoClass: number): boolean {
    const infoWrite = infoClass >= 0 ? this.nextInfoWrite(infoClass) : undefined;
    if (infoClass >= 0 && infoWrite === undefined) return false;
    const next = applyOp(infoClass >= 0 ? this.classes[infoClass]!.state : this.state, op);
    if (next === REJECTED) return false;
    this.linearized.set(call.op);
    this.countInfoWrite(infoClass, +1);
    if (!this.cache.addIfNew(this.linearized, next, this.infoUsed)) {
      this.linearized.clear(call.op);
      this.countInfoWrite(infoClass, -1);
      return false;
    }
    this.stack.push({ call, stateBefore: this.state, pass, alternative, infoClass, infoWrite });
    this.state = next;
    lift(call);
    this.firstReturnMemo = undefined;
    return true;
  }

  /**
   * The class's earliest-invoked unused write (its earliest at all, when reusing), if it had been invoked by the
   * latest instant the op being tried can take effect now: the first return still in the list. (The op is a
   * candidate, so its call comes before that return; a call at the same instant as a return is concurrent.)
   */
  private nextInfoWrite(infoClass: number): KeyOp | undefined {
    const write = this.classes[infoClass]!.members[this.reuseInfoWrites ? 0 : this.infoUsed[infoClass]!];
    if (write === undefined) return undefined;
    const firstReturn = this.firstReturn();
    return write.invokeMs <= (firstReturn === null ? Infinity : firstReturn.timeMs) ? write : undefined;
  }

  private firstReturn(): EventNode | null {
    if (this.firstReturnMemo !== undefined) return this.firstReturnMemo;
    let node = this.head.next;
    while (node !== null && node.isCall) node = node.next;
    return (this.firstReturnMemo = node);
  }

  private countInfoWrite(infoClass: number, delta: number): void {
    if (infoClass >= 0 && !this.reuseInfoWrites) this.infoUsed[infoClass]! += delta;
  }

  /** Undoes linearizations up to and including the last one that was a choice (not a forced read); undefined when none is left. */
  private backtrackToChoice(): Step | undefined {
    let undone: Step | undefined;
    do undone = this.backtrack();
    while (undone !== undefined && undone.pass === FORCED);
    return undone;
  }

  /** Undoes the last linearization and says which it was, or returns undefined when there is none. */
  private backtrack(): Step | undefined {
    const top = this.stack.pop();
    if (top === undefined) return undefined;
    this.state = top.stateBefore;
    this.linearized.clear(top.call.op);
    this.countInfoWrite(top.infoClass, -1);
    unlift(top.call);
    this.firstReturnMemo = undefined;
    return top;
  }

  private noteDeepest(blockedReturn: EventNode): void {
    if (this.stack.length <= this.deepest.depth) return;
    this.deepest = { depth: this.stack.length, blocked: blockedReturn.op, lastWrite: this.lastWrite() };
  }

  /** The write that set the current state (for the report: the state itself may be UNREAD, which says little). */
  private lastWrite(): KeyOp | undefined {
    for (let i = this.stack.length - 1; i >= 0; i--) {
      const step = this.stack[i]!;
      const op = this.ops[step.call.op]!;
      if (op.kind !== 'get') return op;
      if (step.infoWrite) return step.infoWrite;
    }
    return undefined;
  }

  private violation(): Verdict {
    const { depth, blocked, lastWrite } = this.deepest;
    return { kind: 'violation', depth, total: this.ops.length, blocked: this.ops[blocked]!, lastWrite };
  }
}

/** For each op (numbered by completion), the previous op with the same kind, effect and answer, or -1. */
function earlierTwins(ops: readonly KeyOp[]): Int32Array {
  const twins = new Int32Array(ops.length).fill(-1);
  const lastBySignature = new Map<string, number>();
  ops.forEach((op, i) => {
    const writes = op.writes === UNREAD ? 'unread' : JSON.stringify(op.writes);
    const signature = `${op.kind} ${writes} ${JSON.stringify(op.result)} ${op.existed}`;
    twins[i] = lastBySignature.get(signature) ?? -1;
    lastBySignature.set(signature, i);
  });
  return twins;
}

function describeAnomaly(key: string, sources: readonly Operation[], v: Extract<Verdict, { kind: 'violation' }>): Anomaly {
  const blocked = v.blocked.source;
  const message =
    `${describeOp(blocked)} cannot be linearized: the longest linearizable prefix found ` +
    `(${v.depth} of ${v.total} acknowledged operations) leaves ${JSON.stringify(key)} ${describeState(v.lastWrite)}, ` +
    `and no order of the operations still pending lets it take effect before it completed`;
  return { key, message, operations: opsAround(sources, blocked) };
}

function describeState(lastWrite: KeyOp | undefined): string {
  if (lastWrite === undefined) return 'absent (never written)';
  const by = `by ${describeOp(lastWrite.source)}`;
  return lastWrite.kind === 'put' ? `= ${JSON.stringify(lastWrite.source.value)} (written ${by})` : `absent (deleted ${by})`;
}
