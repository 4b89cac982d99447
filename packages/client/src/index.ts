import type { EntryResult, PutEntry } from '@shardkv/common';
import { Pool } from 'undici';

/**
 * A typed client for the shardkv API (through the router). Every call has a deadline; every
 * failure is a KvClientError that says whether the request definitely had no effect
 * (`outcome: 'definite'`: 4xx, 503) or may have (`'indeterminate'`: 504, a lost connection, a
 * timeout), so callers know when a retry could apply a write twice.
 */
export interface KvClientOptions {
  /** Keep-alive connections to the router. */
  connections?: number;
  timeoutMs?: number;
  /** Bearer token for /admin/* calls. */
  adminToken?: string;
}

export interface BatchResult {
  results: EntryResult[];
  ok: number;
  failed: number;
}

export class KvClientError extends Error {
  override name = 'KvClientError';
  constructor(
    message: string,
    /** HTTP status, 0 when no answer arrived. */
    readonly status: number,
    readonly code: string,
    readonly outcome: 'definite' | 'indeterminate',
  ) {
    super(message);
  }
}

export class KvClient {
  private readonly pool: Pool;
  private readonly timeoutMs: number;

  constructor(
    readonly url = 'http://127.0.0.1:5000',
    private readonly opts: KvClientOptions = {},
  ) {
    this.pool = new Pool(url, { connections: opts.connections ?? 16 });
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  async put(key: string, value: string): Promise<{ seq: number }> {
    return (await this.call('POST', '/put', { key, value })) as { seq: number };
  }

  /** The value, or undefined when the key does not exist. */
  async get(key: string, opts: { stale?: boolean } = {}): Promise<string | undefined> {
    const path = `/get?key=${encodeURIComponent(key)}${opts.stale === true ? '&consistency=stale' : ''}`;
    const body = (await this.call('GET', path, undefined, [404])) as { value?: string } | undefined;
    return body?.value;
  }

  /** Whether the key existed. */
  async delete(key: string): Promise<boolean> {
    return ((await this.call('DELETE', `/delete?key=${encodeURIComponent(key)}`)) as { deleted: boolean }).deleted;
  }

  mput(entries: readonly PutEntry[]): Promise<BatchResult> {
    return this.call('POST', '/mput', { entries }) as Promise<BatchResult>;
  }

  mget(keys: readonly string[]): Promise<BatchResult> {
    return this.call('POST', '/mget', { keys }) as Promise<BatchResult>;
  }

  status(): Promise<unknown> {
    return this.call('GET', '/status');
  }

  failover(shard: string, unsafe = false): Promise<unknown> {
    return this.call('POST', `/admin/failover?shard=${encodeURIComponent(shard)}${unsafe ? '&unsafe=true' : ''}`);
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  /** One request; `absent` lists statuses that mean "not found" (answered as undefined). */
  private async call(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, absent: number[] = []): Promise<unknown> {
    const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
    if (this.opts.adminToken !== undefined && path.startsWith('/admin/')) headers.authorization = `Bearer ${this.opts.adminToken}`;
    let res;
    try {
      res = await this.pool.request({ method, path, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new KvClientError(`${method} ${path}: no answer (${err instanceof Error ? err.message : String(err)})`, 0, 'no_answer', 'indeterminate');
    }
    const text = await res.body.text();
    if (absent.includes(res.statusCode)) return undefined;
    const parsed = text === '' ? undefined : (JSON.parse(text) as unknown);
    if (res.statusCode >= 200 && res.statusCode < 300) return parsed;
    const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
    const outcome = res.statusCode >= 500 && res.statusCode !== 503 ? 'indeterminate' : 'definite';
    throw new KvClientError(error?.message ?? `HTTP ${res.statusCode}`, res.statusCode, error?.code ?? 'http_error', outcome);
  }
}
