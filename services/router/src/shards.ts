import { upstreamError, type KvError } from '@shardkv/common';
import { Pool } from 'undici';
import type { ShardAddress } from './config';

export interface UpstreamResponse {
  status: number;
  body: Buffer;
}

export interface ForwardOptions {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  body?: string;
  /** Only idempotent requests are retried, and only when the connection broke. */
  idempotent: boolean;
}

/** One node (leader or follower) as the router sees it: a keep-alive pool with deadlines. */
class NodeClient {
  private readonly pool: Pool;

  constructor(
    readonly url: string,
    connections: number,
    private readonly timeoutMs: number,
  ) {
    this.pool = new Pool(url, { connections, connectTimeout: Math.min(timeoutMs, 2000) });
  }

  async request(opts: ForwardOptions, timeoutMs = this.timeoutMs): Promise<UpstreamResponse> {
    const deadline = Date.now() + timeoutMs;
    try {
      return await this.once(opts, timeoutMs);
    } catch (err) {
      const kv = upstreamError(err, this.url, timeoutMs);
      // A keep-alive socket the node closed between requests surfaces as a lost connection; a
      // read may safely go again, within what is left of the same deadline; a write may not (it
      // could have been applied).
      const leftMs = deadline - Date.now();
      if (!opts.idempotent || kv.code !== 'upstream_connection_lost' || leftMs <= 0) throw kv;
      try {
        return await this.once(opts, leftMs);
      } catch (err2) {
        throw upstreamError(err2, this.url, timeoutMs);
      }
    }
  }

  private async once(opts: ForwardOptions, timeoutMs: number): Promise<UpstreamResponse> {
    const res = await this.pool.request({
      method: opts.method,
      path: opts.path,
      body: opts.body,
      headers: opts.body === undefined ? undefined : { 'content-type': 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, body };
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

export interface Shard {
  id: string;
  leader: NodeClient;
  follower: NodeClient;
}

/** The shard table: id -> clients for its leader and follower. */
export class Shards {
  private readonly byId = new Map<string, Shard>();

  constructor(addresses: readonly ShardAddress[], connections: number, timeoutMs: number) {
    for (const a of addresses) {
      this.byId.set(a.id, {
        id: a.id,
        leader: new NodeClient(a.leader, connections, timeoutMs),
        follower: new NodeClient(a.follower, connections, timeoutMs),
      });
    }
  }

  get ids(): string[] {
    return [...this.byId.keys()];
  }

  get all(): Shard[] {
    return [...this.byId.values()];
  }

  get(id: string): Shard {
    const s = this.byId.get(id);
    if (s === undefined) throw new Error(`unknown shard ${id}`);
    return s;
  }

  async close(): Promise<void> {
    await Promise.all(this.all.flatMap((s) => [s.leader.close(), s.follower.close()]));
  }
}

/** Fetches one node's /status for the router's /status; a failure is reported, not thrown. */
export async function nodeStatus(node: NodeClient, timeoutMs: number): Promise<Record<string, unknown>> {
  try {
    const res = await node.request({ method: 'GET', path: '/status', idempotent: true }, timeoutMs);
    return { url: node.url, reachable: true, ...(JSON.parse(res.body.toString('utf8')) as object) };
  } catch (err) {
    return { url: node.url, reachable: false, error: (err as KvError).message };
  }
}
