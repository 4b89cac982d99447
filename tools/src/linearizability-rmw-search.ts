import type { Anomaly, Operation } from './linearizability';
import { Bitset, buildEventList, ConfigurationCache, describeOp, lift, NO_COUNTS, opsAround, overBudget, unlift, type Budget, type EventNode } from './linearizability-parts';
import { below, isBlind, isObserver, REJECTED, step, upperTarget, type Effect, type SearchOp, type State } from './linearizability-rmw-model';

/**
 * The search of linearizability-rmw.ts over one key (its header gives the rules 1-4 and why they are sound).
 * `reuse`: the relaxed search, where each indeterminate write may take effect any number of times, so no
 * usage counts are kept; a run of them is then capped at their number (an exact linearization of least length
 * never has a longer one), so the relaxed search still allows every exact linearization, and more.
 */

/** Indeterminate writes with the same effect, each class in invocation order (rule 3). */
function infoClasses(info: readonly SearchOp[]): SearchOp[][] {
  const bySignature = new Map<string, SearchOp[]>();
  for (const op of info) {
    const signature = JSON.stringify(op.effect);
    const members = bySignature.get(signature);
    if (members) members.push(op);
    else bySignature.set(signature, [op]);
  }
  return [...bySignature.values()].map((members) => members.sort((a, b) => a.invokeMs - b.invokeMs));
}

/** One way on from a configuration: a definite op (its call event) or the next write of an info class, and the state after it. */
interface Move {
  call: EventNode | undefined;
  infoClass: number;
  next: State;
}

/** Where a run of indeterminate writes stands: how long it is and the state it started from (none: not in a run). */
interface Run {
  length: number;
  start: State;
}
const NO_RUN: Run = { length: 0, start: null };

/** A configuration on the search path: the move that entered it, what it changed (to undo it), and its moves still to try. */
interface Frame {
  entered: Move | undefined;
  stateBefore: State;
  runBefore: Run;
  moves: Move[];
  nextMove: number;
}

/** The furthest the search got, for the report. */
interface Deepest {
  depth: number;
  infoApplied: number;
  /** the op whose return it could not pass there */
  blocked: SearchOp | undefined;
  state: State;
}

export class RmwSearch {
  /** search steps taken, counted against the budget */
  steps = 0;
  private readonly ops: readonly SearchOp[];
  private readonly head: EventNode;
  private readonly linearized: Bitset;
  private readonly cache = new ConfigurationCache<string>();
  private readonly classes: SearchOp[][];
  /** per info class, how many of its earliest-invoked members are used (rule 3); empty when reusing */
  private readonly infoUsed: Int32Array;
  /** every indeterminate write is an increment by a positive amount: inside a run the counter only goes up (rule 4) */
  private readonly increasingOnly: boolean;
  private readonly runLengthMax: number;
  private readonly frames: Frame[] = [];
  private state: State = null;
  private run: Run = NO_RUN;
  private linearizedCount = 0;
  private infoApplied = 0;
  private deepest: Deepest = { depth: -1, infoApplied: 0, blocked: undefined, state: null };

  constructor(
    definite: readonly SearchOp[],
    info: readonly SearchOp[],
    private readonly reuse: boolean,
  ) {
    // Numbered by completion, so that linearized sets are compact (see Bitset.trim).
    this.ops = [...definite].sort((a, b) => a.completeMs - b.completeMs);
    this.head = buildEventList(this.ops);
    this.linearized = new Bitset(this.ops.length);
    this.classes = infoClasses(info);
    this.infoUsed = reuse ? NO_COUNTS : new Int32Array(this.classes.length);
    this.increasingOnly = this.classes.every((c) => c[0]!.effect.type === 'add' && c[0]!.effect.by > 0);
    this.runLengthMax = info.length;
  }

  runSearch(budget: Budget): 'linearizable' | 'undecided' | 'violation' {
    this.cache.addIfNew(this.linearized, this.memoState(), this.infoUsed);
    this.frames.push({ entered: undefined, stateBefore: this.state, runBefore: this.run, moves: this.movesHere(), nextMove: 0 });
    while (this.head.next !== null) {
      if (overBudget(this.steps, this.cache.bytes, budget)) return 'undecided';
      this.steps++;
      const top = this.frames[this.frames.length - 1]!;
      if (top.nextMove === top.moves.length) {
        this.noteDeepest();
        if (this.frames.length === 1) return 'violation';
        this.undo(this.frames.pop()!);
        continue;
      }
      const frame: Frame = { entered: top.moves[top.nextMove++]!, stateBefore: this.state, runBefore: this.run, moves: [], nextMove: 0 };
      this.take(frame.entered!);
      if (!this.cache.addIfNew(this.linearized, this.memoState(), this.infoUsed)) {
        this.undo(frame);
        continue;
      }
      frame.moves = this.movesHere();
      this.frames.push(frame);
    }
    return 'linearizable';
  }

  /** The state as the memo tells configurations apart: inside a run the moves depend on its start (and length, when capped). */
  private memoState(): string {
    if (this.run.length === 0) return JSON.stringify(this.state);
    return `r${this.reuse ? this.run.length : ''}${JSON.stringify(this.run.start)}${JSON.stringify(this.state)}`;
  }

  private take(move: Move): void {
    if (move.call !== undefined) {
      this.linearized.set(move.call.op);
      this.linearizedCount++;
      lift(move.call);
      this.run = NO_RUN;
    } else {
      if (!this.reuse) this.infoUsed[move.infoClass]! += 1;
      this.infoApplied++;
      this.run = { length: this.run.length + 1, start: this.run.length === 0 ? this.state : this.run.start };
    }
    this.state = move.next;
  }

  private undo(frame: Frame): void {
    const move = frame.entered!;
    if (move.call !== undefined) {
      this.linearized.clear(move.call.op);
      this.linearizedCount--;
      unlift(move.call);
    } else {
      if (!this.reuse) this.infoUsed[move.infoClass]! -= 1;
      this.infoApplied--;
    }
    this.state = frame.stateBefore;
    this.run = frame.runBefore;
  }

  /**
   * The moves from here: a forced observer alone (rule 1); else every candidate that accepts the state (inside
   * a run, only those that rejected the state it started from: rule 2's D), then, if some candidate rejects
   * that starting state, the indeterminate writes rules 3-4 allow.
   */
  private movesHere(): Move[] {
    const moves: Move[] = [];
    const enders: Effect[] = [];
    const inRun = this.run.length > 0;
    const start = inRun ? this.run.start : this.state;
    let node = this.head.next;
    for (; node !== null && node.isCall; node = node.next) {
      const effect = this.ops[node.op]!.effect;
      const next = step(this.state, effect);
      if (next !== REJECTED && isObserver(effect)) return [{ call: node, infoClass: -1, next }];
      const endsRun = step(start, effect) === REJECTED;
      if (endsRun) enders.push(effect);
      if (next !== REJECTED && (endsRun || !inRun)) moves.push({ call: node, infoClass: -1, next });
    }
    if (enders.length > 0 && this.run.length < this.runLengthMax) this.addInfoMoves(moves, enders, node === null ? Infinity : node.timeMs);
    return moves;
  }

  /** Rules 3-4: the next write of each class, if it leaves a state that an ender or a further write accepts. */
  private addInfoMoves(moves: Move[], enders: readonly Effect[], firstReturnMs: number): void {
    const bound = this.increasingOnly ? upperTarget(enders) : Infinity;
    const canGoOn = this.run.length + 1 < this.runLengthMax;
    this.classes.forEach((_, i) => {
      const write = this.nextInfoWrite(i, 0, firstReturnMs);
      if (write === undefined || (this.run.length > 0 && isBlind(write.effect))) return;
      const next = step(this.state, write.effect);
      if (next === REJECTED) return;
      const ends = enders.some((e) => step(next, e) !== REJECTED);
      if (ends || (canGoOn && below(next, bound) && this.chainsOn(next, i, firstReturnMs))) moves.push({ call: undefined, infoClass: i, next });
    });
  }

  /** The class's next unused write (`skip` more on; its first when reusing), if invoked by the first return (an equal millisecond is concurrent). */
  private nextInfoWrite(infoClass: number, skip: number, firstReturnMs: number): SearchOp | undefined {
    const write = this.classes[infoClass]![this.reuse ? 0 : this.infoUsed[infoClass]! + skip];
    return write === undefined || write.invokeMs > firstReturnMs ? undefined : write;
  }

  /** Whether the next write of some class (not a blind one: rule 4) accepts `s`, once one of `usedClass` is used. */
  private chainsOn(s: State, usedClass: number, firstReturnMs: number): boolean {
    return this.classes.some((_, j) => {
      const write = this.nextInfoWrite(j, j === usedClass ? 1 : 0, firstReturnMs);
      return write !== undefined && !isBlind(write.effect) && step(s, write.effect) !== REJECTED;
    });
  }

  private noteDeepest(): void {
    if (this.linearizedCount <= this.deepest.depth) return;
    let node = this.head.next;
    while (node !== null && node.isCall) node = node.next;
    this.deepest = { depth: this.linearizedCount, infoApplied: this.infoApplied, blocked: node === null ? undefined : this.ops[node.op], state: this.state };
  }

  describe(key: string, sources: readonly Operation[]): Anomaly {
    const { depth, infoApplied, blocked, state } = this.deepest;
    const op = blocked?.source ?? sources[0]!;
    const message =
      `${describeOp(op)} cannot be linearized: the longest linearizable prefix found ` +
      `(${depth} of ${this.ops.length} definite operations, with ${infoApplied} indeterminate writes applied) ` +
      `leaves ${JSON.stringify(key)} ${state === null ? 'absent' : `= ${JSON.stringify(state)}`}, ` +
      `and no order of the operations still pending lets it take effect before it completed`;
    return { key, message, operations: opsAround(sources, op) };
  }
}
