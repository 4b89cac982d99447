import { delOp, incrOp, keyQuery, KvError, mputOps, parseKey, parseMgetBody, putOp, readAnswer, writeAnswer, type EntryResult, type HeaderReader, type WriteOp } from '@shardkv/common';
import { Batcher, type BatcherLimits } from './batcher';
import type { ShardTable } from './control/shard-table';
import type { Leaders } from './leaders';
import { batchEntries, watchQueues } from './metrics';
import { Routing } from './routing';
import type { Nodes } from './shards';

export interface KvOperationsDeps {
  nodes: Nodes;
  table: ShardTable;
  leaders: Leaders;
  /** How long a request for a key in its cutover is retried by the router (see routing.ts). */
  cutoverWaitMs: number;
  /** How single-key requests are coalesced per shard; `timeoutMs` is every request's deadline in the router. */
  batching: BatcherLimits;
}

export type Consistency = 'linearizable' | 'stale';

/** Options every operation takes: the caller's deadline (Date.now() ms), when it has one earlier than the router's. */
export interface CallOptions {
  deadlineAtMs?: number;
}

export interface BatchAnswer {
  results: EntryResult[];
  ok: number;
  failed: number;
}

/**
 * The public key operations, whatever the transport: the Koa routes (app.ts) and the gRPC
 * handlers (grpc/service.ts) call these and only translate their wire format. Each one validates
 * its input with the API's parse* helpers (so bad input is refused here, the same way on both, and
 * never reaches a shard), routes by the slot map (routing.ts), and sends single-key requests
 * through the shard's batcher and batches straight to the leaders (leaders.ts). A failure is a
 * KvError from the one table; a single-key request's failed entry is thrown as one.
 */
export class KvOperations {
  private readonly routing: Routing;
  private readonly batchers: ReturnType<typeof shardBatchers>;

  constructor(private readonly deps: KvOperationsDeps) {
    this.routing = new Routing(deps.table, deps.cutoverWaitMs, deps.batching.timeoutMs);
    this.batchers = shardBatchers(deps);
  }

  /**
   * One single-key write, already parsed (putOp, deleteOp, incrOp in @shardkv/common: conditions,
   * ttl and Idempotency-Key included), coalesced with the shard's other writes in flight. Its
   * answer is `{key, seq, version}`, `{key, deleted, seq}` or `{key, value, seq, version}`.
   */
  async write(op: WriteOp, opts: CallOptions = {}): Promise<Record<string, unknown>> {
    return writeAnswer(op, await this.routing.one(op.key, (shardId, deadline) => this.batchers.writes(shardId).submit(op, deadline), opts.deadlineAtMs));
  }

  /** `input`: `{"key","value"[,"ttlMs","ifVersion","ifAbsent"]}`; `header` reads If-Match, If-None-Match and Idempotency-Key. */
  async put(input: unknown, opts: CallOptions & { header?: HeaderReader } = {}): Promise<{ key: string; seq: number; version: number }> {
    return (await this.write(putOp(input, opts.header ?? NO_HEADERS), opts)) as { key: string; seq: number; version: number };
  }

  /** `input`: `{"key"[,"by"]}`: the new value, a decimal string. */
  async incr(input: unknown, opts: CallOptions & { header?: HeaderReader } = {}): Promise<{ key: string; value: string; seq: number; version: number }> {
    return (await this.write(incrOp(input, opts.header ?? NO_HEADERS), opts)) as { key: string; value: string; seq: number; version: number };
  }

  /** The key's value with its version (and ttl); `key_not_found` when it has none. */
  async get(rawKey: unknown, opts: CallOptions & { consistency?: Consistency } = {}): Promise<{ key: string; value: string; version: number; ttlMs?: number }> {
    const key = parseKey(rawKey);
    if (opts.consistency === 'stale') {
      const stale = await this.staleGet(key, opts.deadlineAtMs);
      if (stale !== undefined) return stale;
    }
    return readAnswer(await this.routing.one(key, (shardId, deadline) => this.batchers.reads(shardId).submit(key, deadline), opts.deadlineAtMs));
  }

  /** `header` reads Idempotency-Key (HTTP builds its delete with deleteOp, from the query and If-Match). */
  async delete(rawKey: unknown, opts: CallOptions & { ifVersion?: number; header?: HeaderReader } = {}): Promise<{ key: string; deleted: boolean; seq: number }> {
    const r = await this.write(delOp(parseKey(rawKey), opts.ifVersion, opts.header ?? NO_HEADERS), opts);
    return { key: r['key'] as string, deleted: r['deleted'] === true, seq: r['seq'] as number };
  }

  /**
   * `input`: `{"entries":[{"key","value"[,"ttlMs","ifVersion","ifAbsent"]},...]}`; `header` reads
   * Idempotency-Key. Split by shard and sent to the shards' leaders in parallel; each entry gets
   * its own result, in the order given. A shard that fails fails only its own entries.
   */
  async mput(input: unknown, opts: CallOptions & { header?: HeaderReader } = {}): Promise<BatchAnswer> {
    const ops = mputOps(input, opts.header ?? NO_HEADERS);
    const { leaders } = this.deps;
    return this.routing.many(ops, (op) => op.key, (shardId, group, ms) => leaders.writes(shardId, group, ms), opts.deadlineAtMs);
  }

  /** `input`: `{"keys":[...]}`; a missing key is a failed entry (key_not_found), not an error. */
  async mget(input: unknown, opts: CallOptions = {}): Promise<BatchAnswer> {
    const keys = parseMgetBody(input);
    const { leaders } = this.deps;
    return this.routing.many(keys, (k) => k, (shardId, group, ms) => leaders.reads(shardId, group, ms), opts.deadlineAtMs);
  }

  /**
   * A read from the follower, which may be behind (or ahead, by writes whose answer was lost):
   * any answer but a value or a 404 is undefined, and the read goes to the leader.
   */
  private async staleGet(key: string, deadlineAtMs: number | undefined): Promise<{ key: string; value: string; version: number; ttlMs?: number } | undefined> {
    const { nodes, table, batching } = this.deps;
    const follower = table.state(this.routing.shardFor(key)).follower;
    const timeoutMs = Math.max(1, Math.min(batching.timeoutMs, (deadlineAtMs ?? Infinity) - Date.now()));
    const res = await nodes.get(follower).request({ method: 'GET', path: `/get?${keyQuery(key)}`, idempotent: true, timeoutMs }).catch(() => undefined);
    if (res?.status === 404) throw new KvError('key_not_found', 'key not found', { key });
    if (res?.status !== 200) return undefined;
    const body = JSON.parse(res.body.toString('utf8')) as { value?: unknown; version?: unknown; ttlMs?: unknown };
    if (typeof body.value !== 'string') return undefined;
    return { key, value: body.value, version: typeof body.version === 'number' ? body.version : 0, ...(typeof body.ttlMs === 'number' ? { ttlMs: body.ttlMs } : {}) };
  }
}

const NO_HEADERS: HeaderReader = () => '';

/** One write batcher and one read batcher per shard, created on first use; their sizes and queues are measured. */
function shardBatchers({ batching, leaders }: KvOperationsDeps) {
  const writes = new Map<string, Batcher<WriteOp, EntryResult>>();
  const reads = new Map<string, Batcher<string, EntryResult>>();
  const opBytes = (op: WriteOp) => op.key.length + (op.op === 'put' ? op.value.length : 0) + 32;
  watchQueues(function* () {
    for (const [kind, batchers] of [['write', writes], ['read', reads]] as const) {
      for (const [shard, b] of batchers) yield { shard, kind, depth: b.queued, inFlight: b.batchesInFlight };
    }
  });
  return {
    writes(shardId: string): Batcher<WriteOp, EntryResult> {
      let b = writes.get(shardId);
      if (b === undefined) {
        const send = (ops: WriteOp[], ms: number) => {
          batchEntries.observe({ shard: shardId, kind: 'write' }, ops.length);
          return leaders.writes(shardId, ops, ms);
        };
        writes.set(shardId, (b = new Batcher(send, batching, opBytes)));
      }
      return b;
    },
    reads(shardId: string): Batcher<string, EntryResult> {
      let b = reads.get(shardId);
      if (b === undefined) {
        const send = (keys: string[], ms: number) => {
          batchEntries.observe({ shard: shardId, kind: 'read' }, keys.length);
          return leaders.reads(shardId, keys, ms);
        };
        reads.set(shardId, (b = new Batcher(send, batching, (k) => k.length)));
      }
      return b;
    },
  };
}
