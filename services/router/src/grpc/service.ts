import { IDEMPOTENCY_HEADER, KvError, type EntryResult } from '@shardkv/common';
import type { BatchAnswer, CallOptions, KvOperations } from '../operations';
import type { ConsistencyName, EntryError, KvMethod, KvRpcs, MGetResponse, MPutResponse, OutcomeName } from './messages';

/** One rpc: its request (decoded, with proto3 defaults) and the call's deadline in, its response out; failures are KvErrors. */
export type Handler<M extends KvMethod> = (request: KvRpcs[M]['request'], opts: CallOptions) => Promise<KvRpcs[M]['response']>;
export type Handlers = { [M in KvMethod]: Handler<M> };

/**
 * The gRPC service: each rpc translates its message to the operation's input and the answer back,
 * nothing else. Validation, routing, batching and deadlines are the operations' (operations.ts),
 * the same as for HTTP. Fields are copied one by one, so a field added to a message does nothing
 * until its handler passes it on.
 */
export function kvHandlers(ops: KvOperations): Handlers {
  return {
    Get: async (req, opts) => {
      const r = await ops.get(req.key, { ...opts, consistency: consistency(req.consistency) });
      return { key: r.key, value: r.value, version: r.version, ttlMs: r.ttlMs ?? 0 };
    },
    Put: (req, opts) => ops.put(putBody(req), { ...opts, header: idempotencyHeader(req.idempotencyKey) }),
    Incr: (req, opts) => ops.incr({ key: req.key, by: req.by === undefined || req.by === 0 ? 1 : req.by }, { ...opts, header: idempotencyHeader(req.idempotencyKey) }),
    Delete: (req, opts) => ops.delete(req.key, { ...opts, ...positive('ifVersion', req.ifVersion), header: idempotencyHeader(req.idempotencyKey) }),
    MGet: async (req, opts) => mgetResponse(await ops.mget({ keys: req.keys }, opts)),
    MPut: async (req, opts) => mputResponse(await ops.mput({ entries: req.entries.map(putBody) }, { ...opts, header: idempotencyHeader(req.idempotencyKey) })),
  };
}

/** A Put or an MPut entry as the HTTP body it stands for. */
function putBody(p: { key: string; value: string; ifVersion?: number; ttlMs?: number; ifAbsent?: boolean }): Record<string, unknown> {
  return { key: p.key, value: p.value, ...positive('ifVersion', p.ifVersion), ...positive('ttlMs', p.ttlMs), ...(p.ifAbsent === true ? { ifAbsent: true } : {}) };
}

/** proto3 has no absent number: 0 is "not given". */
function positive(name: string, v: number | undefined): Record<string, number> {
  return v === undefined || v === 0 ? {} : { [name]: v };
}

/** The request's idempotency key, read like HTTP's header by the same parser. */
function idempotencyHeader(idem: string | undefined): (name: string) => string {
  return (name) => (name === IDEMPOTENCY_HEADER ? (idem ?? '') : '');
}

function consistency(c: ConsistencyName | undefined): 'linearizable' | 'stale' {
  if (c === undefined || c === 'CONSISTENCY_LINEARIZABLE') return 'linearizable';
  if (c === 'CONSISTENCY_STALE') return 'stale';
  throw new KvError('bad_request', 'consistency must be CONSISTENCY_LINEARIZABLE (the default) or CONSISTENCY_STALE');
}

function mgetResponse(a: BatchAnswer): MGetResponse {
  return { ok: a.ok, failed: a.failed, results: a.results.map((r) => (r.ok ? { key: r.key, ok: true, value: r.value ?? '' } : { key: r.key, ok: false, error: entryError(r) })) };
}

function mputResponse(a: BatchAnswer): MPutResponse {
  return { ok: a.ok, failed: a.failed, results: a.results.map((r) => (r.ok ? { key: r.key, ok: true, seq: r.seq ?? 0 } : { key: r.key, ok: false, error: entryError(r) })) };
}

const OUTCOMES: Record<'definite' | 'indeterminate', OutcomeName> = { definite: 'OUTCOME_DEFINITE', indeterminate: 'OUTCOME_INDETERMINATE' };

function entryError(r: Extract<EntryResult, { ok: false }>): EntryError {
  return { code: r.error.code, message: r.error.message, outcome: OUTCOMES[r.outcome] };
}
