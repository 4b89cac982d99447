import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { Pool } from 'undici';
import { ERRORS, KvError, type ErrorCode } from './errors';
import { authHeaders } from './http';
import { upstreamError } from './upstream';

export interface RpcClientOptions {
  connections: number;
  /** Deadline of a call unless the call gives its own. */
  timeoutMs: number;
  /** The cluster token, sent as a bearer token on every call. */
  token?: string;
  /** Source address of outgoing connections (each process has its own loopback address in the fault harness). */
  localAddress?: string;
  /** Requests in flight on one connection (HTTP/1.1 pipelining, answered in order); default 1. */
  pipelining?: number;
}

export interface RpcCall {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  /** A string or bytes; sent as JSON unless `headers` name another content type. */
  body?: string | Buffer;
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** Aborting ends the call at once (its reason is thrown). */
  signal?: AbortSignal;
  /** Only idempotent calls are retried, and only when a kept-alive connection broke. */
  idempotent?: boolean;
}

export interface RpcResponse {
  status: number;
  body: Buffer;
}

/**
 * The one client for calls between shardkv processes (router -> node, leader -> follower,
 * node -> coordinator): a keep-alive undici pool with a deadline on every call. A failed call
 * is a KvError whatever went wrong: a transport failure classified by `upstreamError`
 * (definite only when nothing can have been sent), or the peer's `{"error":{"code"}}` decoded by
 * code from the one error table. Nothing is found by searching response text.
 */
export class RpcClient {
  private readonly pool: Pool;
  private readonly auth: Record<string, string>;
  /** Built once: every call with a body sends these. */
  private readonly jsonHeaders: Record<string, string>;

  constructor(
    readonly url: string,
    private readonly opts: RpcClientOptions,
  ) {
    this.pool = new Pool(url, { connections: opts.connections, pipelining: opts.pipelining ?? 1, connectTimeout: Math.min(opts.timeoutMs, 2000), ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }) });
    this.auth = authHeaders(opts.token);
    this.jsonHeaders = { ...this.auth, 'content-type': 'application/json' };
  }

  /** The raw answer, whatever its status; throws only on transport failures. */
  async request(call: RpcCall): Promise<RpcResponse> {
    const timeoutMs = call.timeoutMs ?? this.opts.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    try {
      return await this.once(call, timeoutMs);
    } catch (err) {
      if (call.signal?.aborted === true) throw call.signal.reason;
      const kv = upstreamError(err, this.url, timeoutMs);
      // A keep-alive socket the peer closed between calls surfaces as a lost connection; a read
      // may safely go again, within what is left of the same deadline; a write may not (it could
      // have been applied).
      const leftMs = deadline - Date.now();
      if (call.idempotent !== true || kv.code !== 'upstream_connection_lost' || leftMs <= 0) throw kv;
      try {
        return await this.once(call, leftMs);
      } catch (err2) {
        throw upstreamError(err2, this.url, timeoutMs);
      }
    }
  }

  /** A 2xx answer's JSON body; any other answer is thrown as the KvError it encodes. */
  async json<T>(call: RpcCall): Promise<T> {
    const res = await this.request(call);
    if (res.status >= 200 && res.status < 300) return JSON.parse(res.body.toString('utf8')) as T;
    throw decodeError(res, this.url);
  }

  private async once(call: RpcCall, timeoutMs: number): Promise<RpcResponse> {
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = call.signal === undefined ? deadline : AbortSignal.any([deadline, call.signal]);
    const pending = this.pool
      .request({
        method: call.method,
        path: call.path,
        body: call.body,
        headers: this.headersFor(call),
        signal,
      })
      .then(async (res) => ({ status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) }));
    return withinSignal(pending, signal);
  }

  private headersFor(call: RpcCall): Record<string, string> {
    const base = call.body === undefined ? this.auth : this.jsonHeaders;
    return call.headers === undefined ? base : { ...base, ...call.headers };
  }

  /**
   * A streamed answer, line by line (newline-delimited JSON): a 2xx answer's lines, or the
   * KvError an error answer encodes. `timeoutMs` bounds the wait for the answer's start and
   * each stall of its body, not the whole stream.
   */
  async lines(call: RpcCall): Promise<AsyncIterable<string>> {
    const timeoutMs = call.timeoutMs ?? this.opts.timeoutMs;
    let res;
    try {
      res = await this.pool.request({ method: call.method, path: call.path, body: call.body, headers: this.headersFor(call), headersTimeout: timeoutMs, bodyTimeout: timeoutMs, ...(call.signal === undefined ? {} : { signal: call.signal }) });
    } catch (err) {
      throw upstreamError(err, this.url, timeoutMs);
    }
    if (res.statusCode < 200 || res.statusCode >= 300) throw decodeError({ status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) }, this.url);
    return linesOf(res.body);
  }

  /** The pool itself, for streamed calls (state transfers). */
  get raw(): Pool {
    return this.pool;
  }

  get headers(): Record<string, string> {
    return this.auth;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * The KvError a peer's error answer stands for, with its details (e.g. `leader`). A code this
 * build does not know, or a body that is not our error shape, is `internal`: indeterminate,
 * because nothing says the call was not applied.
 */
export function decodeError(res: RpcResponse, from: string): KvError {
  let body: { error?: { code?: unknown; message?: unknown; [k: string]: unknown } } | undefined;
  try {
    body = JSON.parse(res.body.toString('utf8')) as typeof body;
  } catch {
    body = undefined;
  }
  const e = body?.error;
  const code = typeof e?.code === 'string' && e.code in ERRORS ? (e.code as ErrorCode) : undefined;
  if (code === undefined) return new KvError('internal', `${from} answered HTTP ${res.status} without a known error code`);
  const { code: _c, message, ...details } = e!;
  return new KvError(code, typeof message === 'string' ? message : code, details);
}

/**
 * undici does not abort a request while it waits for its connection (it waits for the pool's
 * connect timeout instead: seen as 2.5 s against a 300 ms deadline when a partition drops the
 * SYN), so the deadline is enforced here as well. The abandoned request ends on its own.
 */
function withinSignal<T>(pending: Promise<T>, signal: AbortSignal): Promise<T> {
  pending.catch(() => {}); // its failure is reported through the race below, or not at all
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    pending.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/**
 * The body's lines. The body is destroyed however the reader stops, so a stream that fails
 * half-way does not hold a pooled connection. A reader that stops early (the trailer was read)
 * makes undici's body emit an abort error on destroy; errors reach the reader through the
 * iterator, so the no-op listeners only keep that last one from crashing the process.
 */
export async function* linesOf(body: Readable): AsyncGenerator<string> {
  const lines = createInterface({ input: body, crlfDelay: Infinity });
  lines.on('error', () => {});
  body.on('error', () => {});
  try {
    yield* lines;
  } finally {
    lines.close();
    if (!body.destroyed) body.destroy();
  }
}
