import { z } from 'zod';
import { DIGEST_ALGORITHM, DIGEST_HEX_CHARS } from '../digest';
import type { Entry, LogRecord } from './log';

/**
 * A state digest as peers exchange it. Checking its form names the one cause of a peer's digest
 * of another length: a peer on another shardkv version (64 digits: the SHA-256 sum before
 * XXH3-128). Unchecked, the two would look diverged, and each full transfer between them would
 * fail its digest check and be retried forever.
 */
export const digestSchema = z.string().regex(new RegExp(`^[0-9a-f]{${DIGEST_HEX_CHARS}}$`), `digest is not ${DIGEST_HEX_CHARS} hex digits (${DIGEST_ALGORITHM}): the peer runs another shardkv version, and both nodes of a shard must run the same one`);

/**
 * Leader -> follower: `POST /internal/replicate`. One message type carries batches and
 * heartbeats (an empty batch), so the follower learns the leader's log bounds on every contact.
 */
/**
 * A replicated entry: `{seq, op: "put", key, value[, exp]}` or `{seq, op: "del", key}`, seq a positive
 * integer, key a non-empty string, exactly those fields (what the follower logs is then what the
 * leader sequenced). A plain check rather than zod: a follower validates every entry of every
 * message and every line of a log tail, and zod's per-element cost showed in its profile.
 */
export function isEntry(v: unknown): v is Entry {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  if (!Number.isSafeInteger(e['seq']) || (e['seq'] as number) < 1 || typeof e['key'] !== 'string' || e['key'] === '') return false;
  const fields = Object.keys(e).length;
  if (e['op'] === 'put') return typeof e['value'] === 'string' && (e['exp'] === undefined ? fields === 4 : Number.isSafeInteger(e['exp']) && fields === 5);
  return e['op'] === 'del' && fields === 3;
}

const entriesField = z.custom<Entry[]>((v) => Array.isArray(v) && v.every(isEntry), 'entries must be [{seq, op: "put", key, value, exp?} | {seq, op: "del", key}, ...]');

export const replicateRequestSchema = z.object({
  /** The shard the sender leads: a follower refuses another shard's history (a config mix-up). */
  shard: z.string(),
  /** The sender's configuration epoch: a node that knows a newer one refuses the message (fencing). */
  epoch: z.number().int().nonnegative(),
  /** The first sequence number the leader can still send; a follower behind it pulls a catch-up transfer. */
  logStartSeq: z.number().int().positive(),
  /** The leader's last sequenced entry. */
  lastSeq: z.number().int().nonnegative(),
  entries: entriesField,
  /**
   * The sender's term: one Leader instance. Every entry after `termStartSeq` was sequenced in it;
   * `termStartDigest` is the state at that seq. A follower checks its history against them once
   * per term before it takes entries (see Follower.checkTerm).
   */
  term: z.string().min(1),
  termStartSeq: z.number().int().nonnegative(),
  termStartDigest: digestSchema,
  /** The leader found the follower's state different from its own at the same seq: take a full transfer. */
  resync: z.boolean().optional(),
});
export type ReplicateRequest = z.infer<typeof replicateRequestSchema>;

export const replicateReplySchema = z.object({
  /** The follower's last applied sequence number: the leader resends from seq + 1. */
  seq: z.number().int().nonnegative(),
  /** The follower is pulling a catch-up transfer and applies nothing else until it is done. */
  catchingUp: z.boolean(),
  /** The batch started beyond seq + 1 (nothing was applied). */
  gap: z.boolean(),
  /** The follower's state digest at `seq`: the leader compares it with its own at the same seq. */
  digest: digestSchema,
});
export type ReplicateReply = z.infer<typeof replicateReplySchema>;

/** A leader term as it travels in every replicate message. */
export interface TermStart {
  term: string;
  seq: number;
  digest: string;
}

/** The term's fields of a replicate message, encoded once per term. */
export function termFields(term: TermStart): string {
  return `"term":${JSON.stringify(term.term)},"termStartSeq":${term.seq},"termStartDigest":${JSON.stringify(term.digest)}`;
}

/** Builds the request body from records serialised when they were sequenced: no re-encoding. */
export function replicateBody(shardJson: string, epoch: number, termJson: string, logStartSeq: number, lastSeq: number, batch: readonly LogRecord[], resync = false): string {
  let entries = '';
  for (let i = 0; i < batch.length; i += 1) entries += (i === 0 ? '' : ',') + batch[i]!.json;
  return `{"shard":${shardJson},"epoch":${epoch},${termJson},"logStartSeq":${logStartSeq},"lastSeq":${lastSeq},"entries":[${entries}]${resync ? ',"resync":true' : ''}}`;
}

/** The peer refused our message because it knows a newer epoch: we have been replaced. */
export class StaleEpochError extends Error {
  override name = 'StaleEpochError';
}

/** The peer answered that it cannot serve a transfer now (503 not_ready). */
export class PeerNotReadyError extends Error {
  override name = 'PeerNotReadyError';
}

/** What a node needs from its peer. HTTP lives behind it (transport.ts); tests wire nodes directly. */
export interface PeerTransport {
  readonly url: string;
  /** Sends one replicate message; rejects on any failure, including a timeout. */
  replicate(body: string): Promise<ReplicateReply>;
  /** Streams what a node at `fromSeq - 1` lacks of the peer's state, as transfer lines (see transfer.ts). */
  transfer(fromSeq: number, full: boolean): Promise<AsyncIterable<string>>;
  close(): Promise<void>;
}
