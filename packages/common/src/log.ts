import type { Server } from 'node:http';
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
 * The end of every service's main: on SIGTERM/SIGINT (or the supervisor going away) run the
 * service's own cleanup, close the server and its connections, and exit 0.
 */
export function stopOnSignals(server: Server, log: Logger, cleanup: () => Promise<void> | void): void {
  let stopping = false;
  const shutdown = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ reason }, 'shutting down');
    await cleanup();
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  exitWithParent(() => void shutdown('supervisor gone'));
}

/**
 * Under the local supervisor (EXIT_WITH_PARENT=1) stdin is a pipe from it: when the pipe closes
 * the supervisor is gone, and this node exits rather than linger as an orphan.
 */
function exitWithParent(exit: () => void): void {
  if (process.env.EXIT_WITH_PARENT !== '1') return;
  process.stdin.once('end', exit);
  process.stdin.once('close', exit);
  process.stdin.resume();
}
