import { COORDINATOR_HEADER, RpcClient, type KvError, type RpcClientOptions } from '@shardkv/common';
import type { ShardAddress } from './control/records';
import type { NodeApi, NodeReport } from './coordinator';

/** A keep-alive RPC client per node URL; which node leads a shard is the control plane's business. */
export class Nodes {
  private readonly byUrl = new Map<string, RpcClient>();

  constructor(addresses: readonly ShardAddress[], opts: RpcClientOptions) {
    for (const a of addresses) {
      for (const url of [a.leader, a.follower]) this.byUrl.set(url, new RpcClient(url, opts));
    }
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
    status: (url, timeoutMs, generation) => nodes.get(url).json<NodeReport>({ method: 'GET', path: '/status', idempotent: true, timeoutMs, headers: { [COORDINATOR_HEADER]: String(generation) } }),
    async configure(url, cfg) {
      await nodes.get(url).json({ method: 'POST', path: '/internal/config', body: JSON.stringify(cfg), timeoutMs: pushTimeoutMs });
    },
  };
}
