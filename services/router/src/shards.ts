import { COORDINATOR_HEADER, RpcClient, type KvError, type RpcClientOptions } from '@shardkv/common';
import type { ShardMap } from './control/records';
import type { ConfigAnswer, NodeApi, NodeReport } from './coordinator';

/**
 * A keep-alive RPC client per node URL; which node leads a shard is the control plane's business.
 * Nodes join as the shard map names them (a shard added online) and are never dropped while the
 * router runs: a request may still be on its way to a removed shard's node.
 */
export class Nodes {
  private readonly byUrl = new Map<string, RpcClient>();

  constructor(private readonly opts: RpcClientOptions) {}

  /** A client for every node the map names. */
  sync(map: ShardMap): void {
    for (const s of map.shards) for (const url of s.nodes) this.ensure(url);
  }

  ensure(url: string): RpcClient {
    let n = this.byUrl.get(url);
    if (n === undefined) this.byUrl.set(url, (n = new RpcClient(url, this.opts)));
    return n;
  }

  has(url: string): boolean {
    return this.byUrl.has(url);
  }

  get(url: string): RpcClient {
    const n = this.byUrl.get(url);
    if (n === undefined) throw new Error(`unknown node ${url}`);
    return n;
  }

  async close(): Promise<void> {
    await Promise.all([...this.byUrl.values()].map((n) => n.close()));
  }
}

/** Fetches one node's /status for the router's /status; a failure is reported, not thrown. */
export async function nodeStatus(node: RpcClient, timeoutMs: number): Promise<Record<string, unknown>> {
  try {
    return { url: node.url, reachable: true, ...(await node.json<object>({ method: 'GET', path: '/status', idempotent: true, timeoutMs })) };
  } catch (err) {
    return { url: node.url, reachable: false, error: (err as KvError).message };
  }
}

/** The coordinator's view of a node: its /status, and `POST /internal/config` within `pushTimeoutMs`. */
export function nodeApi(nodes: Nodes, pushTimeoutMs: number): NodeApi {
  return {
    status: (url, timeoutMs, generation) => nodes.ensure(url).json<NodeReport>({ method: 'GET', path: '/status', idempotent: true, timeoutMs, headers: { [COORDINATOR_HEADER]: String(generation) } }),
    configure: (url, cfg) => nodes.ensure(url).json<ConfigAnswer>({ method: 'POST', path: '/internal/config', body: JSON.stringify(cfg), timeoutMs: pushTimeoutMs }),
  };
}
