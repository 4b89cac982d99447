import { randomUUID } from 'node:crypto';
import { ERRORS, IDEMPOTENCY_HEADER } from '@shardkv/common';
import type { OpKind, Operation, Outcome } from './linearizability';

/**
 * What the chaos clients send (see chaos.ts), and how each answer becomes an outcome.
 *  - `register`: a random mix of get / put / delete, checked by linearizability.ts.
 *  - `rmw`: read-modify-writes, checked by linearizability-rmw.ts. Counter keys get increments (`POST /incr`,
 *    by an amount from `incrBy`) and gets; register keys get a read then a compare-and-set on the version
 *    read (`ifVersion`; `ifAbsent` when the key was absent; sometimes a delete `&ifVersion=`), and plain puts,
 *    deletes and gets. Every value a client writes is unique. Writes carry an Idempotency-Key and an
 *    indeterminate one is resent with it up to `writeRetries` times, as the typed client does: one operation
 *    from the first attempt to the last answer. Once an attempt got no answer, a later definite refusal leaves
 *    the operation indeterminate (the first may still commit), as in the client.
 * Outcomes: 200 (and 404 key_not_found on a get) took effect; 503 and 504 by the error table (definite: fail,
 * indeterminate: info); a lost connection or a client-side timeout is indeterminate; in the rmw workload a 412
 * version_mismatch is a definite failure that observed the state (its reported version is kept). Anything
 * else (another 4xx, 409 not_an_integer or out_of_range here, a 500, a malformed 200) is unexpected.
 */

export type Workload = 'register' | 'rmw';

export interface OperationMix {
  get: number;
  put: number;
  del: number;
}

export interface RmwOptions {
  /** The amounts an increment adds, picked at random. */
  incrBy: number[];
  /** An indeterminate write is resent this many more times with its Idempotency-Key. */
  writeRetries: number;
  /** Before the first resend; doubled for each next one. */
  retryBackoffMs: number;
}

export const DEFAULT_RMW: RmwOptions = { incrBy: [1, 2, 5], writeRetries: 2, retryBackoffMs: 100 };

/** The kinds the register workload sends (the rmw workload adds `incr`). */
export type RegisterKind = Exclude<OpKind, 'incr'>;

export type Classified =
  | { outcome: Outcome; result?: string | null; existed?: boolean; version?: number; mismatchVersion?: number | null; reason?: string }
  | { unexpected: string };

export interface HttpRequest {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  body?: string;
  headers?: Record<string, string>;
}

/** One request to a router: its answer, or the error that left it without one. */
export type Exchange = { status: number; body: unknown } | { error: unknown };

/** What a client's workload needs from the run: randomness, requests, and the history to record into. */
export interface ClientIo {
  random(): number;
  send(req: HttpRequest): Promise<Exchange>;
  sleep(ms: number): Promise<void>;
  /** The run is ending: no more resends. */
  stopped(): boolean;
  /** A new operation, invoked now. */
  start(kind: OpKind, key: string, fields?: Partial<Operation>): Operation;
  /** Completes `op` now with its classified answer and records it (an unexpected answer also in the report). */
  finish(op: Operation, answer: Classified, last: Exchange): void;
  /** A value no client has written before. */
  uniqueValue(): string;
  /** `op` is sent again with its Idempotency-Key after an attempt that ended so. */
  noteResend(op: Operation, reason: string): void;
}

const errorCode = (body: unknown): string | undefined => {
  const e = (body as { error?: { code?: unknown } } | null)?.error;
  return typeof e?.code === 'string' ? e.code : undefined;
};

const asRecord = (body: unknown) => (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;

/** Maps one HTTP answer from the router to an outcome, exactly as the API documents it (register workload). */
export function classifyResponse(kind: OpKind, status: number, body: unknown): Classified {
  const b = asRecord(body);
  if (status === 200) {
    if (kind === 'get') return typeof b.value === 'string' ? { outcome: 'ok', result: b.value } : { unexpected: 'get 200 without a string value' };
    if (kind === 'del') return typeof b.deleted === 'boolean' ? { outcome: 'ok', existed: b.deleted } : { unexpected: 'delete 200 without a boolean "deleted"' };
    return typeof b.seq === 'number' || typeof b.key === 'string' ? { outcome: 'ok' } : { unexpected: 'put 200 without key/seq' };
  }
  if (status === 404 && kind === 'get' && errorCode(body) === 'key_not_found') return { outcome: 'ok', result: null };
  if (status === 503) return { outcome: 'fail', reason: `503 ${errorCode(body) ?? '?'}` };
  if (status === 504) return { outcome: 'info', reason: `504 ${errorCode(body) ?? '?'}` };
  return { unexpected: `HTTP ${status} ${errorCode(body) ?? ''}`.trim() };
}

/** A request that got no answer (refused, reset, client-side timeout) may still have been applied. */
export function classifyTransportError(err: unknown): { outcome: 'info'; reason: string } {
  const e = err as { name?: string; code?: string; cause?: { code?: string } } | undefined;
  const timeout = e?.name === 'TimeoutError' || e?.name === 'AbortError' || e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.code === 'UND_ERR_BODY_TIMEOUT';
  return { outcome: 'info', reason: timeout ? 'client timeout' : `transport ${e?.code ?? e?.cause?.code ?? e?.name ?? 'error'}` };
}

/** The rmw workload's answers: versions read and made, 412 refusals, 503/504 by the error table's outcome. */
export function classifyRmwAnswer(op: Pick<Operation, 'kind' | 'ifVersion' | 'ifAbsent'>, ex: Exchange): Classified {
  if ('error' in ex) return classifyTransportError(ex.error);
  const { status, body } = ex;
  const code = errorCode(body);
  if (status === 200) return okAnswer(op.kind, asRecord(body));
  if (status === 404 && op.kind === 'get' && code === 'key_not_found') return { outcome: 'ok', result: null };
  if (status === 412 && code === 'version_mismatch' && (op.ifVersion !== undefined || op.ifAbsent === true)) {
    const version = asRecord(asRecord(body).error).version;
    if (version === null || Number.isSafeInteger(version)) return { outcome: 'fail', mismatchVersion: version as number | null, reason: '412 version_mismatch' };
    return { unexpected: '412 version_mismatch without the current version' };
  }
  if (status === 503 || status === 504) return { outcome: tableOutcome(code, status) === 'definite' ? 'fail' : 'info', reason: `${status} ${code ?? '?'}` };
  return { unexpected: `HTTP ${status} ${code ?? ''}`.trim() };
}

/** The error table's outcome for `code`; a code it does not know at that status: 503 definite, 504 not. */
function tableOutcome(code: string | undefined, status: number): 'definite' | 'indeterminate' {
  const spec = code === undefined ? undefined : (ERRORS as Record<string, { status: number; outcome: 'definite' | 'indeterminate' }>)[code];
  if (spec !== undefined && spec.status === status) return spec.outcome;
  return status === 503 ? 'definite' : 'indeterminate';
}

function okAnswer(kind: OpKind, b: Record<string, unknown>): Classified {
  const version = b.version;
  const hasVersion = Number.isSafeInteger(version);
  switch (kind) {
    case 'get':
      return typeof b.value === 'string' && hasVersion ? { outcome: 'ok', result: b.value, version: version as number } : { unexpected: 'get 200 without a string value and a version' };
    case 'incr':
      return typeof b.value === 'string' && hasVersion ? { outcome: 'ok', result: b.value, version: version as number } : { unexpected: 'incr 200 without a string value and a version' };
    case 'put':
      return hasVersion ? { outcome: 'ok', version: version as number } : { unexpected: 'put 200 without a version' };
    case 'del':
      return typeof b.deleted === 'boolean' && Number.isSafeInteger(b.seq) ? { outcome: 'ok', existed: b.deleted, version: b.seq as number } : { unexpected: 'delete 200 without a boolean "deleted" and a seq' };
  }
}

export function pickKind(mix: OperationMix, r: number): RegisterKind {
  const total = mix.get + mix.put + mix.del;
  const x = r * total;
  if (x < mix.get) return 'get';
  if (x < mix.get + mix.put) return 'put';
  return 'del';
}

const keyQuery = (key: string) => `key=${encodeURIComponent(key)}`;
const JSON_HEADERS = { 'content-type': 'application/json' };

/** One operation of the register workload. */
export async function registerStep(io: ClientIo, mix: OperationMix, pickKey: () => string): Promise<Operation[]> {
  const kind = pickKind(mix, io.random());
  const key = pickKey();
  const value = kind === 'put' ? io.uniqueValue() : undefined;
  const req: HttpRequest =
    kind === 'put'
      ? { method: 'POST', path: '/put', body: JSON.stringify({ key, value }), headers: JSON_HEADERS }
      : { method: kind === 'get' ? 'GET' : 'DELETE', path: `/${kind === 'get' ? 'get' : 'delete'}?${keyQuery(key)}` };
  const op = io.start(kind, key, value === undefined ? {} : { value });
  const ex = await io.send(req);
  io.finish(op, 'error' in ex ? classifyTransportError(ex.error) : classifyResponse(kind, ex.status, ex.body), ex);
  return [op];
}

/** Key slots of the rmw workload: even ones are counters, odd ones registers. */
export const isCounterSlot = (slot: number) => slot % 2 === 0;

/** One step of the rmw workload on `key`: one operation, or a read and the conditional write it decided. */
export async function rmwStep(io: ClientIo, rmw: RmwOptions, key: string, counter: boolean): Promise<Operation[]> {
  const roll = io.random();
  if (counter) return [roll < 0.7 ? await write(io, rmw, 'incr', key, { by: rmw.incrBy[Math.floor(io.random() * rmw.incrBy.length)]! }) : await get(io, key)];
  if (roll < 0.5) return readModifyWrite(io, rmw, key);
  if (roll < 0.7) return [await write(io, rmw, 'put', key, { value: io.uniqueValue() })];
  if (roll < 0.8) return [await write(io, rmw, 'del', key, {})];
  return [await get(io, key)];
}

/** A read, then a write conditional on it: a compare-and-set (sometimes a delete) at the version read, or a put if absent. */
async function readModifyWrite(io: ClientIo, rmw: RmwOptions, key: string): Promise<Operation[]> {
  const read = await get(io, key);
  if (read.outcome !== 'ok') return [read];
  if (read.result === null) return [read, await write(io, rmw, 'put', key, { value: io.uniqueValue(), ifAbsent: true })];
  const condition = { ifVersion: read.version!, expectedValue: read.result! };
  const del = io.random() < 0.2;
  return [read, await write(io, rmw, del ? 'del' : 'put', key, del ? condition : { ...condition, value: io.uniqueValue() })];
}

async function get(io: ClientIo, key: string): Promise<Operation> {
  const op = io.start('get', key);
  const ex = await io.send({ method: 'GET', path: `/get?${keyQuery(key)}` });
  io.finish(op, classifyRmwAnswer(op, ex), ex);
  return op;
}

/** A write with an Idempotency-Key, resent while its outcome is unknown and retries last. */
async function write(io: ClientIo, rmw: RmwOptions, kind: 'put' | 'del' | 'incr', key: string, fields: Partial<Operation>): Promise<Operation> {
  const op = io.start(kind, key, fields);
  const req = writeRequest(op, randomUUID());
  let unanswered = false;
  for (let attempt = 0; ; attempt++) {
    const ex = await io.send(req);
    const answer = classifyRmwAnswer(op, ex);
    if ('unexpected' in answer || answer.outcome === 'ok' || (answer.outcome === 'fail' && !unanswered)) {
      io.finish(op, answer, ex);
      return op;
    }
    unanswered = true;
    if (attempt >= rmw.writeRetries || io.stopped()) {
      io.finish(op, answer.outcome === 'info' ? answer : { outcome: 'info', reason: `${answer.reason} after an unanswered attempt` }, ex);
      return op;
    }
    io.noteResend(op, answer.reason ?? '?');
    await io.sleep(rmw.retryBackoffMs * 2 ** attempt);
  }
}

function writeRequest(op: Operation, idempotencyKey: string): HttpRequest {
  const headers = { [IDEMPOTENCY_HEADER]: idempotencyKey };
  if (op.kind === 'del') {
    const condition = op.ifVersion === undefined ? '' : `&ifVersion=${op.ifVersion}`;
    return { method: 'DELETE', path: `/delete?${keyQuery(op.key)}${condition}`, headers };
  }
  const body = op.kind === 'incr' ? { key: op.key, by: op.by } : { key: op.key, value: op.value, ...(op.ifVersion === undefined ? {} : { ifVersion: op.ifVersion }), ...(op.ifAbsent === true ? { ifAbsent: true } : {}) };
  return { method: 'POST', path: op.kind === 'incr' ? '/incr' : '/put', body: JSON.stringify(body), headers: { ...headers, ...JSON_HEADERS } };
}
