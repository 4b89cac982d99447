import { EPOCH_HEADER, isKvError, KvError, LOAD_CONTENT_TYPE, type ChunkAnswer, type EntryResult, type ErrorCode, type RpcCall, type WriteOp } from '@shardkv/common';
import { setMaxListeners } from 'node:events';
import type { ShardRecord } from './control/records';
import type { ShardTable } from './control/shard-table';
import { retries } from './metrics';
import type { Nodes } from './shards';

/** How long a refused request waits for the shard map to be re-read before it goes by the node's hint. */
const REFRESH_WAIT_MS = 250;

/** Refusals that prove nothing was done: the request may go once more, after re-reading the map. */
const REFUSED: ReadonlySet<ErrorCode> = new Set(['not_leader', 'not_ready', 'stale_epoch']);
// Their retry series start at 0, so that rate() sees the first (see metrics.ts).
for (const code of REFUSED) retries.inc({ cause: 'leader_refused', code }, 0);

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
    return this.call(shardId, { method: 'POST', path: '/internal/write', body: JSON.stringify({ ops }), idempotent: false, timeoutMs }, results(ops.length));
  }

  async reads(shardId: string, keys: string[], timeoutMs?: number): Promise<EntryResult[]> {
    return this.call(shardId, { method: 'POST', path: '/internal/read', body: JSON.stringify({ keys }), idempotent: true, timeoutMs }, results(keys.length));
  }

  /** One chunk of a bulk load: `entries` lines of the load format, all for this shard (see load.ts). */
  async load(shardId: string, chunk: Buffer, entries: number): Promise<ChunkAnswer> {
    const call: RpcCall = { method: 'POST', path: '/internal/load', body: chunk, headers: { 'content-type': LOAD_CONTENT_TYPE }, idempotent: false };
    return this.call(shardId, call, (body: ChunkAnswer, from) => {
      // Every entry is loaded or in a failure run: an answer that does not add up proves nothing, so it is no answer.
      const accounted = Array.isArray(body?.failed) ? body.loaded + body.failed.reduce((n, f) => n + f.count, 0) : -1;
      if (body?.entries !== entries || accounted !== entries) throw new KvError('internal', `${from} answered a chunk of ${entries} entries with ${body?.entries ?? 'no'} entries, ${accounted} accounted for`);
      return body;
    });
  }

  /**
   * To the shard's leader. A node that refused (not the leader any more, not serving yet, or at
   * a newer epoch than our map) did nothing, so the request may go once more, to the leader the
   * control plane names after a re-read; if that is still the same node at the same epoch, the
   * client gets a definite 503.
   */
  private async call<A, T>(shardId: string, call: RpcCall, decode: (body: A, from: string) => T): Promise<T> {
    const startedAt = Date.now();
    const first = this.table.state(shardId);
    try {
      return await this.send(first, call, decode);
    } catch (err) {
      if (!isKvError(err) || !REFUSED.has(err.code)) throw err;
      retries.inc({ cause: 'leader_refused', code: err.code });
      await refreshBriefly(this.table);
      const now = this.table.state(shardId);
      // The map could not be re-read (cut off from the control plane) or has not caught up yet:
      // a node at a newer epoch names the leader it knows, which the new epoch then checks.
      const next = now.leader !== first.leader || now.epoch !== first.epoch ? now : this.hint(err, first);
      if (next === undefined) throw unavailable(first, err);
      // The second try gets what is left of the call's time, so the request's deadline holds.
      const retry = call.timeoutMs === undefined ? call : { ...call, timeoutMs: Math.max(1, call.timeoutMs - (Date.now() - startedAt)) };
      return this.send(next, retry, decode).catch((again: unknown) => {
        // Refused again (the new leader not configured yet, mid-failover): still nothing applied.
        throw isKvError(again) && REFUSED.has(again.code) ? unavailable(next, again) : again;
      });
    }
  }

  /** The leader and epoch a `stale_epoch` refusal names, when they are newer than what we routed by. */
  private hint(err: KvError, routed: ShardRecord): ShardRecord | undefined {
    const { epoch, leader } = err.details;
    if (err.code !== 'stale_epoch' || typeof epoch !== 'number' || epoch <= routed.epoch || typeof leader !== 'string') return undefined;
    const url = leader === 'self' ? routed.leader : leader;
    return this.nodes.has(url) ? { ...routed, leader: url, epoch } : undefined;
  }

  private async send<A, T>(s: ShardRecord, call: RpcCall, decode: (body: A, from: string) => T): Promise<T> {
    const body = await this.nodes.get(s.leader).json<A>({ ...call, headers: { ...call.headers, [EPOCH_HEADER]: String(s.epoch) }, signal: this.deposed(s.leader) });
    return decode(body, s.leader);
  }
}

/**
 * Re-reads the shard map, waiting at most REFRESH_WAIT_MS: with the control plane unreachable a
 * read takes its whole deadline, and the request can go by the node's hint meanwhile. The read
 * goes on, and updates the table for later requests when it ends.
 */
export async function refreshBriefly(table: ShardTable): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, REFRESH_WAIT_MS)));
  await Promise.race([table.refresh().catch(() => {}), waited]);
  clearTimeout(timer);
}

/** A batch's answer: one result per item. */
function results(count: number) {
  return (body: { results?: EntryResult[] }, from: string): EntryResult[] => {
    if (!Array.isArray(body.results) || body.results.length !== count) throw new KvError('internal', `${from} answered a batch of ${count} with ${body.results?.length ?? 'no'} results`);
    return body.results;
  };
}

function unavailable(s: ShardRecord, err: KvError): KvError {
  return new KvError('shard_unavailable', `${s.leader} refused (${err.code}: ${err.message}) and the shard map has no newer leader yet; nothing was applied, retry`);
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
