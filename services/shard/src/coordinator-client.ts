import { isKvError, nodeConfigSchema, RpcClient, type NodeConfig, type ShardEvent } from '@shardkv/common';
import type { CoordinatorClient } from './node';

/**
 * The node's line to the coordinator: `POST /internal/shard-event` to one of the routers. Any
 * router may be the coordinator; a node asks the one that configured it last, and on a
 * `not_coordinator` answer (which names the coordinator) or an unreachable router, the next.
 * Correctness never depends on this: a node that reaches no coordinator just keeps refusing
 * what it may not do alone.
 */
export class HttpCoordinator implements CoordinatorClient {
  private readonly clients: RpcClient[];
  private preferred: string | undefined;

  constructor(urls: readonly string[], token: string | undefined, timeoutMs: number, localAddress?: string) {
    this.clients = urls.map((url) => new RpcClient(url, { connections: 2, timeoutMs, token, localAddress }));
  }

  /** The coordinator that sent the node's latest configuration. */
  prefer(url: string | undefined): void {
    if (url !== undefined) this.preferred = url;
  }

  async report(event: ShardEvent): Promise<NodeConfig> {
    let lastError: unknown;
    for (const client of this.order()) {
      try {
        const cfg = nodeConfigSchema.parse(await client.json({ method: 'POST', path: '/internal/shard-event', body: JSON.stringify(event) }));
        this.preferred = client.url;
        return cfg;
      } catch (err) {
        // stale_epoch is the coordinator's answer, not a failure to reach it: the caller acts on it.
        if (isKvError(err, 'stale_epoch')) throw err;
        lastError = err;
        const hint = isKvError(err, 'not_coordinator') ? err.details['coordinator'] : undefined;
        if (typeof hint === 'string') this.preferred = hint;
      }
    }
    throw lastError instanceof Error ? lastError : new Error('no coordinator answered');
  }

  /** The preferred router first, then the others, each once. */
  private order(): RpcClient[] {
    const first = this.clients.find((c) => c.url === this.preferred);
    return first === undefined ? this.clients : [first, ...this.clients.filter((c) => c !== first)];
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
