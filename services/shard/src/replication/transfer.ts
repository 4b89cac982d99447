import { z } from 'zod';
import type { KvStore, StoreRestore } from '../store';
import type { LogRecord } from './log';
import { digestSchema, isEntry, type PeerTransport } from './messages';

/**
 * Catch-up between the two nodes of a shard, as newline-delimited JSON streamed with bounded
 * memory on both sides. The receiver asks for everything after its own `seq`; the sender answers
 * with the cheapest stream that gets it there:
 *   {"shard":I,"kind":"tail","seq":S}       the entries after the receiver's seq, from the sender's
 *   {"seq":..,"op":..,...}                   log window, one per line
 * or, when its window no longer reaches back that far:
 *   {"shard":I,"kind":"full","seq":S,"keys":N}   the whole state as of S, one pair per line
 *   ["key","value"]
 * and always a trailer: {"end":true,"seq":S,"digest":D}. A truncated stream has no trailer and is
 * rejected; the receiver checks the digest before it declares itself caught up.
 */
const headerSchema = z.object({
  shard: z.string(),
  kind: z.enum(['tail', 'full']),
  seq: z.number().int().nonnegative(),
  keys: z.number().int().nonnegative().optional(),
});
const pairSchema = z.tuple([z.string(), z.string()]);
const trailerSchema = z.object({ end: z.literal(true), seq: z.number().int().nonnegative(), digest: digestSchema });

/** The sender yields about this much at a time (HTTP backpressure does the rest). */
export const TRANSFER_CHUNK_BYTES = 64 * 1024;
/** The receiver writes in transactions of at most this many entries or pairs, or this many bytes. */
export const TRANSFER_APPLY_ITEMS_MAX = 2000;
export const TRANSFER_APPLY_BYTES_MAX = 4 * 1024 * 1024;

/** After a tail the receiver's state differs from the sender's: their histories differ below the tail. */
export class DivergedError extends Error {
  override name = 'DivergedError';
}

/** The sender: what a peer at `fromSeq - 1` lacks (or, with `full`, its whole state), from one consistent view. */
export async function* transferLines(store: KvStore, shard: string, fromSeq: number, full = false): AsyncGenerator<string> {
  const view = store.view();
  try {
    const kind = !full && (fromSeq > view.seq || fromSeq >= view.logStartSeq) ? 'tail' : 'full';
    const header = kind === 'tail' ? { shard, kind, seq: view.seq } : { shard, kind, seq: view.seq, keys: view.size };
    let chunk = `${JSON.stringify(header)}\n`;
    const lines = kind === 'tail' ? view.entries(fromSeq) : jsonLines(view.pairs());
    for (const line of lines) {
      chunk += `${line}\n`;
      if (chunk.length >= TRANSFER_CHUNK_BYTES) {
        yield chunk;
        chunk = '';
      }
    }
    yield `${chunk}${JSON.stringify({ end: true, seq: view.seq, digest: view.digest })}\n`;
  } finally {
    view.close();
  }
}

function* jsonLines(pairs: Iterable<[string, string]>): Generator<string> {
  for (const pair of pairs) yield JSON.stringify(pair);
}

export interface CatchUpResult {
  kind: 'none' | 'tail' | 'full';
  seq: number;
  /** Entries applied (tail) or pairs loaded (full). */
  items: number;
}

export interface TransferOptions {
  /** Ask for the peer's whole state and take it even if it is not ahead: the cure for a diverged history. */
  full?: boolean;
  /** Stops between writes (the node is shutting down); the store stays consistent. */
  signal?: AbortSignal;
}

/** Brings `store` up to its peer's state, or throws and leaves it at a consistent earlier one. */
export async function catchUpFrom(peer: PeerTransport, store: KvStore, shard: string, opts: TransferOptions = {}): Promise<CatchUpResult> {
  return installTransfer(await peer.transfer(store.seq + 1, opts.full ?? false), store, shard, opts);
}

/**
 * The receiver. A tail is applied as it arrives (each chunk is a valid prefix) and must end with
 * the sender's digest, else DivergedError; a full state swaps in only when complete.
 */
export async function installTransfer(lines: AsyncIterable<string>, store: KvStore, shard: string, opts: TransferOptions = {}): Promise<CatchUpResult> {
  const it = lines[Symbol.asyncIterator]();
  try {
    const first = await it.next();
    if (first.done === true) throw new Error('transfer stream is empty');
    const header = headerSchema.parse(JSON.parse(first.value));
    if (header.shard !== shard) throw new Error(`transfer is of shard ${header.shard}, this node is ${shard}: refusing it`);
    // A full state asked for on purpose replaces ours even if it is not ahead (a diverged history).
    const behind = header.seq > store.seq;
    if (header.kind === 'full' && (behind || opts.full === true)) return await receiveFull(it, await store.restore(), header.seq, store, opts.signal);
    if (!behind) return { kind: 'none', seq: store.seq, items: 0 };
    return await receiveTail(it, store, header.seq, opts.signal);
  } finally {
    // Stops the sender and releases the connection however we got here.
    await it.return?.();
  }
}

type Trailer = z.infer<typeof trailerSchema>;

/** Collects lines into bounded groups; hands the trailer back when it arrives. */
async function readGroups<T>(it: AsyncIterator<string>, parse: (line: string, value: unknown) => T, size: (item: T) => number, write: (items: T[]) => Promise<void>, signal?: AbortSignal): Promise<Trailer> {
  const onGroup = async (items: T[]) => {
    signal?.throwIfAborted();
    await write(items);
  };
  let group: T[] = [];
  let bytes = 0;
  for (let next = await it.next(); next.done !== true; next = await it.next()) {
    const line = next.value;
    if (line === '') continue;
    const value: unknown = JSON.parse(line);
    if (!Array.isArray(value) && typeof value === 'object' && value !== null && 'end' in value) {
      if (group.length > 0) await onGroup(group);
      return trailerSchema.parse(value);
    }
    const item = parse(line, value);
    group.push(item);
    bytes += size(item);
    if (group.length >= TRANSFER_APPLY_ITEMS_MAX || bytes >= TRANSFER_APPLY_BYTES_MAX) {
      await onGroup(group);
      group = [];
      bytes = 0;
    }
  }
  throw new Error('transfer stream ended without a trailer (sender failed or connection lost)');
}

async function receiveTail(it: AsyncIterator<string>, store: KvStore, seq: number, signal?: AbortSignal): Promise<CatchUpResult> {
  let items = 0;
  const toRecord = (json: string, value: unknown): LogRecord => {
    if (!isEntry(value)) throw new Error(`transfer tail line is not an entry: ${json.slice(0, 120)}`);
    return { entry: value, json, bytes: Buffer.byteLength(json) };
  };
  const trailer = await readGroups(it, toRecord, (r) => r.bytes, async (records) => {
    // Entries the store already has are skipped; a gap means the sender's window moved: start over.
    const fresh = records.filter((r) => r.entry.seq > store.seq);
    if (fresh.length === 0) return;
    if (fresh[0]!.entry.seq !== store.seq + 1) throw new Error(`transfer tail starts at ${fresh[0]!.entry.seq}, need ${store.seq + 1}`);
    await store.apply(fresh);
    items += fresh.length;
  }, signal);
  if (trailer.seq !== seq || store.seq !== seq) throw new Error(`transfer tail ended at ${store.seq}, expected ${seq}`);
  if (store.digest() !== trailer.digest) throw new DivergedError(`state digest differs from the peer's after replaying its log to seq ${seq}: the histories diverged`);
  return { kind: 'tail', seq, items };
}

async function receiveFull(it: AsyncIterator<string>, restore: StoreRestore, seq: number, store: KvStore, signal?: AbortSignal): Promise<CatchUpResult> {
  let items = 0;
  const toPair = (_line: string, value: unknown) => pairSchema.parse(value);
  const trailer = await readGroups(it, toPair, ([k, v]) => k.length + v.length, async (pairs) => {
    await restore.put(pairs);
    items += pairs.length;
  }, signal);
  if (trailer.seq !== seq) throw new Error('transfer trailer does not match its header');
  if (trailer.digest !== restore.digest()) throw new Error('transfer digest mismatch: state corrupted in transit');
  signal?.throwIfAborted();
  await restore.commit(seq);
  if (store.seq !== seq) throw new Error('store did not take the transferred state');
  return { kind: 'full', seq, items };
}
