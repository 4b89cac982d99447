import { authHeaders, KvError, nodeConfigSchema, type NodeConfig, type ShardEvent } from '@shardkv/common';
import { Pool } from 'undici';
import type { CoordinatorClient } from './node';

/** The node's line to the coordinator (the router): `POST /internal/shard-event`. */
export class HttpCoordinator implements CoordinatorClient {
  private readonly pool: Pool;
  private readonly headers: Record<string, string>;

  constructor(
    readonly url: string,
    token: string | undefined,
    private readonly timeoutMs: number,
  ) {
    this.pool = new Pool(url, { connections: 2, connectTimeout: timeoutMs });
    this.headers = { ...authHeaders(token), 'content-type': 'application/json' };
  }

  async report(event: ShardEvent): Promise<NodeConfig> {
    const res = await this.pool.request({
      path: '/internal/shard-event',
      method: 'POST',
      headers: this.headers,
      body: JSON.stringify(event),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await res.body.text();
    if (res.statusCode === 409 && text.includes('"stale_epoch"')) throw new KvError('stale_epoch', `coordinator: ${text.slice(0, 200)}`);
    if (res.statusCode !== 200) throw new Error(`coordinator: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
    return nodeConfigSchema.parse(JSON.parse(text));
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
