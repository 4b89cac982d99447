import { z } from 'zod';
import type { KvStore } from '../store';

/**
 * State transfer as newline-delimited JSON, streamed so that neither side holds the whole state
 * in one buffer:
 *   {"shard":I,"seq":S,"keys":N}   header: shard I's state as of sequence number S
 *   ["key","value"]                 one line per pair
 *   {"end":true,"seq":S,"digest":D} trailer: a truncated stream has none and is rejected
 * The receiver checks the digest before it swaps the new state in.
 */
const headerSchema = z.object({ shard: z.string(), seq: z.number().int().nonnegative(), keys: z.number().int().nonnegative() });
const pairSchema = z.tuple([z.string(), z.string()]);
const trailerSchema = z.object({ end: z.literal(true), seq: z.number().int().nonnegative(), digest: z.string() });

export const SNAPSHOT_CHUNK_BYTES = 64 * 1024;

/** The sender. Fails (truncating the stream) if the state changes while it is being sent. */
export async function* snapshotLines(store: KvStore, shard: string): AsyncGenerator<string> {
  const seq = store.seq;
  yield `${JSON.stringify({ shard, seq, keys: store.size })}\n`;
  let chunk = '';
  for (const pair of store.scan()) {
    chunk += `${JSON.stringify(pair)}\n`;
    if (chunk.length >= SNAPSHOT_CHUNK_BYTES) {
      yield chunk;
      chunk = '';
      if (store.seq !== seq) throw new Error(`state changed during transfer (seq ${seq} -> ${store.seq})`);
    }
  }
  if (store.seq !== seq) throw new Error(`state changed during transfer (seq ${seq} -> ${store.seq})`);
  yield `${chunk}${JSON.stringify({ end: true, seq, digest: store.digest() })}\n`;
}

/** The receiver: replaces the store's state with the stream's, or throws and leaves it as it was. */
export async function installSnapshot(lines: AsyncIterable<string>, store: KvStore, shard: string): Promise<{ seq: number; keys: number }> {
  const restore = store.restore();
  let header: z.infer<typeof headerSchema> | undefined;
  let keys = 0;
  for await (const line of lines) {
    if (line === '') continue;
    const value: unknown = JSON.parse(line);
    if (header === undefined) {
      header = headerSchema.parse(value);
      if (header.shard !== shard) throw new Error(`snapshot is of shard ${header.shard}, this node is ${shard}: refusing it`);
    } else if (Array.isArray(value)) {
      const [k, v] = pairSchema.parse(value);
      restore.put(k, v);
      keys += 1;
    } else {
      const trailer = trailerSchema.parse(value);
      if (trailer.seq !== header.seq) throw new Error('snapshot trailer does not match its header');
      if (trailer.digest !== restore.digest()) throw new Error('snapshot digest mismatch: transfer corrupted');
      restore.commit(header.seq);
      return { seq: header.seq, keys };
    }
  }
  throw new Error('snapshot stream ended without a trailer (sender failed or connection lost)');
}
