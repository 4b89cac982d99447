import { z } from 'zod';
import { KEY_BYTES_MAX, TTL_MS_MAX, VALUE_BYTES_MAX } from './api';
import { IDEMPOTENCY_KEY_BYTES_MAX } from './idempotency';
import { KvError, type ErrorCode } from './errors';

/**
 * The batch API: `POST /mput {"entries":[{"key","value"},...]}` and `POST /mget {"keys":[...]}`.
 * A batch is validated whole (any bad entry: 400, nothing applied); then each entry succeeds or
 * fails on its own, and the answer lists one result per entry, in order. Entries for one shard
 * are sequenced in the order given, so a later duplicate key wins. An mput entry may carry a
 * condition (`ifVersion`, `ifAbsent`), checked on its own like a single put's.
 */
/** A batch body must also fit the usual body limit (2 MiB): a batch of large values is refused whole. */
export const BATCH_ENTRIES_MAX = 1000;

export interface PutEntry {
  key: string;
  value: string;
  /** Expires this long after the leader applies it (see TTL_MS_MAX). */
  ttlMs?: number;
  /** Written only if the key is at this version (else the entry fails with version_mismatch). */
  ifVersion?: number;
  /** Written only if the key is absent. */
  ifAbsent?: true;
}

/**
 * One entry's outcome. `outcome` is present on failures: definite (not applied) or indeterminate.
 * `version` is the seq of the write that made the value (a read, a write, an increment); `ttlMs`
 * what is left of a value's time to live (absent: it does not expire).
 */
export type EntryResult =
  | { key: string; ok: true; seq?: number; value?: string; version?: number; ttlMs?: number; deleted?: boolean }
  | { key: string; ok: false; error: { code: ErrorCode | string; message: string; version?: number | null }; outcome: 'definite' | 'indeterminate' };

export type EntryFailure = Extract<EntryResult, { ok: false }>;

/** An entry's result when it failed: the error's code, message (and details, e.g. the current version) and whether it may have been applied. */
export function failedEntry(key: string, err: unknown): EntryFailure {
  const e = err instanceof KvError ? err : new KvError('internal', err instanceof Error ? err.message : String(err));
  return { key, ok: false, error: { ...e.details, code: e.code, message: e.message }, outcome: e.outcome };
}

const text = z.string().refine((s) => s.isWellFormed(), 'must be valid Unicode (no lone surrogates)');
const key = text.refine((k) => k.length > 0 && Buffer.byteLength(k) <= KEY_BYTES_MAX, `keys must be 1 to ${KEY_BYTES_MAX} bytes of UTF-8`).refine((k) => !k.startsWith('\u0000'), 'keys starting with U+0000 are reserved');
/** A copied key may be a reserved record (idempotency.ts): its data key plus the prefix and the idempotency key. */
const copiedKey = text.refine((k) => k.length > 0 && Buffer.byteLength(k) <= KEY_BYTES_MAX + 2 * IDEMPOTENCY_KEY_BYTES_MAX, 'copied keys must be 1 to KEY_BYTES_MAX + 256 bytes');
const idem = z.string().regex(/^[\x21-\x7e]+$/).max(IDEMPOTENCY_KEY_BYTES_MAX);
const value = text.refine((v) => Buffer.byteLength(v) <= VALUE_BYTES_MAX, `values must be at most ${VALUE_BYTES_MAX} bytes of UTF-8`);

const ttlMs = z.number().int().positive().max(TTL_MS_MAX, `ttlMs must be at most ${TTL_MS_MAX} (about ten years)`);
const version = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const by = z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER);

const oneCondition = (o: { ifVersion?: number; ifAbsent?: true }) => o.ifVersion === undefined || o.ifAbsent === undefined;
const ONE_CONDITION = 'ifVersion and ifAbsent exclude each other';
const mputEntry = z.strictObject({ key, value, ttlMs: ttlMs.optional(), ifVersion: version.optional(), ifAbsent: z.literal(true, { error: 'ifAbsent must be true when given' }).optional() }).refine(oneCondition, ONE_CONDITION);
const mputSchema = z.strictObject({ entries: z.array(mputEntry).min(1).max(BATCH_ENTRIES_MAX) });
const mgetSchema = z.strictObject({ keys: z.array(key).min(1).max(BATCH_ENTRIES_MAX) });

/**
 * A write as the leader decides it. `ifVersion` writes only if the key's current version is that
 * one, `ifAbsent` only if the key is absent (If-Match / If-None-Match: *); `incr` adds `by` to
 * a decimal integer value (absent: 0). The leader evaluates each against the latest sequenced
 * state, in sequence order, so a condition or a sum never sees a stale value.
 */
export type WriteOp = (
  | { op: 'put'; key: string; value: string; ttlMs?: number; ifVersion?: number; ifAbsent?: boolean }
  | { op: 'del'; key: string; ifVersion?: number }
  | { op: 'incr'; key: string; by: number }
) & { /** Idempotency-Key: applied once, a retry gets the first answer (idempotency.ts). */ idem?: string };

const putOp = z.strictObject({ op: z.literal('put'), key, value, ttlMs: ttlMs.optional(), ifVersion: version.optional(), ifAbsent: z.literal(true).optional(), idem: idem.optional() })
  .refine(oneCondition, ONE_CONDITION);

/**
 * Router -> leader: `POST /internal/write {"ops":[WriteOp, ...]}`, the batch the router coalesces
 * concurrent single-key writes into. Each op gets its own result (`deleted` tells a delete whether
 * the key was there), in the order given.
 */
const writeOpsSchema = z.strictObject({
  ops: z.array(z.union([putOp, z.strictObject({ op: z.literal('del'), key, ifVersion: version.optional(), idem: idem.optional() }), z.strictObject({ op: z.literal('incr'), key, by, idem: idem.optional() })])).min(1).max(BATCH_ENTRIES_MAX),
});

/**
 * Coordinator -> target leader (resharding): a copied value with the expiry it already had
 * (`exp`, wall-clock ms), or a copied delete. The target sequences it as its own write.
 */
export type ImportOp = { op: 'put'; key: string; value: string; exp?: number } | { op: 'del'; key: string };
const importOpsSchema = z.strictObject({
  ops: z.array(z.union([z.strictObject({ op: z.literal('put'), key: copiedKey, value, exp: z.number().int().optional() }), z.strictObject({ op: z.literal('del'), key: copiedKey })])).min(1).max(BATCH_ENTRIES_MAX),
});

export function parseImportOpsBody(body: unknown): ImportOp[] {
  return parseBatch(importOpsSchema, body, 'ops').ops;
}

export function parseWriteOpsBody(body: unknown): WriteOp[] {
  return parseBatch(writeOpsSchema, body, 'ops').ops as WriteOp[];
}

export function parseMputBody(body: unknown): PutEntry[] {
  return parseBatch(mputSchema, body, 'entries').entries;
}

export function parseMgetBody(body: unknown): string[] {
  return parseBatch(mgetSchema, body, 'keys').keys;
}

function parseBatch<T>(schema: z.ZodType<T>, body: unknown, field: string): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const where = issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
  const tooMany = issue.code === 'too_big' && issue.path.length === 1;
  if (tooMany) throw new KvError('batch_too_large', `at most ${BATCH_ENTRIES_MAX} ${field} per request`);
  throw new KvError('invalid_body', `body must be {"${field}": [...]} with 1 to ${BATCH_ENTRIES_MAX} valid ${field}: ${issue.message}${where}`);
}
