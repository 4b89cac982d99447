import type { Entry } from './log';
import { needsCatchUp, planApply } from './log';
import type { ReplicateRequest } from './messages';

/**
 * - `waiting`: started, not yet contacted by the leader; its state may be stale, so it serves no reads.
 * - `catching_up`: pulling what it lacks from the leader (log tail or full state); applies nothing else.
 * - `replicating`: applying the log, but behind the leader's last entry.
 * - `in_sync`: has applied every entry the leader had sequenced at the last contact.
 */
export type FollowerState = 'waiting' | 'catching_up' | 'replicating' | 'in_sync' | 'stopped';

/** What the follower's decision depends on: its state and its store's. */
export interface FollowerFacts {
  state: FollowerState;
  seq: number;
  /** The leader term its history was last checked against (kept with the data). */
  term: string | undefined;
  /** Its state digest; asked for only when a decision needs it. */
  digest: () => string;
}

export type FollowerDecision =
  /** Busy catching up (or stopping): apply nothing, answer with our seq. */
  | { kind: 'busy' }
  /** Pull what we lack: a log tail, or (`full`) the leader's whole state. */
  | { kind: 'catchUp'; full: boolean; why: 'resync' | 'stray' | 'behind' }
  /** Apply `entries` (possibly none) durably, then answer; `adoptTerm` first records the term as checked. */
  | { kind: 'apply'; entries: Entry[]; gap: boolean; adoptTerm: boolean };

/**
 * The follower's rule for one replicate message (the epoch and shard were checked before), a pure
 * function of its facts and the message. The shell (follower.ts) performs it and answers.
 */
export function decideReplicate(f: FollowerFacts, req: ReplicateRequest): FollowerDecision {
  if (f.state === 'catching_up' || f.state === 'stopped') return { kind: 'busy' };
  if (req.resync === true) return { kind: 'catchUp', full: true, why: 'resync' };
  if (strayEntries(f, req)) return { kind: 'catchUp', full: true, why: 'stray' };
  if (needsCatchUp(f.seq, req.logStartSeq)) return { kind: 'catchUp', full: false, why: 'behind' };
  const plan = planApply(f.seq, req.entries);
  return { kind: 'apply', entries: plan.apply, gap: plan.gap, adoptTerm: f.term !== req.term };
}

/** The state a follower is in once a decision is applied: `in_sync` when it holds the leader's last entry. */
export function stateAfterApply(seqAfter: number, req: ReplicateRequest): FollowerState {
  return seqAfter >= req.lastSeq ? 'in_sync' : 'replicating';
}

/**
 * Once per leader term, before taking any of its entries: does our history end where the
 * term's began? Entries beyond the term's start, or a different state at it, came from an
 * earlier term and were never committed there (the new leader lacks them, and a leader commits
 * only what its follower acknowledged). They cannot be undone one by one, so the whole state is
 * replaced. Without this check they would be taken for resends and skipped, and the follower
 * would silently hold a history no leader has. Behind the start is fine: the catch-up ends on
 * the leader's digest.
 */
export function strayEntries(f: FollowerFacts, req: ReplicateRequest): boolean {
  if (f.term === req.term) return false;
  return f.seq > req.termStartSeq || (f.seq === req.termStartSeq && f.digest() !== req.termStartDigest);
}
