import { authHeaders, upstreamError, type KvError } from '@shardkv/common';
import { Pool } from 'undici';
import type { ShardAddress } from './config';
import type { NodeApi, NodeReport } from './coordinator';

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
  headers?: Record<string, string>;
  /** Aborted when the node stops being the leader: the request is then answered at once, as indeterminate. */
  signal?: AbortSignal;
}

/** One node (leader or follower) as the router sees it: a keep-alive pool with deadlines. */
export class NodeClient {
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
      if (opts.signal?.aborted === true) throw opts.signal.reason;
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
      headers: opts.body === undefined ? opts.headers : { 'content-type': 'application/json', ...opts.headers },
      signal: opts.signal === undefined ? AbortSignal.timeout(timeoutMs) : AbortSignal.any([AbortSignal.timeout(timeoutMs), opts.signal]),
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, body };
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** A keep-alive client per node URL; which node leads a shard is the coordinator's business. */
export class Nodes {
  private readonly byUrl = new Map<string, NodeClient>();

  constructor(addresses: readonly ShardAddress[], connections: number, timeoutMs: number) {
    for (const a of addresses) {
      for (const url of [a.leader, a.follower]) this.byUrl.set(url, new NodeClient(url, connections, timeoutMs));
    }
  }

  get(url: string): NodeClient {
    const n = this.byUrl.get(url);
    if (n === undefined) throw new Error(`unknown node ${url}`);
    return n;
  }

  async close(): Promise<void> {
    await Promise.all([...this.byUrl.values()].map((n) => n.close()));
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

/** The coordinator's view of a node: its /status, and `POST /internal/config` with the cluster token. */
export function nodeApi(nodes: Nodes, token: string | undefined): NodeApi {
  const headers = authHeaders(token);
  return {
    async status(url, timeoutMs) {
      const res = await nodes.get(url).request({ method: 'GET', path: '/status', idempotent: true }, timeoutMs);
      if (res.status !== 200) throw new Error(`status: HTTP ${res.status}`);
      return JSON.parse(res.body.toString('utf8')) as NodeReport;
    },
    async configure(url, cfg) {
      const res = await nodes.get(url).request({ method: 'POST', path: '/internal/config', body: JSON.stringify(cfg), idempotent: false, headers });
      if (res.status !== 200) throw new Error(`config: HTTP ${res.status} ${res.body.toString('utf8').slice(0, 200)}`);
    },
  };
}
