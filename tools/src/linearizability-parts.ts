import type { Operation } from './linearizability';

/**
 * The parts of the linearizability search that do not depend on the model: the budget, the time-ordered
 * list of call and return events (Porcupine's dancing links), the set of linearized operations with its
 * incremental hash, Lowe's memo of configurations with dominance on indeterminate-write usage, and how an
 * anomaly is shown. linearizability.ts (the register) and linearizability-rmw.ts (counters, compare-and-set)
 * search with them.
 */

/** The memo of configurations grows with the search; past this a key is undecided rather than exhausting the heap. */
export const CACHE_BYTES_MAX = 256 * 1024 * 1024;
/** A rough per-entry cost of the objects, arrays and their headers, so many tiny entries are counted too. */
const CACHE_ENTRY_OVERHEAD_BYTES = 96;
/** Reading the clock costs more than a search step, so the deadline is checked only this often. */
export const CLOCK_CHECK_EVERY_STEPS = 4096;
/** An anomaly lists at most this many operations, so a report on a 10k-operation key stays readable. */
const ANOMALY_OPS_MAX = 40;
/** How many operations that completed before the blocked one began are listed: they set the state it saw. */
const ANOMALY_OPS_BEFORE = 8;

export interface Budget {
  maxSteps: number;
  deadlineMs: number;
}

const DEFAULT_MAX_STEPS_PER_KEY = 10_000_000;
const DEFAULT_TIMEOUT_MS = 60_000;

/** A check's budget from its options: steps per key, and a deadline for the whole history. */
export function budgetOf(opts: { maxStepsPerKey?: number; timeoutMs?: number }): Budget {
  return { maxSteps: opts.maxStepsPerKey ?? DEFAULT_MAX_STEPS_PER_KEY, deadlineMs: Date.now() + (opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) };
}

/** Past its steps, the memo's memory or (checked every CLOCK_CHECK_EVERY_STEPS) the deadline, a search stops undecided. */
export function overBudget(steps: number, cacheBytes: number, budget: Budget): boolean {
  if (steps >= budget.maxSteps || cacheBytes > CACHE_BYTES_MAX) return true;
  return steps % CLOCK_CHECK_EVERY_STEPS === 0 && Date.now() > budget.deadlineMs;
}

/** The history split by key (linearizability is local), each record checked by `assertWellFormed` first. */
export function groupByKey(history: readonly Operation[], assertWellFormed: (op: Operation) => void): Map<string, Operation[]> {
  const byKey = new Map<string, Operation[]>();
  for (const op of history) {
    assertWellFormed(op);
    const ops = byKey.get(op.key);
    if (ops) ops.push(op);
    else byKey.set(op.key, [op]);
  }
  return byKey;
}

/** One call or return event in the time-ordered list (a doubly linked list, so lifted events can be put back). */
export interface EventNode {
  op: number;
  isCall: boolean;
  timeMs: number;
  /** a call's return event (set for every call) */
  match: EventNode | null;
  prev: EventNode | null;
  next: EventNode | null;
}

/**
 * Orders all calls and returns by time. At equal times calls come first, so operations whose intervals only
 * touch count as concurrent: with millisecond clocks "completed at 5" and "invoked at 5" cannot be ordered.
 */
export function buildEventList(ops: readonly { invokeMs: number; completeMs: number }[]): EventNode {
  const events: EventNode[] = [];
  ops.forEach((op, i) => {
    const call = eventNode(i, true, op.invokeMs);
    call.match = eventNode(i, false, op.completeMs);
    events.push(call, call.match);
  });
  events.sort((a, b) => a.timeMs - b.timeMs || Number(!a.isCall) - Number(!b.isCall) || a.op - b.op);
  const head = eventNode(-1, false, -Infinity);
  let tail = head;
  for (const node of events) {
    node.prev = tail;
    tail.next = node;
    tail = node;
  }
  return head;
}

/** Every node built by one literal, so all share one hidden class (a spread here made building 20x slower). */
function eventNode(op: number, isCall: boolean, timeMs: number): EventNode {
  return { op, isCall, timeMs, match: null, prev: null, next: null };
}

/** Removes an op's call and return from the list; their own links are kept so unlift can restore them (dancing links). */
export function lift(call: EventNode): void {
  unlink(call);
  unlink(call.match!);
}

/** Restores what lift removed, in the reverse order, which is what makes the kept links valid again. */
export function unlift(call: EventNode): void {
  relink(call.match!);
  relink(call);
}

function unlink(node: EventNode): void {
  node.prev!.next = node.next;
  if (node.next) node.next.prev = node.prev;
}

function relink(node: EventNode): void {
  node.prev!.next = node;
  if (node.next) node.next.prev = node;
}

/**
 * The set of linearized ops. Its hash is kept up to date on every change (Zobrist hashing: the XOR of a random
 * word per member), so looking a configuration up in the cache costs O(1) until two hashes collide.
 */
export class Bitset {
  readonly words: Uint32Array;
  hash = 0;
  /**
   * After trim(): the words that tell this set apart, [fromWord, toWord). Between calls, hints that keep trim()
   * from rescanning the whole set: every word below fromWord is all ones, every word from toWord on is zero.
   */
  fromWord = 0;
  toWord = 0;
  private readonly zobrist: Uint32Array;

  constructor(size: number) {
    this.words = new Uint32Array((size + 31) >>> 5);
    this.zobrist = randomWords(size);
  }

  set(i: number): void {
    const w = i >>> 5;
    this.words[w] = this.words[w]! | (1 << (i & 31));
    this.hash ^= this.zobrist[i]!;
    if (w >= this.toWord) this.toWord = w + 1;
  }

  has(i: number): boolean {
    return (this.words[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  clear(i: number): void {
    const w = i >>> 5;
    this.words[w] = this.words[w]! & ~(1 << (i & 31));
    this.hash ^= this.zobrist[i]!;
    if (w < this.fromWord) this.fromWord = w;
  }

  /**
   * Narrows [fromWord, toWord) to the first word not all ones and the last not all zeros. Why: ops are
   * numbered by completion, and every op that completed before the first return still in the list is
   * linearized, so a set is a run of ones, a few scattered bits (the ops in flight) and zeros. Storing only the
   * middle keeps a cache entry a few words long instead of n/32 (on a 10k-op key, 1.2 kB less per entry).
   */
  trim(): void {
    while (this.fromWord < this.toWord && this.words[this.fromWord] === 0xffffffff) this.fromWord++;
    while (this.toWord > this.fromWord && this.words[this.toWord - 1] === 0) this.toWord--;
  }
}

/** Deterministic pseudo-random words (mulberry32), so a run can be repeated exactly. */
function randomWords(count: number): Uint32Array {
  const words = new Uint32Array(count);
  let seed = 0x9e3779b9;
  for (let i = 0; i < count; i++) {
    seed = (seed + 0x6d2b79f5) | 0;
    let z = Math.imul(seed ^ (seed >>> 15), seed | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    words[i] = (z ^ (z >>> 14)) >>> 0;
  }
  return words;
}

/** Configurations with the same linearized ops and state, and the info-write usage vectors seen with them. */
interface Seen<S> {
  /** the linearized set, trimmed (see Bitset.trim) */
  fromWord: number;
  words: number[];
  state: S;
  /** the info-write usage vectors seen with this set and state (rule 3) */
  infoUsed: Int32Array[];
}

/** Shared by every configuration when there are no usage counts, so that case allocates no vector per entry. */
export const NO_COUNTS = new Int32Array(0);

/** Lowe's memo of the configurations the search has entered, with rule 3's dominance on info-write usage. */
export class ConfigurationCache<S> {
  bytes = 0;
  private readonly buckets = new Map<number, Seen<S>[]>();

  /** Records the configuration and returns true, or returns false when it (or one that dominates it) was recorded. */
  addIfNew(linearized: Bitset, state: S, infoUsed: Int32Array): boolean {
    linearized.trim();
    const { fromWord, toWord } = linearized;
    let bucket = this.buckets.get(linearized.hash);
    let seen = bucket?.find((s) => s.state === state && sameWords(s, linearized.words, fromWord, toWord));
    if (seen?.infoUsed.some((used) => noneGreater(used, infoUsed))) return false;
    if (seen === undefined) {
      seen = { fromWord, words: Array.from(linearized.words.subarray(fromWord, toWord)), state, infoUsed: [] };
      if (bucket === undefined) this.buckets.set(linearized.hash, (bucket = []));
      bucket.push(seen);
      this.bytes += 8 * seen.words.length + CACHE_ENTRY_OVERHEAD_BYTES;
    }
    seen.infoUsed.push(infoUsed.length === 0 ? NO_COUNTS : infoUsed.slice());
    if (infoUsed.length > 0) this.bytes += infoUsed.byteLength + CACHE_ENTRY_OVERHEAD_BYTES;
    return true;
  }
}

function sameWords<S>(seen: Seen<S>, words: Uint32Array, fromWord: number, toWord: number): boolean {
  if (seen.fromWord !== fromWord || seen.words.length !== toWord - fromWord) return false;
  for (let i = 0; i < seen.words.length; i++) if (seen.words[i] !== words[fromWord + i]) return false;
  return true;
}

/** Whether a[i] <= b[i] everywhere: then a configuration that used `a` can do all that one using `b` can. */
function noneGreater(a: Int32Array, b: Int32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i]! > b[i]!) return false;
  return true;
}


/**
 * The operations a person needs to see the failure: the blocked one, the puts of the value it read, the last
 * few that completed before it began (they set the state it saw), then those concurrent with it, nearest first.
 */
export function opsAround(sources: readonly Operation[], blocked: Operation): Operation[] {
  const end = (op: Operation) => (op.outcome === 'info' ? Infinity : op.completeMs);
  const writersOfRead = blocked.kind === 'get' ? sources.filter((op) => op.kind === 'put' && op.value === blocked.result) : [];
  const before = sources
    .filter((op) => end(op) < blocked.invokeMs)
    .sort((a, b) => end(b) - end(a))
    .slice(0, ANOMALY_OPS_BEFORE);
  const concurrent = sources
    .filter((op) => op.invokeMs <= end(blocked) && end(op) >= blocked.invokeMs)
    .sort((a, b) => Math.abs(a.invokeMs - blocked.invokeMs) - Math.abs(b.invokeMs - blocked.invokeMs));
  const chosen = [...new Set([blocked, ...writersOfRead, ...before, ...concurrent])].slice(0, ANOMALY_OPS_MAX);
  return chosen.sort((a, b) => a.invokeMs - b.invokeMs);
}

export function describeOp(op: Operation): string {
  const id = op.id === undefined ? '' : ` #${op.id}`;
  const completed = op.outcome === 'info' ? '?' : `${op.completeMs}`;
  const when = `[${op.invokeMs}..${completed}ms]`;
  const outcome = op.outcome === 'ok' ? '' : ` (${op.outcome === 'fail' ? 'failed' : 'indeterminate'})`;
  return `client ${op.client}${id} ${describeAction(op)} ${when}${outcome}`;
}

function describeAction(op: Operation): string {
  const key = JSON.stringify(op.key);
  const version = op.outcome === 'ok' && op.version !== undefined ? ` at version ${op.version}` : '';
  const refused = op.mismatchVersion === undefined ? '' : ` -> refused, version ${op.mismatchVersion ?? 'absent'}`;
  const condition = describeCondition(op);
  if (op.kind === 'put') return `put ${key}=${JSON.stringify(op.value)}${condition}${version}${refused}`;
  if (op.kind === 'del') return `del ${key}${condition}${op.existed === undefined ? '' : ` (existed=${op.existed})`}${version}${refused}`;
  if (op.kind === 'incr') return `incr ${key} by ${op.by}${op.outcome === 'ok' ? ` -> ${JSON.stringify(op.result)}` : ''}${version}`;
  if (op.outcome !== 'ok') return `get ${key}`;
  return `get ${key} -> ${op.result === null ? 'absent' : JSON.stringify(op.result)}${version}`;
}

function describeCondition(op: Operation): string {
  if (op.ifAbsent === true) return ' if absent';
  return op.ifVersion === undefined ? '' : ` if version ${op.ifVersion} (${JSON.stringify(op.expectedValue)})`;
}
