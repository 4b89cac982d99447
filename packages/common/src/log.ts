import pino from 'pino';

export type Logger = pino.Logger;

/**
 * JSON lines on stdout, each carrying the node's name, so that the interleaved output of a
 * 7-process cluster can be told apart. Nothing logs per request on the hot path: only state
 * changes, faults and errors.
 */
export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { node: name }, timestamp: pino.stdTimeFunctions.isoTime });
}

/**
 * Under the local supervisor (EXIT_WITH_PARENT=1) stdin is a pipe from it: when the pipe closes
 * the supervisor is gone, and this node exits rather than linger as an orphan.
 */
export function exitWithParent(): void {
  if (process.env.EXIT_WITH_PARENT !== '1') return;
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}
