import { parseIncrBody, parseKeyQuery, parsePutBody } from './api';
import { parseMputBody, type EntryFailure, type EntryResult, type WriteOp } from './batch';
import { ERRORS, KvError, type ErrorCode } from './errors';
import { IDEMPOTENCY_HEADER, parseIdempotencyKey } from './idempotency';

/**
 * The single-key write API as HTTP carries it, shared by the router and the nodes (a smart client
 * writes to a leader directly): `POST /put`, `DELETE /delete`, `POST /incr`, their conditions
 * (`If-Match: <version>`, `If-None-Match: *`, `"ifVersion"`) and their answers.
 */
export type HeaderReader = (name: string) => string;

/** A version as an ETag: `"<version>"`. */
export function etagOf(version: number): string {
  return `"${version}"`;
}

/** `If-Match: 12`, `"12"` or `W/"12"` (a weak tag is the same version here). */
function versionTag(raw: string): number {
  const m = /^(?:W\/)?"?([0-9]{1,16})"?$/.exec(raw.trim());
  const version = m === null ? Number.NaN : Number(m[1]);
  if (!Number.isSafeInteger(version)) throw new KvError('bad_request', `If-Match must be one version, e.g. If-Match: "12" (got ${JSON.stringify(raw.slice(0, 40))})`);
  return version;
}

/** A write's condition from its headers and its body's `ifVersion`; at most one of them. */
export function conditionOf(header: HeaderReader, bodyIfVersion?: number, bodyIfAbsent?: true): { ifVersion?: number; ifAbsent?: true } {
  const ifMatch = header('if-match');
  const ifNoneMatch = header('if-none-match');
  const given = [ifMatch !== '', ifNoneMatch !== '', bodyIfVersion !== undefined, bodyIfAbsent === true].filter(Boolean).length;
  if (given > 1) throw new KvError('bad_request', 'a write takes one condition: If-Match, If-None-Match: *, "ifVersion" or "ifAbsent"');
  if (bodyIfAbsent === true) return { ifAbsent: true };
  if (ifNoneMatch !== '') {
    if (ifNoneMatch.trim() !== '*') throw new KvError('bad_request', 'If-None-Match takes only "*" (create the key only if it is absent)');
    return { ifAbsent: true };
  }
  const ifVersion = ifMatch !== '' ? versionTag(ifMatch) : bodyIfVersion;
  return ifVersion === undefined ? {} : { ifVersion };
}

export function putOp(body: unknown, header: HeaderReader): WriteOp {
  const { key, value, ttlMs, ifVersion, ifAbsent } = parsePutBody(body);
  return { op: 'put', key, value, ...(ttlMs === undefined ? {} : { ttlMs }), ...conditionOf(header, ifVersion, ifAbsent), ...idemOf(header) };
}

function idemOf(header: HeaderReader): { idem?: string } {
  const idem = parseIdempotencyKey(header(IDEMPOTENCY_HEADER));
  return idem === undefined ? {} : { idem };
}

/** `DELETE /delete?key=K[&ifVersion=N]`, or If-Match. */
export function deleteOp(querystring: string, header: HeaderReader): WriteOp {
  const raw = new URLSearchParams(querystring).get('ifVersion');
  return delOp(parseKeyQuery(querystring), raw === null ? undefined : versionTag(raw), header);
}

/** A delete of a parsed key, at `ifVersion` (or If-Match) when given, with its Idempotency-Key. */
export function delOp(key: string, ifVersion: number | undefined, header: HeaderReader): WriteOp {
  const { ifAbsent, ...condition } = conditionOf(header, ifVersion);
  if (ifAbsent === true) throw new KvError('bad_request', 'If-None-Match: * makes no sense on a delete');
  return { op: 'del', key, ...condition, ...idemOf(header) };
}

/**
 * `POST /mput`: its entries as puts, each with its own condition. With an Idempotency-Key every
 * entry is applied once: the record of an applied key names the entry's key (idempotency.ts), so
 * a retry finds each entry's first answer however the entries were split over shards, and each
 * key may appear only once.
 */
export function mputOps(body: unknown, header: HeaderReader): WriteOp[] {
  const entries = parseMputBody(body);
  const idem = idemOf(header);
  if (idem.idem !== undefined && new Set(entries.map((e) => e.key)).size !== entries.length) {
    throw new KvError('bad_request', 'an mput with an Idempotency-Key must name each key once (the key is recorded per entry)');
  }
  return entries.map((e): WriteOp => ({ op: 'put', ...e, ...idem }));
}

export function incrOp(body: unknown, header: HeaderReader): WriteOp {
  return { op: 'incr', ...parseIncrBody(body), ...idemOf(header) };
}

/** A single-key request's failed entry as the error a lone request gets (with its key, and the current version of a mismatch). */
export function entryError(r: EntryFailure): KvError {
  const code = r.error.code in ERRORS ? (r.error.code as ErrorCode) : 'internal';
  const { code: _code, message, ...details } = r.error;
  return new KvError(code, message, code === 'key_not_found' ? { key: r.key, ...details } : details);
}

/** The answer to a single-key write: `{key, seq, version}`, `{key, deleted, seq}` or `{key, value, seq, version}`. */
export function writeAnswer(op: WriteOp, r: EntryResult): Record<string, unknown> {
  if (!r.ok) throw entryError(r);
  if (op.op === 'del') return { key: op.key, deleted: r.deleted, seq: r.seq };
  if (op.op === 'incr') return { key: op.key, value: r.value, seq: r.seq, version: r.seq };
  return { key: op.key, seq: r.seq, version: r.seq };
}

/** The answer to a read: `{key, value, version[, ttlMs]}`. */
export function readAnswer(r: EntryResult): { key: string; value: string; version: number; ttlMs?: number } {
  if (!r.ok) throw entryError(r);
  return { key: r.key, value: r.value!, version: r.version ?? 0, ...(r.ttlMs === undefined ? {} : { ttlMs: r.ttlMs }) };
}
