import { IDEMPOTENCY_HEADER, LOAD_CONTENT_TYPE, type ClusterMap, type EntryResult, type LoadAnswer, type MigrationStarted, type MigrationView, type PutEntry } from '@shardkv/common';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { Pool } from 'undici';
import { DirectRouting, type Method } from './direct';
import { decodeAnswer, KvClientError, neverSent, noAnswer } from './errors';

export { KvClientError } from './errors';

/**
 * A typed client for the shardkv API (through the routers, or with `routing: 'direct'` straight
 * to the shards' leaders for key operations). Every call has a deadline; every
 * failure is a KvClientError that says whether the request definitely had no effect
 * (`outcome: 'definite'`: 4xx, 503) or may have (`'indeterminate'`: 504, a lost connection, a
 * timeout), so callers know when a retry could apply a write twice.
 *
 * Given several routers (any of them serves every key), a call that cannot connect to one goes to
 * the next: a refused connection proves nothing was sent, so this is safe for writes too. So does
 * a call one router refuses with 429 `rate_limited`: nothing of it was applied, and each router
 * enforces only its share of a client's limit (see the README's *Rate limits*), so a client spread
 * over the routers gets the whole of it. Any other failure after the request may have left is
 * reported, never retried.
 */
/** The first resend of an indeterminate write waits this long; each next one twice as long. */
const WRITE_RETRY_BACKOFF_MS = 100;

export interface KvClientOptions {
  /** Keep-alive connections to the router. */
  connections?: number;
  timeoutMs?: number;
  /** A single-key write whose outcome is unknown is sent again this often (default 2), with its Idempotency-Key: applied once. 0: never. */
  writeRetries?: number;
  /** Bearer token for /admin/* calls. */
  adminToken?: string;
  /**
   * Bearer token sent with every other call through a router. The router does not check it: it
   * names this client for the per-client rate limit (else the client is its address).
   */
  token?: string;
  /**
   * `router` (default): every call goes through a router. `direct`: get/put/delete and the
   * batches go straight to the owning shard's leader by the router's `/cluster/map` (see
   * direct.ts); stale reads, loads and admin calls still use the router, as does everything on a
   * cluster whose map has no hash slots.
   */
  routing?: 'router' | 'direct';
}

export interface BatchResult {
  results: EntryResult[];
  ok: number;
  failed: number;
}

export class KvClient {
  readonly urls: string[];
  private readonly pools: Pool[];
  private readonly timeoutMs: number;
  private readonly direct: DirectRouting | undefined;
  /** The router that answered last: calls start there. */
  private current = 0;

  /** `url`: one router, several as an array, or a comma-separated list. */
  constructor(
    url: string | readonly string[] = 'http://127.0.0.1:5000',
    private readonly opts: KvClientOptions = {},
  ) {
    this.urls = (typeof url === 'string' ? url.split(',') : [...url]).map((u) => u.trim()).filter((u) => u !== '');
    if (this.urls.length === 0) throw new Error('KvClient needs at least one router URL');
    this.pools = this.urls.map((u) => new Pool(u, { connections: opts.connections ?? 16 }));
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    const routerPath = { call: (method: Method, path: string, body: unknown, absent: readonly number[], signal: AbortSignal, extra?: Record<string, string>) => this.call(method, path, body, absent, signal, extra) };
    this.direct = opts.routing === 'direct' ? new DirectRouting(routerPath, opts.connections ?? 16) : undefined;
  }

  /** The router calls go to first. */
  get url(): string {
    return this.urls[this.current]!;
  }

  /**
   * Sets a key; `ifVersion` writes only at that version, `ifAbsent` only if the key is absent
   * (else KvClientError `version_mismatch`, its `details.version` the current one), `ttlMs` makes
   * it expire. Answers the write's seq, which is the value's new version.
   */
  async put(key: string, value: string, opts: PutOptions = {}): Promise<{ seq: number; version: number }> {
    return (await this.write(key, 'POST', '/put', { key, value, ...opts })) as { seq: number; version: number };
  }

  /** Adds `by` (default 1, may be negative) to the key's decimal integer (absent: 0); answers the new value. */
  async incr(key: string, by = 1): Promise<{ value: number; version: number }> {
    const r = (await this.write(key, 'POST', '/incr', { key, by })) as { value: string; version: number };
    return { value: Number(r.value), version: r.version };
  }

  /** The value with its version and what is left of its time to live, or undefined when the key does not exist. */
  async getEntry(key: string): Promise<{ value: string; version: number; ttlMs?: number } | undefined> {
    return (await this.keyCall(key, 'GET', `/get?key=${encodeURIComponent(key)}`, undefined, [404])) as { value: string; version: number; ttlMs?: number } | undefined;
  }

  /** The value, or undefined when the key does not exist. A stale read goes through the router, which knows the followers' state. */
  async get(key: string, opts: { stale?: boolean } = {}): Promise<string | undefined> {
    const path = `/get?key=${encodeURIComponent(key)}`;
    const body = (opts.stale === true ? await this.call('GET', `${path}&consistency=stale`, undefined, [404]) : await this.keyCall(key, 'GET', path, undefined, [404])) as { value?: string } | undefined;
    return body?.value;
  }

  /** Whether the key existed; `ifVersion` deletes only at that version (else `version_mismatch`). */
  async delete(key: string, opts: { ifVersion?: number } = {}): Promise<boolean> {
    const condition = opts.ifVersion === undefined ? '' : `&ifVersion=${opts.ifVersion}`;
    return ((await this.write(key, 'DELETE', `/delete?key=${encodeURIComponent(key)}${condition}`)) as { deleted: boolean }).deleted;
  }

  mput(entries: readonly PutEntry[]): Promise<BatchResult> {
    if (this.direct !== undefined) return this.direct.batch('mput', entries, AbortSignal.timeout(this.timeoutMs));
    return this.call('POST', '/mput', { entries }) as Promise<BatchResult>;
  }

  mget(keys: readonly string[]): Promise<BatchResult> {
    if (this.direct !== undefined) return this.direct.batch('mget', keys, AbortSignal.timeout(this.timeoutMs));
    return this.call('POST', '/mget', { keys }) as Promise<BatchResult>;
  }

  /** `GET /cluster/map`: which shard owns which slots, and any migration running. */
  clusterMap(): Promise<ClusterMap> {
    return this.call('GET', '/cluster/map') as Promise<ClusterMap>;
  }

  /**
   * `POST /load`: a body of `<key> <value>` lines (at most LOAD_BODY_BYTES_MAX bytes), whose
   * first line is line `firstLine` of the caller's file. The answer reports every entry loaded,
   * failed (with its line number, code and outcome) or malformed. While the body is sent, the
   * call fails if the router reads nothing of it for `idleTimeoutMs` (it reads only as fast as it
   * loads); once it is sent, if no answer comes within `answerTimeoutMs`. Either failure, or a
   * connection lost, is indeterminate: any part of the body may have been loaded.
   */
  async load(body: Buffer, opts: LoadCallOptions = {}): Promise<LoadAnswer> {
    const path = `/load?firstLine=${opts.firstLine ?? 1}`;
    const idleMs = opts.idleTimeoutMs ?? this.timeoutMs;
    const answerMs = opts.answerTimeoutMs ?? 60_000;
    const aborter = new AbortController();
    let timer = setTimeout(() => aborter.abort(new Error(`the router read none of the body for ${idleMs} ms`)), idleMs);
    const progress = (sent: number, done: boolean) => {
      clearTimeout(timer);
      timer = done ? setTimeout(() => aborter.abort(new Error(`no answer within ${answerMs} ms of sending the body`)), answerMs) : setTimeout(() => aborter.abort(new Error(`the router read none of the body for ${idleMs} ms`)), idleMs);
      opts.onSent?.(sent);
    };
    try {
      return (await this.send('POST', path, { 'content-type': LOAD_CONTENT_TYPE, 'content-length': String(body.length) }, () => Readable.from(slices(body, progress), { objectMode: false }), aborter.signal)) as LoadAnswer;
    } finally {
      clearTimeout(timer);
    }
  }

  status(): Promise<unknown> {
    return this.call('GET', '/status');
  }

  /** `POST /admin/shards`: starts moving slots onto a new shard; the migration ends when the map shows none. */
  addShard(shard: { id: string; leader: string; follower: string }): Promise<MigrationStarted> {
    return this.call('POST', '/admin/shards', shard) as Promise<MigrationStarted>;
  }

  /** `DELETE /admin/shards/<id>`: starts moving the shard's slots to the others. */
  removeShard(id: string): Promise<MigrationStarted> {
    return this.call('DELETE', `/admin/shards/${encodeURIComponent(id)}`) as Promise<MigrationStarted>;
  }

  failover(shard: string, unsafe = false): Promise<unknown> {
    return this.call('POST', `/admin/failover?shard=${encodeURIComponent(shard)}${unsafe ? '&unsafe=true' : ''}`);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.map((p) => p.close()), this.direct?.close()]);
  }

  /** A call about one key: to its leader with direct routing, else through a router. */
  private keyCall(key: string, method: Method, path: string, body?: unknown, absent: readonly number[] = [], extra: Record<string, string> = {}): Promise<unknown> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    return this.direct === undefined ? this.call(method, path, body, absent, signal, extra) : this.direct.one(key, method, path, body, absent, signal, extra);
  }

  /**
   * A single-key write, sent with an Idempotency-Key: when its outcome is unknown (no answer, a
   * timeout, a leader lost under it) it is sent again with the same key, up to `writeRetries`
   * times, so it is applied exactly once and the answer is the first one's.
   */
  private async write(key: string, method: Method, path: string, body?: unknown): Promise<unknown> {
    const extra = { [IDEMPOTENCY_HEADER]: randomUUID() };
    let unknown: KvClientError | undefined;
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.keyCall(key, method, path, body, [], extra);
      } catch (err) {
        if (!(err instanceof KvClientError)) throw err;
        // Once an attempt's outcome was unknown, a later attempt's definite failure says nothing
        // about it: that attempt may still commit (on a leader that goes on alone). The call
        // stays indeterminate, and is resent while retries last.
        if (err.outcome === 'indeterminate') unknown = err;
        if (unknown === undefined || attempt >= (this.opts.writeRetries ?? 2)) throw unknown === undefined ? err : stillUnknown(unknown, err);
        await new Promise((r) => setTimeout(r, WRITE_RETRY_BACKOFF_MS * 2 ** attempt));
      }
    }
  }

  /** One request through a router; `absent` lists statuses that mean "not found" (answered as undefined). */
  private async call(method: Method, path: string, body?: unknown, absent: readonly number[] = [], signal = AbortSignal.timeout(this.timeoutMs), extra: Record<string, string> = {}): Promise<unknown> {
    const headers: Record<string, string> = body === undefined ? { ...extra } : { ...extra, 'content-type': 'application/json' };
    const token = path.startsWith('/admin/') ? this.opts.adminToken : this.opts.token;
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const text = body === undefined ? undefined : JSON.stringify(body);
    return this.send(method, path, headers, () => text, signal, absent);
  }

  /**
   * `body` gives a fresh body for each router tried. Each router is tried at most once per call,
   * and only while the ones before it proved nothing was applied (refused the connection, or 429).
   */
  private async send(method: Method, path: string, headers: Record<string, string>, body: () => string | Readable | undefined, signal: AbortSignal, absent: readonly number[] = []): Promise<unknown> {
    let res;
    for (let tried = 1; ; tried += 1) {
      const another = tried < this.pools.length && !signal.aborted;
      try {
        res = await this.pools[this.current]!.request({ method, path, headers, body: body(), signal });
      } catch (err) {
        if (neverSent(err) && another) {
          this.current = (this.current + 1) % this.pools.length;
          continue;
        }
        throw noAnswer(`${method} ${path}`, this.url, err, signal);
      }
      if (res.statusCode !== 429 || !another) break;
      await res.body.dump();
      this.current = (this.current + 1) % this.pools.length;
    }
    return decodeAnswer(res.statusCode, await res.body.text(), absent, header(res.headers['retry-after']));
  }
}

/** The last answer, as an indeterminate failure: an earlier attempt's outcome was never learned. */
function stillUnknown(first: KvClientError, last: KvClientError): KvClientError {
  if (last.outcome === 'indeterminate') return last;
  return new KvClientError(`${last.message} (an earlier attempt got no answer: ${first.message}; it may still be applied)`, last.status, first.code, 'indeterminate', last.details);
}

export interface PutOptions {
  ttlMs?: number;
  ifVersion?: number;
  ifAbsent?: boolean;
}

export interface LoadCallOptions {
  /** The number of the body's first line in the caller's file (default 1). */
  firstLine?: number;
  /** While sending: the longest time the router may read nothing of the body (default: the client's timeoutMs). */
  idleTimeoutMs?: number;
  /** After sending: how long to wait for the answer (default 60 s). */
  answerTimeoutMs?: number;
  /** Bytes of the body the router has taken so far. */
  onSent?: (bytes: number) => void;
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The body in slices, so that the caller sees how much of it the router has taken. */
async function* slices(body: Buffer, progress: (sent: number, done: boolean) => void): AsyncIterable<Buffer> {
  const sliceBytes = 256 * 1024;
  for (let at = 0; at < body.length; at += sliceBytes) {
    const end = Math.min(body.length, at + sliceBytes);
    yield body.subarray(at, end);
    progress(end, end === body.length);
  }
  if (body.length === 0) progress(0, true);
}
