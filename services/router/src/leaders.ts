import { isKvError, KvError, type EntryResult, type ErrorCode, type RpcCall, type WriteOp } from '@shardkv/common';
import { setMaxListeners } from 'node:events';
import type { ShardRecord } from './control/records';
import type { ShardTable } from './control/shard-table';
import type { Nodes } from './shards';

/** The header that carries the epoch a request was routed with; the node refuses an older one. */
export const EPOCH_HEADER = 'x-shardkv-epoch';

/** Refusals that prove nothing was done: the request may go once more, after re-reading the map. */
const REFUSED: ReadonlySet<ErrorCode> = new Set(['not_leader', 'not_ready', 'stale_epoch']);

/**
 * The router's calls to shard leaders, in one place: routing by the shard table, the epoch each
 * request carries (the node is the final fence: it refuses a request routed by an older map),
 * one retry after a definite refusal, and the end of requests waiting on a leader that the
 * control plane replaced.
 */
export class Leaders {
  private readonly deposed: (url: string) => AbortSignal;

  constructor(
    private readonly table: ShardTable,
    private readonly nodes: Nodes,
  ) {
    this.deposed = leaderWatch(table);
  }

  async writes(shardId: string, ops: WriteOp[], timeoutMs?: number): Promise<EntryResult[]> {
    return this.call(shardId, { method: 'POST', path: '/internal/write', body: JSON.stringify({ ops }), idempotent: false, timeoutMs }, ops.length);
  }

  async reads(shardId: string, keys: string[], timeoutMs?: number): Promise<EntryResult[]> {
    return this.call(shardId, { method: 'POST', path: '/internal/read', body: JSON.stringify({ keys }), idempotent: true, timeoutMs }, keys.length);
  }

  /**
   * To the shard's leader. A node that refused (not the leader any more, not serving yet, or at
   * a newer epoch than our map) did nothing, so the request may go once more, to the leader the
   * control plane names after a re-read; if that is still the same node at the same epoch, the
   * client gets a definite 503.
   */
  private async call(shardId: string, call: RpcCall, count: number): Promise<EntryResult[]> {
    const first = this.table.state(shardId);
    try {
      return await this.send(first, call, count);
    } catch (err) {
      if (!isKvError(err) || !REFUSED.has(err.code)) throw err;
      await this.table.refresh().catch(() => {});
      const now = this.table.state(shardId);
      if (now.leader !== first.leader || now.epoch !== first.epoch) return this.send(now, call, count);
      // The map could not be re-read (cut off from the control plane) or has not caught up yet:
      // a node at a newer epoch names the leader it knows, which the new epoch then checks.
      const hinted = this.hint(err, first);
      if (hinted !== undefined) return this.send(hinted, call, count);
      throw new KvError('shard_unavailable', `${first.leader} refused (${err.code}: ${err.message}) and the shard map has no newer leader yet; nothing was applied, retry`);
    }
  }

  /** The leader and epoch a `stale_epoch` refusal names, when they are newer than what we routed by. */
  private hint(err: KvError, routed: ShardRecord): ShardRecord | undefined {
    const { epoch, leader } = err.details;
    if (err.code !== 'stale_epoch' || typeof epoch !== 'number' || epoch <= routed.epoch || typeof leader !== 'string') return undefined;
    const url = leader === 'self' ? routed.leader : leader;
    return this.nodes.has(url) ? { ...routed, leader: url, epoch } : undefined;
  }

  private async send(s: ShardRecord, call: RpcCall, count: number): Promise<EntryResult[]> {
    const body = await this.nodes.get(s.leader).json<{ results?: EntryResult[] }>({ ...call, headers: { [EPOCH_HEADER]: String(s.epoch) }, signal: this.deposed(s.leader) });
    if (!Array.isArray(body.results) || body.results.length !== count) throw new KvError('internal', `${s.leader} answered a batch of ${count} with ${body.results?.length ?? 'no'} results`);
    return body.results;
  }
}

/**
 * A signal per node that fires when the control plane replaces it as leader, so that requests
 * waiting on a paused or dying leader end at once (504 leader_changed, indeterminate) instead of
 * at the upstream deadline, and their clients can retry on the new leader.
 */
function leaderWatch(table: ShardTable): (url: string) => AbortSignal {
  const controllers = new Map<string, AbortController>();
  table.onChange((before, after) => {
    if (before.leader === after.leader) return;
    controllers.get(before.leader)?.abort(new KvError('leader_changed', `the leader of ${after.id} changed while this request waited on ${before.leader}; it may or may not have been applied`));
    controllers.delete(before.leader);
  });
  return (url) => {
    let c = controllers.get(url);
    if (c === undefined) {
      controllers.set(url, (c = new AbortController()));
      setMaxListeners(0, c.signal); // every request in flight to the leader listens to it
    }
    return c.signal;
  };
}
