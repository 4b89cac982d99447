/**
 * The definition of linearizability with no shortcuts, for the checkers' tests: every order of the
 * operations that respects real time (an `info` operation never completes, and may be left out),
 * applied to a model. Exponential, so only for a handful of operations.
 */
export interface TimedOp {
  outcome: 'ok' | 'fail' | 'info';
  invokeMs: number;
  completeMs: number;
}

/** `step`: the state after `op`, or undefined when its answer is impossible from `state`. */
export function bruteForceLinearizable<O extends TimedOp, S>(ops: readonly O[], initial: S, step: (state: S, op: O) => S | undefined): boolean {
  const endMs = (op: O) => (op.outcome === 'info' ? Infinity : op.completeMs);
  const placed = ops.map(() => false);
  const search = (state: S): boolean => {
    if (ops.every((op, i) => placed[i] || op.outcome === 'info')) return true;
    return ops.some((op, i) => {
      if (placed[i]) return false;
      // op may go next only if no op still unplaced had completed before op was invoked.
      if (ops.some((other, j) => !placed[j] && endMs(other) < op.invokeMs)) return false;
      const next = step(state, op);
      if (next === undefined) return false;
      placed[i] = true;
      const found = search(next);
      placed[i] = false;
      return found;
    });
  };
  return search(initial);
}
