import type { Operation } from './linearizability';

/**
 * The model of linearizability-rmw.ts (see there): one key's state, what each operation does to it, and the
 * few facts about effects that the search's pruning rules use.
 */

/** A decimal integer as `/incr` keeps it (services/shard/src/replication/commands.ts). */
export const INTEGER = /^-?(0|[1-9][0-9]*)$/;

/** The model state of one key: its value, or null when absent. */
export type State = string | null;
export const REJECTED = Symbol('rejected');
export type Next = State | typeof REJECTED;

/** What an operation does to the state, as far as the search needs it; equal effects, interchangeable writes. */
export type Effect =
  /** an acknowledged get: the state was `result` */
  | { type: 'read'; result: State }
  /** a 412: the state was not `expected`, and was `current` when the reported version tells it */
  | { type: 'refused'; expected: State; current?: State }
  /** a put or delete: writes `writes`, only if the state is `requires.state` when conditional */
  | { type: 'write'; writes: State; requires?: { state: State }; existed?: boolean }
  /** an increment: adds `by`; acknowledged, it returned `result` */
  | { type: 'add'; by: number; result?: string };

/** The state after an operation with effect `e` from `s`, or REJECTED when `e` (and its answer) is impossible from `s`. */
export function step(s: State, e: Effect): Next {
  switch (e.type) {
    case 'read':
      return s === e.result ? s : REJECTED;
    case 'refused':
      return s !== e.expected && (e.current === undefined || s === e.current) ? s : REJECTED;
    case 'write':
      if (e.requires !== undefined && s !== e.requires.state) return REJECTED;
      return e.existed !== undefined && e.existed !== (s !== null) ? REJECTED : e.writes;
    case 'add': {
      const sum = increment(s, e.by);
      return sum === undefined || (e.result !== undefined && e.result !== sum) ? REJECTED : sum;
    }
  }
}

/** The counter after adding `by`; undefined when the server would refuse (not_an_integer, out_of_range). */
function increment(s: State, by: number): string | undefined {
  if (s !== null && !INTEGER.test(s)) return undefined;
  const base = s === null ? 0 : Number(s);
  const sum = base + by;
  return Number.isSafeInteger(base) && Number.isSafeInteger(sum) ? String(sum) : undefined;
}

export const isObserver = (e: Effect) => e.type === 'read' || e.type === 'refused';
/** A put or delete with no condition: it overwrites whatever was there. */
export const isBlind = (e: Effect) => e.type === 'write' && e.requires === undefined;

/** The one state an effect accepts, when there is one (undefined: several); an increment's, as a number (it accepts absent for 0 too). */
function singleTarget(e: Effect): State | undefined {
  if (e.type === 'read') return e.result;
  if (e.type === 'add') return e.result === undefined || !INTEGER.test(e.result) ? e.result : String(Number(e.result) - e.by);
  return e.type === 'write' && e.existed === undefined ? e.requires?.state : undefined;
}

/**
 * Rule 4's bound for a counter that only goes up inside a run: the largest integer an ender accepts; Infinity
 * when one accepts several states. A target increments cannot reach (absent, not an integer) does not count.
 */
export function upperTarget(enders: readonly Effect[]): number {
  let bound = -Infinity;
  for (const e of enders) {
    const target = singleTarget(e);
    if (target === undefined) return Infinity;
    if (target !== null && INTEGER.test(target)) bound = Math.max(bound, Number(target));
  }
  return bound;
}

/** Whether a run may go on from `s`: below the bound (each increment goes up, so the target must be above). */
export const below = (s: State, bound: number) => bound === Infinity || (s !== null && INTEGER.test(s) && Number(s) < bound);

/** An operation as the search sees it. */
export interface SearchOp {
  source: Operation;
  effect: Effect;
  /** false: indeterminate, it may have taken effect or not */
  definite: boolean;
  invokeMs: number;
  completeMs: number;
}
