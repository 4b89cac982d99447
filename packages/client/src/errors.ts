import { errorCode } from '@shardkv/common';

/**
 * Every failure of a KvClient call: says whether the request definitely had no effect
 * (`outcome: 'definite'`: 4xx, 503) or may have (`'indeterminate'`: 5xx other than 503, a lost
 * connection, a timeout), so callers know when a retry could apply a write twice.
 */
export class KvClientError extends Error {
  override name = 'KvClientError';
  constructor(
    message: string,
    /** HTTP status, 0 when no answer arrived. */
    readonly status: number,
    readonly code: string,
    readonly outcome: 'definite' | 'indeterminate',
    /** The error's other fields (a version_mismatch's current `version`, a 404's `key`, ...). */
    readonly details: Record<string, unknown> = {},
    /** `rate_limited` (429): how long until the router takes this client's requests again. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** Connection failures that prove the request never left: it may go elsewhere, writes too. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

export function neverSent(err: unknown): boolean {
  return NOT_SENT.has(errorCode(err) ?? '');
}

/** A request that got no answer: `unreachable` (never sent, definite) or `no_answer` (indeterminate). */
export function noAnswer(what: string, url: string, err: unknown, signal: AbortSignal): KvClientError {
  const notSent = neverSent(err);
  const why = signal.aborted && signal.reason instanceof Error ? signal.reason.message : err instanceof Error ? err.message : String(err);
  return new KvClientError(`${what}: no answer from ${url} (${why})`, 0, notSent ? 'unreachable' : 'no_answer', notSent ? 'definite' : 'indeterminate');
}

/**
 * Decodes an answer: the parsed body of a 2xx, undefined for a status in `absent` ("not
 * found"), else the `{"error":{"code","message"}}` as a KvClientError. `retryAfter` is the
 * answer's `Retry-After` header, read for a 429 when its body does not say `retryAfterMs`.
 */
export function decodeAnswer(status: number, text: string, absent: readonly number[] = [], retryAfter?: string): unknown {
  if (absent.includes(status)) return undefined;
  const parsed = text === '' ? undefined : (JSON.parse(text) as unknown);
  if (status >= 200 && status < 300) return parsed;
  const error = (parsed as { error?: { code?: string; message?: string; retryAfterMs?: unknown } } | undefined)?.error;
  const outcome = status >= 500 && status !== 503 ? 'indeterminate' : 'definite';
  const { code, message, ...details } = error ?? {};
  const waitMs = status === 429 ? retryAfterMs(error?.retryAfterMs, retryAfter) : undefined;
  throw new KvClientError(message ?? `HTTP ${status}`, status, code ?? (status === 429 ? 'rate_limited' : 'http_error'), outcome, details, waitMs);
}

/** The body's `retryAfterMs`, else `Retry-After` in whole seconds (its HTTP-date form is not used by shardkv: ignored). */
function retryAfterMs(fromBody: unknown, header: string | undefined): number | undefined {
  if (typeof fromBody === 'number' && Number.isFinite(fromBody) && fromBody >= 0) return fromBody;
  return header !== undefined && /^\d{1,9}$/.test(header.trim()) ? Number(header.trim()) * 1000 : undefined;
}
