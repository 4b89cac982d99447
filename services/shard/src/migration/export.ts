import { SlotSet, slotOf } from '@shardkv/common';
import type { StoreView } from '../store';

/**
 * `GET /internal/export`: the moving slots of a source leader, for the coordinator's copy to the
 * target shard (see DESIGN.md, "Resharding"). Newline-delimited JSON, streamed with bounded memory:
 *   {"kind":"full","seq":S}      every pair of the slots as of S, one `["key","value"]` per line
 *   {"kind":"tail","seq":S}      the logged entries fromSeq..S of the slots, one entry per line
 *   {"kind":"restart","seq":S}   the log window no longer reaches fromSeq: copy again from a full
 * and a trailer {"end":true,"seq":S,"items":N}; a stream without it is incomplete. The caller
 * hands in a view whose every entry is committed (the route waits for that), so nothing a
 * failover could undo is ever copied.
 */
export const EXPORT_CHUNK_BYTES = 64 * 1024;

export function* exportLines(view: StoreView, slots: SlotSet, fromSeq: number): Generator<string> {
  const kind = fromSeq === 0 ? 'full' : fromSeq > view.seq || fromSeq >= view.logStartSeq ? 'tail' : 'restart';
  let chunk = `${JSON.stringify({ kind, seq: view.seq })}\n`;
  let items = 0;
  const lines = kind === 'full' ? pairLines(view, slots) : kind === 'tail' ? entryLines(view, slots, fromSeq) : [];
  for (const line of lines) {
    items += 1;
    chunk += `${line}\n`;
    if (chunk.length >= EXPORT_CHUNK_BYTES) {
      yield chunk;
      chunk = '';
    }
  }
  yield `${chunk}${JSON.stringify({ end: true, seq: view.seq, items })}\n`;
}

function* pairLines(view: StoreView, slots: SlotSet): Generator<string> {
  for (const pair of view.pairs()) if (slots.has(slotOf(pair[0]))) yield JSON.stringify(pair);
}

function* entryLines(view: StoreView, slots: SlotSet, fromSeq: number): Generator<string> {
  for (const json of view.entries(fromSeq)) {
    const entry = JSON.parse(json) as { key: string };
    if (slots.has(slotOf(entry.key))) yield json;
  }
}

/** Every key of `slots` in the view, at most `max` of them (a purge deletes them in bounded batches). */
export function keysIn(view: StoreView, slots: SlotSet, max: number): { keys: string[]; more: boolean } {
  const keys: string[] = [];
  for (const [key] of view.pairs()) {
    if (!slots.has(slotOf(key))) continue;
    if (keys.length === max) return { keys, more: true };
    keys.push(key);
  }
  return { keys, more: false };
}
