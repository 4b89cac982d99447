import { z } from 'zod';
import { KvError } from './errors';

/** Limits of the public API (TigerBeetle style: every input has a named maximum). */
export const KEY_BYTES_MAX = 1024;
export const VALUE_BYTES_MAX = 1024 * 1024;
/** Any request body above this is refused before it is parsed. */
export const BODY_BYTES_MAX = 2 * 1024 * 1024;

export interface PutRequest {
  key: string;
  value: string;
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
      .refine((k) => Buffer.byteLength(k) <= KEY_BYTES_MAX, `key must be at most ${KEY_BYTES_MAX} bytes of UTF-8`),
    value: utf8String('value'),
  },
  { error: 'body must be a JSON object with exactly "key" and "value"' },
);

/** Validates a parsed `/put` body; throws a KvError naming the first problem. */
export function parsePutBody(body: unknown): PutRequest {
  const parsed = putBodySchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path[0];
    const code = field === 'key' ? 'invalid_key' : field === 'value' ? 'invalid_value' : 'invalid_body';
    const missing = field !== undefined && typeof body === 'object' && body !== null && !(field in body);
    const message = missing ? `"${String(field)}" is required` : issue.message;
    throw new KvError(code, message);
  }
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
