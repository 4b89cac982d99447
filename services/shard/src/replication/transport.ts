import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { authHeaders } from '@shardkv/common';
import { Pool } from 'undici';
import { PeerNotReadyError, replicateReplySchema, StaleEpochError, type PeerTransport, type ReplicateReply } from './messages';

/**
 * The HTTP side of PeerTransport: one keep-alive undici Pool per peer. Every request has a
 * deadline, so a paused peer costs at most `requestTimeoutMs` and never hangs the loop.
 */
/**
 * The body's lines. The body is destroyed however the reader stops, so a transfer that fails
 * half-way does not hold a pooled connection. A reader that stops early (the trailer was read)
 * makes undici's body emit an abort error on destroy; errors reach the reader through the
 * iterator, so the no-op listeners only keep that last one from crashing the process.
 */
async function* linesOf(body: Readable): AsyncGenerator<string> {
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

export class HttpPeer implements PeerTransport {
  private readonly pool: Pool;
  private readonly headers: Record<string, string>;
  /** Built once: the replication loop sends on this peer many times a second. */
  private readonly replicateHeaders: Record<string, string>;

  constructor(
    readonly url: string,
    token: string | undefined,
    private readonly requestTimeoutMs: number,
  ) {
    // Few connections: the replication loop keeps one request in flight, plus a state transfer.
    this.pool = new Pool(url, { connections: 4, connectTimeout: requestTimeoutMs });
    this.headers = authHeaders(token);
    this.replicateHeaders = { ...this.headers, 'content-type': 'application/json' };
  }

  async replicate(body: string): Promise<ReplicateReply> {
    const res = await this.pool.request({
      path: '/internal/replicate',
      method: 'POST',
      headers: this.replicateHeaders,
      body,
      signal: AbortSignal.timeout(this.requestTimeoutMs),
    });
    const text = await res.body.text();
    if (res.statusCode === 409 && text.includes('"stale_epoch"')) throw new StaleEpochError(`replicate refused: ${text.slice(0, 200)}`);
    if (res.statusCode !== 200) throw new Error(`replicate: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
    return replicateReplySchema.parse(JSON.parse(text));
  }

  /** Streams the peer's transfer line by line; a stalled stream fails after `requestTimeoutMs`. */
  async transfer(fromSeq: number, full: boolean): Promise<AsyncIterable<string>> {
    const res = await this.pool.request({
      path: `/internal/transfer?fromSeq=${fromSeq}${full ? '&full=1' : ''}`,
      method: 'GET',
      headers: this.headers,
      headersTimeout: this.requestTimeoutMs,
      bodyTimeout: this.requestTimeoutMs,
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      const message = `transfer: HTTP ${res.statusCode} ${text.slice(0, 200)}`;
      throw res.statusCode === 503 ? new PeerNotReadyError(message) : new Error(message);
    }
    return linesOf(res.body);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
