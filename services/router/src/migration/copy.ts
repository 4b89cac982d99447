import { BATCH_ENTRIES_MAX, EPOCH_HEADER, KvError, type RpcClient, type ImportOp, type SlotRanges } from '@shardkv/common';

/** One import request carries at most this many bytes of keys and values (the shard's body limit is 2 MiB). */
export const IMPORT_BATCH_BYTES_MAX = 512 * 1024;
/** Import batches of a snapshot in flight at once (the target's replication pipelines them). */
export const SNAPSHOT_IMPORTS_IN_FLIGHT_MAX = 2;
/** Deadline of one export's start and of each stall of its stream, and of one import or purge call. */
export const COPY_CALL_TIMEOUT_MS = 10_000;

/** A shard's current leader as the coordinator knows it, and the epoch to route by. */
export interface Endpoint {
  node: RpcClient;
  epoch: number;
}

/** A target of one copy: its leader, and the copy's id (imports of an abandoned copy are refused). */
export interface Target extends Endpoint {
  copy: string;
}

export interface CopyResult {
  /** The source's seq the target now holds the slots as of. */
  seq: number;
  items: number;
  /** The source's log window no longer reached back: copy again from a full snapshot. */
  restart: boolean;
}

/**
 * Streams the moving slots from the source leader's export into the target leader's import,
 * in order, in bounded batches (see the shard's migration/routes.ts). `fromSeq` 0 copies every
 * pair (a snapshot as of the export's seq); otherwise it replays the logged entries after
 * `fromSeq - 1`. Puts and deletes are whole values, so replaying a batch whose answer was lost
 * converges to the same state: an indeterminate import is sent again, never skipped.
 */
export async function copySlots(source: Endpoint, target: Target, slots: SlotRanges, fromSeq: number, signal: AbortSignal, onItems: (n: number) => void): Promise<CopyResult> {
  const lines = await source.node.lines({ method: 'POST', path: '/internal/export', body: JSON.stringify({ slots, fromSeq }), headers: { [EPOCH_HEADER]: String(source.epoch) }, timeoutMs: COPY_CALL_TIMEOUT_MS, signal });
  const it = lines[Symbol.asyncIterator]();
  try {
    const first = await it.next();
    if (first.done === true) throw new KvError('upstream_connection_lost', 'export stream ended before its header');
    const header = JSON.parse(first.value) as { kind: 'full' | 'tail' | 'restart'; seq: number };
    // A snapshot's keys are distinct, so its batches may be in flight together; a tail's entries
    // may repeat a key, so they go one batch after another, in order.
    const imports = new ImportWindow(target, header.kind === 'full' ? SNAPSHOT_IMPORTS_IN_FLIGHT_MAX : 1, signal, onItems);
    let batch: ImportOp[] = [];
    let bytes = 0;
    let items = 0;
    for (let next = await it.next(); next.done !== true; next = await it.next()) {
      const value = JSON.parse(next.value) as unknown;
      if (isTrailer(value)) {
        if (value.seq !== header.seq || value.items !== items) throw new KvError('internal', `export trailer says ${value.items} items at ${value.seq}, got ${items} at ${header.seq}`);
        if (batch.length > 0) await imports.send(batch);
        await imports.drain();
        return { seq: header.seq, items, restart: header.kind === 'restart' };
      }
      const op = toOp(value);
      batch.push(op);
      items += 1;
      bytes += op.key.length + (op.op === 'put' ? op.value.length : 0);
      if (batch.length >= BATCH_ENTRIES_MAX || bytes >= IMPORT_BATCH_BYTES_MAX) {
        await imports.send(batch);
        batch = [];
        bytes = 0;
      }
    }
    throw new KvError('upstream_connection_lost', 'export stream ended without its trailer');
  } finally {
    await it.return?.();
  }
}

/** Import batches in flight, at most `max`; the first failure is thrown by the next `send` or by `drain`. */
class ImportWindow {
  private readonly pending = new Set<Promise<void>>();
  private failure: unknown;

  constructor(
    private readonly target: Target,
    private readonly max: number,
    private readonly signal: AbortSignal,
    private readonly onItems: (n: number) => void,
  ) {}

  async send(ops: ImportOp[]): Promise<void> {
    while (this.pending.size >= this.max) await Promise.race(this.pending);
    this.check();
    const p: Promise<void> = importBatch(this.target, ops, this.signal).then(
      () => this.onItems(ops.length),
      (err: unknown) => {
        this.failure ??= err;
      },
    );
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  async drain(): Promise<void> {
    await Promise.all(this.pending);
    this.check();
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}

/**
 * Deletes the keys of `slots` on a leader that does not serve them (a partial earlier copy, or
 * what moved away). A target's purge names the copy it starts (`copy`).
 */
export async function purgeSlots(leader: Endpoint, slots: SlotRanges, signal: AbortSignal, copy?: string): Promise<number> {
  let deleted = 0;
  for (;;) {
    signal.throwIfAborted();
    const r = await leader.node.json<{ deleted: number; more: boolean }>({ method: 'POST', path: '/internal/purge', body: JSON.stringify({ slots, ...(copy === undefined ? {} : { copy }) }), headers: { [EPOCH_HEADER]: String(leader.epoch) }, timeoutMs: COPY_CALL_TIMEOUT_MS * 3, signal });
    deleted += r.deleted;
    if (!r.more) return deleted;
  }
}

/** Definite refusals a short wait cures (the target's queue is full, its follower is briefly away). */
const TRANSIENT: ReadonlySet<string> = new Set(['replication_queue_full', 'no_replica', 'storage_unavailable']);
const IMPORT_ATTEMPTS_MAX = 10;
const IMPORT_BACKOFF_MS_MAX = 1000;

async function importBatch(target: Target, ops: ImportOp[], signal: AbortSignal): Promise<void> {
  const body = JSON.stringify({ copy: target.copy, ops });
  for (let attempt = 1; ; attempt += 1) {
    signal.throwIfAborted();
    try {
      await target.node.json({ method: 'POST', path: '/internal/import', body, headers: { [EPOCH_HEADER]: String(target.epoch) }, timeoutMs: COPY_CALL_TIMEOUT_MS, signal });
      return;
    } catch (err) {
      // Other definite refusals (not the leader any more, stale epoch, an abandoned copy) end this
      // copy: the driver starts it again against the shard's leader. A lost answer is sent again,
      // as said above, and so is a transient refusal, after a pause.
      const again = err instanceof KvError && (err.outcome === 'indeterminate' || TRANSIENT.has(err.code));
      if (!again || attempt >= IMPORT_ATTEMPTS_MAX) throw err;
      if (err.outcome === 'definite') await new Promise((r) => setTimeout(r, Math.min(IMPORT_BACKOFF_MS_MAX, 50 * 2 ** attempt)));
    }
  }
}

function isTrailer(v: unknown): v is { end: true; seq: number; items: number } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && (v as { end?: unknown }).end === true;
}

/** An export line: a `[key, value(, expiresAtMs)]` pair of a snapshot, or a logged entry of a tail (`exp`: its expiry). */
function toOp(v: unknown): ImportOp {
  const exp = (x: unknown) => (typeof x === 'number' ? { exp: x } : {});
  if (Array.isArray(v) && typeof v[0] === 'string' && typeof v[1] === 'string') return { op: 'put', key: v[0], value: v[1], ...exp(v[2]) };
  const e = v as { op?: unknown; key?: unknown; value?: unknown; exp?: unknown };
  if (e.op === 'put' && typeof e.key === 'string' && typeof e.value === 'string') return { op: 'put', key: e.key, value: e.value, ...exp(e.exp) };
  if (e.op === 'del' && typeof e.key === 'string') return { op: 'del', key: e.key };
  throw new KvError('internal', `export line is neither a pair nor an entry: ${JSON.stringify(v).slice(0, 120)}`);
}
