import { isKvError, nodeConfigSchema, RpcClient, type NodeConfig, type ShardEvent } from '@shardkv/common';
import type { CoordinatorClient } from './node';

/**
 * The node's line to the coordinator: `POST /internal/shard-event` to one of the routers. Any
 * router may be the coordinator; a node asks the one that configured it last, and on a
 * `not_coordinator` answer (which names the coordinator) or an unreachable router, the next.
 * Correctness never depends on this: a node that reaches no coordinator just keeps refusing
 * what it may not do alone.
 */
/** Routers a node keeps a connection pool for, configured and learned. */
const COORDINATORS_MAX = 32;

export class HttpCoordinator implements CoordinatorClient {
  private readonly clients: RpcClient[];
  private preferred: string | undefined;
  private readonly make: (url: string) => RpcClient;

  constructor(urls: readonly string[], token: string | undefined, timeoutMs: number, localAddress?: string) {
    this.make = (url) => new RpcClient(url, { connections: 2, timeoutMs, token, localAddress });
    this.clients = urls.map(this.make);
  }

  /** The coordinator that sent the node's latest configuration. */
  prefer(url: string | undefined): void {
    if (url !== undefined) this.preferred = url;
  }

  async report(event: ShardEvent): Promise<NodeConfig> {
    const tried = new Set<string>();
    let lastError: unknown = new Error('no coordinator answered');
    for (;;) {
      const client = this.order().find((c) => !tried.has(c.url));
      if (client === undefined) throw lastError;
      tried.add(client.url);
      try {
        const cfg = nodeConfigSchema.parse(await client.json({ method: 'POST', path: '/internal/shard-event', body: JSON.stringify(event) }));
        this.preferred = client.url;
        return cfg;
      } catch (err) {
        // stale_epoch is the coordinator's answer, not a failure to reach it: the caller acts on it.
        if (isKvError(err, 'stale_epoch')) throw err;
        lastError = err;
        const hint = isKvError(err, 'not_coordinator') ? err.details['coordinator'] : undefined;
        if (typeof hint === 'string' && /^https?:\/\/[^/]+$/.test(hint)) this.preferred = hint;
      }
    }
  }

  /**
   * The preferred router first, then the others, each once. A coordinator named by a hint or a
   * configuration but missing from COORDINATOR_URLS is reached too (the list is bounded: hints
   * only ever name routers that coordinated).
   */
  private order(): RpcClient[] {
    let first = this.clients.find((c) => c.url === this.preferred);
    if (first === undefined && this.preferred !== undefined && this.clients.length < COORDINATORS_MAX) this.clients.push((first = this.make(this.preferred)));
    return first === undefined ? this.clients : [first, ...this.clients.filter((c) => c !== first)];
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
