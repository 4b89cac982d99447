import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * A port that was free a moment ago on 127.0.0.1. It is drawn below the kernel's ephemeral range:
 * a port the OS hands out for `listen(0)` comes from the same range as the local ports of
 * outgoing connections, so between our check and the node's own listen a keep-alive connection
 * could take it (seen as EADDRINUSE crash loops in the tests).
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const from = Math.max(1024, Math.min(20_000, low - 10_000));
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const port = from + Math.floor(Math.random() * (low - from));
    // Nodes of one cluster are given ports before any of them listens: never hand one out twice.
    if (handedOut.has(port) || !(await portIsFree(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port found in ${from}-${low - 1}`);
}

const handedOut = new Set<number>();

/** The kernel's range for outgoing connections' local ports (Linux); a common default elsewhere. */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high) && low! > 1024) return [low!, high!];
  } catch {
    // not Linux: fall through
  }
  return [32768, 60999];
}

/** True when nothing listens on the port, so a clear error can be given instead of a crash loop. */
export function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}
