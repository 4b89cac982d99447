import { SlotSet, slotOf } from '@shardkv/common';
import { liveValue } from '../stored';
import type { StoreView } from '../store';

/**
 * `GET /internal/export`: the moving slots of a source leader, for the coordinator's copy to the
 * target shard (see DESIGN.md, "Resharding"). Newline-delimited JSON, streamed with bounded memory:
 *   {"kind":"full","seq":S}      every live pair of the slots as of S, one `["key","value"]` per line
 *                                (`["key","value",expiresAtMs]` for a value that expires; the target gives it a new version)
 *   {"kind":"tail","seq":S}      the logged entries fromSeq..S of the slots, one entry per line
 *   {"kind":"restart","seq":S}   the log window no longer reaches fromSeq: copy again from a full
 * and a trailer {"end":true,"seq":S,"items":N}; a stream without it is incomplete. The caller
 * hands in a view whose every entry is committed (the route waits for that), so nothing a
 * failover could undo is ever copied.
 */
export const EXPORT_CHUNK_BYTES = 64 * 1024;
/**
 * Pairs scanned between two yields to the event loop. Checking a pair's slot costs an MD5, and
 * most pairs of a shard are not moving: scanning a 300k-key shard in one go held the event loop
 * for most of a second, long enough for the coordinator's health checks to fail the leader over.
 */
export const SCAN_PAIRS_PER_TURN = 4096;

const nextTurn = () => new Promise<void>((r) => setImmediate(r));

export async function* exportLines(view: StoreView, slots: SlotSet, fromSeq: number): AsyncGenerator<string> {
  const kind = fromSeq === 0 ? 'full' : fromSeq > view.seq || fromSeq >= view.logStartSeq ? 'tail' : 'restart';
  let chunk = `${JSON.stringify({ kind, seq: view.seq })}\n`;
  let items = 0;
  const lines = kind === 'full' ? pairLines(view, slots) : kind === 'tail' ? entryLines(view, slots, fromSeq) : [];
  for (const line of lines) {
    if (line === TURN) {
      await nextTurn();
      continue;
    }
    items += 1;
    chunk += `${line}\n`;
    if (chunk.length >= EXPORT_CHUNK_BYTES) {
      yield chunk;
      chunk = '';
    }
  }
  yield `${chunk}${JSON.stringify({ end: true, seq: view.seq, items })}\n`;
}

/** Marks a point where a stable view's scan lets the event loop run (see SCAN_PAIRS_PER_TURN). */
const TURN = '';

function* pairLines(view: StoreView, slots: SlotSet): Generator<string> {
  let scanned = 0;
  const nowMs = Date.now();
  for (const [key, stored] of view.pairs()) {
    const v = slots.has(slotOf(key)) ? liveValue(stored, nowMs) : undefined;
    if (v !== undefined) yield JSON.stringify(v.expiresAtMs === undefined ? [key, v.value] : [key, v.value, v.expiresAtMs]);
    if ((scanned += 1) % SCAN_PAIRS_PER_TURN === 0 && view.stable) yield TURN;
  }
}

function* entryLines(view: StoreView, slots: SlotSet, fromSeq: number): Generator<string> {
  for (const json of view.entries(fromSeq)) {
    const entry = JSON.parse(json) as { key: string };
    if (slots.has(slotOf(entry.key))) yield json;
  }
}

/** Every key of `slots` in the view, at most `max` of them (a purge deletes them in bounded batches). */
export async function keysIn(view: StoreView, slots: SlotSet, max: number): Promise<{ keys: string[]; more: boolean }> {
  const keys: string[] = [];
  let scanned = 0;
  for (const [key] of view.pairs()) {
    if ((scanned += 1) % SCAN_PAIRS_PER_TURN === 0 && view.stable) await nextTurn();
    if (!slots.has(slotOf(key))) continue;
    if (keys.length === max) return { keys, more: true };
    keys.push(key);
  }
  return { keys, more: false };
}
