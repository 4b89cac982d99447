import type Koa from 'koa';
import getRawBody from 'raw-body';
import { BODY_BYTES_MAX } from './api';
import { KvError } from './errors';

declare module 'koa' {
  interface Request {
    /** The parsed JSON object (set by `jsonBody`). */
    body?: unknown;
  }
}

// Fatal: a byte sequence that is not UTF-8 is an error, never silently replaced by U+FFFD (which
// would store a value, or address a key, that the client never sent).
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads a JSON object body with a hard size limit, checked against Content-Length before reading
 * and while streaming, so an oversized body is refused before it is parsed. We use raw-body (the
 * reader under koa-bodyparser) directly because koa-bodyparser decodes invalid UTF-8 lossily.
 */
export function jsonBody(bytesMax: number = BODY_BYTES_MAX): Koa.Middleware {
  return async (ctx, next) => {
    const text = decode(await readBytes(ctx, bytesMax));
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new KvError('invalid_json', `request body is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new KvError('invalid_body', 'request body must be a JSON object');
    }
    ctx.request.body = body;
    await next();
  };
}

/** The whole body as bytes, at most `bytesMax` (413 above it, checked against Content-Length first). */
export async function readBytes(ctx: Koa.Context, bytesMax: number): Promise<Buffer> {
  const declared = ctx.get('content-length');
  try {
    return await getRawBody(ctx.req, { length: declared === '' ? undefined : declared, limit: bytesMax });
  } catch (err) {
    const e = err as { type?: string };
    if (e.type === 'entity.too.large') throw new KvError('body_too_large', `request body is larger than ${bytesMax} bytes`);
    throw new KvError('invalid_body', 'request body could not be read (aborted or shorter than Content-Length)');
  }
}

function decode(bytes: Buffer): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new KvError('invalid_json', 'request body is not valid UTF-8');
  }
}

/**
 * Refuses, before the body is read, a request whose body is not declared as plain JSON: another
 * content type, or any Content-Encoding (we do not decompress, so gzip would only fail later).
 */
export const requireJson: Koa.Middleware = requireType('application/json');

/** As requireJson, for another content type (`text/plain` for bulk loads). */
export function requireType(type: string): Koa.Middleware {
  return async (ctx, next) => {
    if (!ctx.is(type)) {
      throw new KvError('unsupported_media_type', `Content-Type must be ${type}`);
    }
    const encoding = ctx.get('content-encoding').toLowerCase();
    if (encoding !== '' && encoding !== 'identity') {
      throw new KvError('unsupported_media_type', `Content-Encoding "${encoding}" is not supported; send the body uncompressed`);
    }
    await next();
  };
}
