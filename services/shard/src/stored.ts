import type { Entry } from './replication/log';

/**
 * How a value is kept in a store: with its version (the seq of the write that made it) and its
 * expiry (a wall-clock time in ms, decided by the leader), in one string: `<version>,<expiry>:<value>`
 * (`<expiry>` empty when the value does not expire). Both nodes encode an entry the same way, so
 * the state digest, a state transfer and a resharding export carry versions and expiries with
 * the values, unchanged. A value written before versions existed (store format 1) is upgraded
 * to version 0 when the store opens.
 */
export interface StoredValue {
  value: string;
  version: number;
  /** Absent: the value does not expire. */
  expiresAtMs: number | undefined;
}

export function encodeStored(value: string, version: number, expiresAtMs: number | undefined): string {
  return `${version},${expiresAtMs ?? ''}:${value}`;
}

/** What a put entry leaves in the store; a delete leaves nothing. */
export function storedOf(entry: Extract<Entry, { op: 'put' }>): string {
  return encodeStored(entry.value, entry.seq, entry.exp);
}

export function decodeStored(stored: string): StoredValue {
  const colon = stored.indexOf(':');
  const comma = stored.indexOf(',');
  if (colon < 0 || comma < 0 || comma > colon) throw new Error(`store invariant: stored value without a version header: ${stored.slice(0, 40)}`);
  const expiry = stored.slice(comma + 1, colon);
  return { value: stored.slice(colon + 1), version: Number(stored.slice(0, comma)), expiresAtMs: expiry === '' ? undefined : Number(expiry) };
}

/** The value as reads see it at wall-clock time `nowMs`: absent if there is none or it has expired. */
export function liveValue(stored: string | undefined, nowMs: number): StoredValue | undefined {
  if (stored === undefined) return undefined;
  const v = decodeStored(stored);
  return v.expiresAtMs !== undefined && v.expiresAtMs <= nowMs ? undefined : v;
}

/** What is left of a live value's time to live, for answers (absent: it does not expire). */
export function ttlLeftMs(v: StoredValue, nowMs: number): number | undefined {
  return v.expiresAtMs === undefined ? undefined : Math.max(1, v.expiresAtMs - nowMs);
}

/**
 * Keys starting with U+0000 are the store's own (records of applied idempotency keys, see
 * @shardkv/common's idempotency.ts): replicated, transferred and digested like any key, but not
 * counted as the shard's keys.
 */
export function isReservedKey(key: string): boolean {
  return key.charCodeAt(0) === 0;
}

/** The value part of a stored value, expired or not (tests and tools that look at a store directly). */
export function valueOf(stored: string | undefined): string | undefined {
  return stored === undefined ? undefined : decodeStored(stored).value;
}
