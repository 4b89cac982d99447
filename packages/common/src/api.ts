import { z } from 'zod';
import { KvError } from './errors';

/** Limits of the public API (TigerBeetle style: every input has a named maximum). */
export const KEY_BYTES_MAX = 1024;
export const VALUE_BYTES_MAX = 1024 * 1024;
/** Any request body above this is refused before it is parsed. */
export const BODY_BYTES_MAX = 2 * 1024 * 1024;
/** A key's time to live is at most about ten years (Redis takes more; nobody means more). */
export const TTL_MS_MAX = 10 * 365 * 24 * 3600 * 1000;

export interface PutRequest {
  key: string;
  value: string;
  /** The key expires this long after the leader applies the write. */
  ttlMs?: number;
  /** Write only if the key's current version is this one (the body's form of If-Match). */
  ifVersion?: number;
  /** Write only if the key is absent (the body's form of If-None-Match: *). */
  ifAbsent?: true;
}

export interface IncrRequest {
  key: string;
  by: number;
}

// A lone surrogate cannot be encoded as UTF-8, so such a key could not round-trip through a URL
// or (later) a disk encoding: it is refused instead of silently turned into U+FFFD.
const utf8String = (what: string) =>
  z
    .string({ error: `${what} must be a string` })
    .refine((s) => s.isWellFormed(), `${what} must be valid Unicode (no lone surrogates)`);

const putBodySchema = z.strictObject(
  {
    key: utf8String('key')
      .refine((k) => k.length > 0, 'key must not be empty')
      .refine((k) => !k.startsWith('\u0000'), 'keys starting with U+0000 are reserved')
      .refine((k) => Buffer.byteLength(k) <= KEY_BYTES_MAX, `key must be at most ${KEY_BYTES_MAX} bytes of UTF-8`),
    value: utf8String('value'),
    ttlMs: z.number({ error: 'ttlMs must be a number' }).int('ttlMs must be a whole number of milliseconds').positive('ttlMs must be positive').max(TTL_MS_MAX, `ttlMs must be at most ${TTL_MS_MAX} (about ten years)`).optional(),
    ifVersion: z.number({ error: 'ifVersion must be a number' }).int('ifVersion must be an integer').nonnegative('ifVersion must not be negative').max(Number.MAX_SAFE_INTEGER).optional(),
    ifAbsent: z.literal(true, { error: 'ifAbsent must be true when given' }).optional(),
  },
  { error: 'body must be a JSON object with "key" and "value" (and optionally "ttlMs", "ifVersion" or "ifAbsent")' },
);

const incrBodySchema = z.strictObject(
  {
    key: putBodySchema.shape.key,
    by: z.number({ error: 'by must be a number' }).int('by must be an integer').min(-Number.MAX_SAFE_INTEGER, 'by must be a safe integer').max(Number.MAX_SAFE_INTEGER, 'by must be a safe integer').optional(),
  },
  { error: 'body must be a JSON object with "key" (and optionally "by", an integer, default 1)' },
);

/** Validates a parsed `/incr` body; `by` defaults to 1. */
export function parseIncrBody(body: unknown): IncrRequest {
  const parsed = incrBodySchema.safeParse(body);
  if (!parsed.success) throw bodyError(parsed.error.issues[0]!, body);
  return { key: parsed.data.key, by: parsed.data.by ?? 1 };
}

function bodyError(issue: z.core.$ZodIssue, body: unknown): KvError {
  const field = issue.path[0];
  const code = field === 'key' ? 'invalid_key' : field === 'value' ? 'invalid_value' : 'invalid_body';
  const missing = field !== undefined && typeof body === 'object' && body !== null && !(field in body);
  return new KvError(code, missing ? `"${String(field)}" is required` : issue.message);
}

/** Validates a parsed `/put` body; throws a KvError naming the first problem. */
export function parsePutBody(body: unknown): PutRequest {
  const parsed = putBodySchema.safeParse(body);
  if (!parsed.success) throw bodyError(parsed.error.issues[0]!, body);
  const bytes = Buffer.byteLength(parsed.data.value);
  if (bytes > VALUE_BYTES_MAX) {
    throw new KvError('value_too_large', `value is ${bytes} bytes of UTF-8, the maximum is ${VALUE_BYTES_MAX}`);
  }
  return parsed.data;
}

const keySchema = putBodySchema.shape.key;

/** Validates a key given on its own (a query parameter, a gRPC field): 1 to KEY_BYTES_MAX bytes of UTF-8. */
export function parseKey(raw: unknown): string {
  const parsed = keySchema.safeParse(raw);
  if (!parsed.success) throw new KvError('invalid_key', parsed.error.issues[0]!.message);
  return parsed.data;
}

/**
 * Reads `key` from a raw query string and validates it (see keyFromQuery and parseKey).
 */
export function parseKeyQuery(querystring: string): string {
  return parseKey(keyFromQuery(querystring));
}

/**
 * The `key` parameter of a raw query string, decoded but not yet validated. We parse it ourselves
 * because Node's query parsers turn an invalid percent-encoding into U+FFFD, which would silently
 * address a different key. `+` means space, as in every form-encoded query string.
 */
export function keyFromQuery(querystring: string): string {
  let found: string | undefined;
  for (const part of querystring.split('&')) {
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    if (name !== 'key') continue;
    if (found !== undefined) throw new KvError('invalid_key', 'the "key" parameter must be given once');
    found = decodeComponent(eq === -1 ? '' : part.slice(eq + 1));
  }
  if (found === undefined) throw new KvError('invalid_key', '"key" query parameter is required');
  return found;
}

function decodeComponent(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    throw new KvError('invalid_key', 'key is not valid percent-encoded UTF-8');
  }
}

/** The inverse of parseKeyQuery, used on every hop so that any key round-trips exactly. */
export function keyQuery(key: string): string {
  return `key=${encodeURIComponent(key)}`;
}
