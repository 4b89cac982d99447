import { isKvError, linesOf, RpcClient } from '@shardkv/common';
import { PeerNotReadyError, replicateReplySchema, StaleEpochError, type PeerTransport, type ReplicateReply } from './messages';

/**
 * The HTTP side of PeerTransport: one keep-alive undici Pool per peer. Every request has a
 * deadline, so a paused peer costs at most `requestTimeoutMs` and never hangs the loop.
 */
export class HttpPeer implements PeerTransport {
  /** Replication messages: one connection, pipelined, so they reach the follower in the order sent. */
  private readonly replication: RpcClient;
  /** State transfers, beside it. */
  private readonly rpc: RpcClient;

  constructor(
    readonly url: string,
    token: string | undefined,
    private readonly requestTimeoutMs: number,
    localAddress?: string,
    inFlightMessagesMax = 1,
  ) {
    this.replication = new RpcClient(url, { connections: 1, pipelining: inFlightMessagesMax, timeoutMs: requestTimeoutMs, token, localAddress });
    this.rpc = new RpcClient(url, { connections: 2, timeoutMs: requestTimeoutMs, token, localAddress });
  }

  async replicate(body: string): Promise<ReplicateReply> {
    try {
      return replicateReplySchema.parse(await this.replication.json({ method: 'POST', path: '/internal/replicate', body }));
    } catch (err) {
      if (isKvError(err, 'stale_epoch')) throw new StaleEpochError(`replicate refused: ${err.message}`);
      throw err;
    }
  }

  /** Streams the peer's transfer line by line; a stalled stream fails after `requestTimeoutMs`. */
  async transfer(fromSeq: number, full: boolean): Promise<AsyncIterable<string>> {
    const res = await this.rpc.raw.request({
      path: `/internal/transfer?fromSeq=${fromSeq}${full ? '&full=1' : ''}`,
      method: 'GET',
      headers: this.rpc.headers,
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
    await Promise.all([this.replication.close(), this.rpc.close()]);
  }
}
