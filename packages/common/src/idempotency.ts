import { KvError } from './errors';

/**
 * Exactly-once retries: a write sent with `Idempotency-Key: <key>` is applied once; a retry with
 * the same key (within the window) gets the first answer. The leader keeps a record of each
 * applied key as one more replicated entry, written in the same batch as the write itself (so
 * the two commit together, and a promoted follower has both), under a reserved key that sorts
 * with the data key's slot (`slotOf` uses the data key), so resharding moves it with the data.
 */
export const IDEMPOTENCY_HEADER = 'idempotency-key';
export const IDEMPOTENCY_KEY_BYTES_MAX = 128;

/** Keys starting with U+0000 are the store's own (records of applied idempotency keys): clients cannot write them. */
export const RESERVED_KEY_PREFIX = '\u0000';
const RECORD_PREFIX = '\u0000idem\u0000';

/** Printable ASCII without spaces, 1 to 128 characters (a UUID, a ULID, a request id); '' when absent. */
export function parseIdempotencyKey(raw: string): string | undefined {
  if (raw === '') return undefined;
  if (!/^[\x21-\x7e]+$/.test(raw) || raw.length > IDEMPOTENCY_KEY_BYTES_MAX) {
    throw new KvError('bad_request', `Idempotency-Key must be 1 to ${IDEMPOTENCY_KEY_BYTES_MAX} printable ASCII characters without spaces (a UUID, for example)`);
  }
  return raw;
}

/** The reserved key of the record that `idem` was applied to `dataKey`. */
export function idempotencyRecordKey(dataKey: string, idem: string): string {
  return `${RECORD_PREFIX}${idem}\u0000${dataKey}`;
}

/** The data key a reserved record belongs to; undefined for a client's key. */
export function dataKeyOfRecord(key: string): string | undefined {
  if (!key.startsWith(RECORD_PREFIX)) return undefined;
  return key.slice(key.indexOf('\u0000', RECORD_PREFIX.length) + 1);
}
