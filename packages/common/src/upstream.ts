import { KvError } from './errors';

/**
 * Classifies a failed call to another node. Only a failure to connect proves that nothing was
 * sent, so only that is definite (503); a timeout or a connection lost after the request went
 * out may have been applied (504). This is why a write is never retried blindly.
 */
export function upstreamError(err: unknown, target: string, timeoutMs: number): KvError {
  const code = errorCode(err);
  if (code !== undefined && CONNECT_FAILURES.has(code)) {
    return new KvError('shard_unavailable', `${target} is unreachable (${code})`);
  }
  if (isTimeout(err)) {
    return new KvError('upstream_timeout', `${target} did not answer within ${timeoutMs} ms; the outcome is unknown`);
  }
  return new KvError('upstream_connection_lost', `connection to ${target} failed (${code ?? 'error'}); the outcome is unknown`);
}

// EHOSTUNREACH/ENETUNREACH are left out on purpose: on a keep-alive socket they can surface after
// the request was written, so they do not prove that nothing was applied.
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** The first `code` on an error or its causes (undici wraps the socket's error), e.g. `ECONNREFUSED`. */
export function errorCode(err: unknown): string | undefined {
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth += 1) {
    if (typeof e.code === 'string') return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

function isTimeout(err: unknown): boolean {
  const e = err as { name?: string; code?: string; cause?: { name?: string } } | undefined;
  return (
    e?.name === 'TimeoutError' ||
    e?.cause?.name === 'TimeoutError' ||
    e?.code === 'UND_ERR_HEADERS_TIMEOUT' ||
    e?.code === 'UND_ERR_BODY_TIMEOUT'
  );
}
