import { KvError, type ErrorCode } from '@shardkv/common';
import { idempotencyRecordKey } from '@shardkv/common';
import { encodeStored, liveValue, storedOf } from '../stored';
import { decide, type Command } from './commands';
import { LeaderLog, type LogLimits, type LogRecord, type Op } from './log';
import { replicateBody, termFields, type ReplicateReply, type TermStart } from './messages';

/**
 * The leader's replication core: a deterministic state machine in the etcd-raft sense. The shell
 * (leader.ts) feeds it events — client writes, replies and failures of replication messages,
 * completions of its own store's transactions, configuration changes and clock ticks — and
 * performs the effects it returns: messages to send, batches to persist, clients to answer,
 * reports for the coordinator. The core does no IO, reads no clock (every event carries `nowMs`,
 * a monotonic time) and draws no random numbers (the term id is given), so the same events
 * always give the same effects: `testdata/*.txt` scripts them.
 *
 * A write commits when it is durable on both nodes: the follower acknowledged it AND this node's
 * store has it. The two happen in parallel (the leader persists a batch while the follower
 * does), and several ordered batches travel to the follower at once (pipelining), so the
 * follower's fsync overlaps the next batch's transfer. An entry persisted here but not yet
 * committed is invisible to reads: the shell keeps the committed value of such keys (visible.ts).
 */
export interface LeaderCoreOptions {
  shardId: string;
  /** A write waits at most this long for its commit; then its client gets 504 replication_timeout (indeterminate). */
  replicationTimeoutMs: number;
  /** An idle leader sends an empty message this often, so a lost or restarted follower is noticed. */
  heartbeatIntervalMs: number;
  /** No new message this long after a failed one, or after a catching-up or diverged answer. */
  retryBackoffMs: number;
  /** In sync mode, reads are served until this long after sending the last message the follower acknowledged. */
  readLeaseMs: number;
  /** Replication messages in flight at once (pipelined, in order, on one connection). */
  inFlightMessagesMax: number;
  limits: LogLimits;
  /** How long the record of an applied Idempotency-Key is kept (a retry after it is applied again). */
  idempotencyWindowMs?: number;
}

/** IDEMPOTENCY_WINDOW_MS's default: 10 minutes, like Stripe's retry horizon is a day and a client's is seconds. */
export const IDEMPOTENCY_WINDOW_MS_DEFAULT = 10 * 60_000;

/**
 * How writes commit, as the coordinator's configuration says:
 * - `sync`: only with the follower's acknowledgement (the follower is in sync and may be promoted);
 * - `alone`: on this node alone (the follower is out of sync; MIN_INSYNC_REPLICAS=1);
 * - `refuse`: not at all, 503 no_replica (the follower is out of sync; MIN_INSYNC_REPLICAS=2).
 */
export type CommitMode = 'sync' | 'alone' | 'refuse';

export type CoreState = 'serving' | 'fenced' | 'stopped';

/** How far behind (entries) an out-of-sync follower may be when the leader starts waiting for it again. */
export const REJOIN_LAG_ENTRIES_MAX = 1000;

export interface WriteResult {
  /** The entry's seq: the version of the value it wrote. */
  seq: number;
  /** Whether the key existed just before this entry was applied (in sequence order). */
  existed: boolean;
  /** An increment's new value. */
  value?: string;
}

/** One command's outcome: its entry committed, or refused when it was decided (nothing sequenced for it: definite). */
export type CommandResult = WriteResult | { refused: KvError };

/** Reads the store's stored form of a key (stored.ts): what the leader decides on for keys with no uncommitted entry. */
export type StoreRead = (key: string) => string | undefined;

/** What the leader knows of its follower. */
export interface FollowerView {
  reachable: boolean;
  catchingUp: boolean;
  /** The follower's state differs from ours (ahead, or another digest at our seq). */
  diverged: boolean;
  ackedSeq: number;
  lastContactAtMs: number | undefined;
  lastError: string | undefined;
}

export interface CoreStart {
  epoch: number;
  mode: CommitMode;
  /** The term: one Leader instance. Its id is drawn by the shell; seq and digest are its store's at the start. */
  term: TermStart;
}

/** The store's seq and digest when a reply is handled, to compare with the follower's. */
export interface LocalState {
  seq: number;
  digest: string;
}

export type LeaderEvent =
  /** `wallMs`: the wall-clock time, for expiries (set by the leader, never by the follower). */
  | { type: 'write'; id: number; commands: readonly Command[]; nowMs: number; wallMs: number }
  /** End of an event-loop turn: send what the writes of this turn added. */
  | { type: 'flush'; nowMs: number }
  | { type: 'tick'; nowMs: number }
  | { type: 'replied'; msgId: number; reply: ReplicateReply; local: LocalState; nowMs: number }
  | { type: 'sendFailed'; msgId: number; error: string; staleEpoch: boolean; nowMs: number }
  | { type: 'persisted'; throughSeq: number; existed: readonly boolean[]; nowMs: number }
  | { type: 'persistFailed'; error: string; nowMs: number }
  | { type: 'configure'; mode: CommitMode; epoch: number; nowMs: number }
  | { type: 'fence'; why: string; nowMs: number }
  | { type: 'stop'; nowMs: number };

export type Report = 'followerLost' | 'followerCaughtUp' | 'fenced';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type LeaderEffect =
  | { type: 'send'; msgId: number; body: string; fromSeq: number; toSeq: number }
  | { type: 'persist'; records: readonly LogRecord[] }
  /** Entries through `throughSeq` are committed: visible to reads from now on. */
  | { type: 'committed'; records: readonly LogRecord[] }
  | { type: 'answer'; id: number; results: CommandResult[] }
  | { type: 'fail'; id: number; code: ErrorCode; message: string }
  | { type: 'report'; event: Report; epoch: number }
  | { type: 'log'; level: LogLevel; msg: string; fields?: Record<string, unknown> };

interface InFlight {
  msgId: number;
  toSeq: number;
  sentAtMs: number;
}

interface Waiter {
  id: number;
  firstSeq: number;
  lastSeq: number;
  deadlineMs: number;
  /** Per command, in order: the index of its entry among those sequenced (seq = firstSeq + index), or its refusal. */
  plan: Planned[];
}

/** A command's place in its batch: its entry, its refusal, or (a retry of an applied Idempotency-Key) the first answer, given once `seq` commits. */
type Planned = { entry: number; value?: string } | { refused: KvError } | { replay: WriteResult };

/** Serving state of one leader term. Only `step` changes it. */
export class LeaderCore {
  private state: CoreState = 'serving';
  private epoch: number;
  private mode: CommitMode;
  private readonly log: LeaderLog;
  private readonly shardJson: string;
  private readonly termJson: string;
  /** The store's seq when the term began: entries up to it may not be on the follower yet (persisted here, unacknowledged, before a restart). */
  private readonly termStartSeq: number;
  /** This node's store has every entry through this seq. */
  private persistedSeq: number;
  private persisting = false;
  private storageError: string | undefined;
  /** Entries through this seq commit without the follower (sequenced or accepted while committing alone). */
  private aloneThroughSeq = 0;
  /** Rejoining: the last entry committed alone; once the follower has it, it holds every committed write. */
  private rejoinSeq: number | undefined;
  /** The follower's state differs from ours: the next message asks it to take our full state. */
  private resync = false;
  private nextSeq: number;
  private nextMsgId = 1;
  private inFlight: InFlight[] = [];
  private lastSentAtMs = Number.NEGATIVE_INFINITY;
  /** No message before this (after a failure, a catching-up or a diverged answer). */
  private quietUntilMs = Number.NEGATIVE_INFINITY;
  private persistRetryAtMs = Number.NEGATIVE_INFINITY;
  /** When the last acknowledged message was sent: reads in sync mode are served until this plus the lease. */
  private leaseFromMs = Number.NEGATIVE_INFINITY;
  /** Waiting writes, in the order of the last seq each waits for. */
  private readonly waiters: Waiter[] = [];
  /** `existed` of entries persisted but not committed yet, by seq - (committedSeq + 1). */
  private existed: boolean[] = [];
  /**
   * `existed` of committed entries from `committedExistedFromSeq` on, kept until every write they
   * belong to is answered: a write's entries commit in two steps when a replication message ends
   * inside them (batchEntriesMax, batchBytesMax).
   */
  private committedExisted: boolean[] = [];
  private committedExistedFromSeq = 0;
  /** Since the term began: how well writes are batched on each hop (see /status). */
  private readonly counts = { writeEvents: 0, entriesSequenced: 0, entriesSent: 0, messagesSent: 0, persists: 0 };
  readonly follower: FollowerView = { reachable: false, catchingUp: false, diverged: false, ackedSeq: 0, lastContactAtMs: undefined, lastError: 'not contacted yet' };

  constructor(
    private readonly opts: LeaderCoreOptions,
    start: CoreStart,
    /** The store's state, for keys with no uncommitted entry (a pure read: LMDB's is synchronous). */
    private readonly readStore: StoreRead = () => undefined,
  ) {
    this.epoch = start.epoch;
    this.mode = start.mode;
    this.log = new LeaderLog(start.term.seq, opts.limits);
    this.persistedSeq = start.term.seq;
    this.nextSeq = start.term.seq + 1;
    this.shardJson = JSON.stringify(opts.shardId);
    this.termJson = termFields(start.term);
    this.termStartSeq = start.term.seq;
  }

  /** The one entry point: applies an event, returns what the shell must do, in order. */
  step(ev: LeaderEvent): LeaderEffect[] {
    const out: LeaderEffect[] = [];
    if (this.state !== 'serving') {
      if (ev.type === 'write') out.push(fail(ev.id, new KvError('not_ready', `leader is ${this.state}`)));
      return out;
    }
    this.apply(ev, out);
    if (this.state === 'serving') this.drive(ev, out);
    return out;
  }

  private apply(ev: LeaderEvent, out: LeaderEffect[]): void {
    switch (ev.type) {
      case 'write': return this.onWrite(ev.id, ev.commands, ev.nowMs, ev.wallMs, out);
      case 'replied': return this.onReplied(ev.msgId, ev.reply, ev.local, ev.nowMs, out);
      case 'sendFailed': return this.onSendFailed(ev.msgId, ev.error, ev.staleEpoch, ev.nowMs, out);
      case 'persisted': return this.onPersisted(ev.throughSeq, ev.existed, out);
      case 'persistFailed': return this.onPersistFailed(ev.error, ev.nowMs, out);
      case 'configure': return this.onConfigure(ev.mode, ev.epoch, out);
      case 'fence': return this.onFence(ev.why, out);
      case 'stop': return this.end('stopped', 'leader stopping', out);
      case 'tick': return this.expireWaiters(ev.nowMs, out);
      case 'flush': return;
    }
  }

  /** After every event: persist, commit, send and heartbeat as far as the state allows. */
  private drive(ev: LeaderEvent, out: LeaderEffect[]): void {
    // A write only queues: its turn's `flush` persists and sends, so the writes of one
    // event-loop turn travel together and share one store transaction on each node.
    if (ev.type === 'write') return;
    this.startPersist(ev.nowMs, out);
    this.commit(out);
    this.send(ev.nowMs, out);
  }

  // ---- writes ----------------------------------------------------------------------------

  private onWrite(id: number, commands: readonly Command[], nowMs: number, wallMs: number, out: LeaderEffect[]): void {
    const refused = this.refusal(commands.length);
    if (refused !== undefined) return void out.push(fail(id, refused));
    const { ops, plan } = this.decideAll(commands, wallMs);
    // A replay is answered once the first attempt's record is committed (it may still be in flight).
    const replayedThrough = Math.max(0, ...plan.map((p) => ('replay' in p ? p.replay.seq : 0)));
    // A refusal (412, 409) was decided on the latest sequenced state, which may not be committed:
    // it is answered once that state is, or a read right after it could see an older one, and a
    // failover could undo the state it named.
    const decidedThrough = plan.some((p) => 'refused' in p) ? this.log.lastSeq : 0;
    const waitsFor = Math.max(replayedThrough, decidedThrough);
    if (ops.length === 0 && waitsFor <= this.log.appliedSeq) return void out.push({ type: 'answer', id, results: plan.map(settled) });
    let firstSeq = 0;
    try {
      if (ops.length > 0) firstSeq = this.log.appendAll(ops);
    } catch (err) {
      return void out.push(fail(id, err as KvError));
    }
    if (this.mode === 'alone') this.aloneThroughSeq = this.log.lastSeq;
    this.counts.writeEvents += 1;
    this.counts.entriesSequenced += ops.length;
    const lastSeq = ops.length > 0 ? this.log.lastSeq : waitsFor;
    this.waiters.push({ id, firstSeq, lastSeq, deadlineMs: nowMs + this.opts.replicationTimeoutMs, plan });
    // Waiters are answered in sequence order: a replay waiting on an earlier seq goes before later writes.
    this.waiters.sort((a, b) => a.lastSeq - b.lastSeq);
  }

  /**
   * Decides the commands in order, each on the key's latest state: what this batch wrote before
   * it, else the key's last uncommitted entry, else the store (decide.ts says how).
   */
  private decideAll(commands: readonly Command[], wallMs: number): { ops: Op[]; plan: Planned[] } {
    const ops: Op[] = [];
    const plan: Planned[] = [];
    const batch = new Map<string, string | undefined>();
    const stateOf = (key: string) => (batch.has(key) ? batch.get(key) : this.latestStored(key));
    for (const cmd of commands) {
      const recordKey = cmd.idem === undefined ? undefined : idempotencyRecordKey(cmd.key, cmd.idem);
      const applied = recordKey === undefined ? undefined : liveValue(stateOf(recordKey), wallMs);
      if (applied !== undefined) {
        plan.push({ replay: JSON.parse(applied.value) as WriteResult });
        continue;
      }
      const current = stateOf(cmd.key);
      const d = decide(cmd, current, wallMs);
      if (!d.ok) {
        plan.push({ refused: d.error });
        continue;
      }
      const seq = this.log.lastSeq + 1 + ops.length;
      batch.set(cmd.key, d.op.op === 'put' ? encodeStored(d.op.value, seq, d.op.exp) : undefined);
      plan.push(d.value === undefined ? { entry: ops.length } : { entry: ops.length, value: d.value });
      ops.push(d.op);
      if (recordKey !== undefined) {
        // The first answer, decided now (`existed` from the state just before): one more entry of the same batch.
        const answer: WriteResult = { seq, existed: current !== undefined, ...(d.value === undefined ? {} : { value: d.value }) };
        const record: Op = { op: 'put', key: recordKey, value: JSON.stringify(answer), exp: wallMs + (this.opts.idempotencyWindowMs ?? IDEMPOTENCY_WINDOW_MS_DEFAULT) };
        batch.set(recordKey, encodeStored(record.value, seq + 1, record.exp));
        ops.push(record);
      }
    }
    return { ops, plan };
  }

  /** The key's state after every entry sequenced so far, committed or not. */
  private latestStored(key: string): string | undefined {
    const r = this.log.latest(key);
    if (r === undefined) return this.readStore(key);
    return r.entry.op === 'put' ? storedOf(r.entry) : undefined;
  }

  /** Why a write must fail now, before anything is sequenced (a definite failure), if it must. */
  private refusal(entries: number): KvError | undefined {
    if (entries === 0) return new KvError('invalid_body', 'a write needs at least one entry');
    if (this.storageError !== undefined) return new KvError('storage_unavailable', `leader cannot persist writes: ${this.storageError}`);
    if (this.mode === 'alone') return undefined;
    if (this.mode === 'refuse') return new KvError('no_replica', 'the follower is out of sync and MIN_INSYNC_REPLICAS=2: writes need both nodes');
    const f = this.follower;
    if (f.diverged) return new KvError('no_replica', 'follower state differs from this leader; it is being resynced (see leader log)');
    if (!f.reachable) return new KvError('no_replica', `follower is unreachable: ${f.lastError ?? 'unknown'}`);
    if (f.catchingUp) return new KvError('no_replica', 'follower is catching up (log tail or full transfer)');
    return undefined;
  }

  /** Waiters past their deadline get 504: their entries stay in the log and may still commit. */
  private expireWaiters(nowMs: number, out: LeaderEffect[]): void {
    // Not a prefix: a replay (sorted by the seq it waits for) may have a later deadline than writes after it.
    const expired = this.waiters.filter((w) => w.deadlineMs <= nowMs);
    if (expired.length === 0) return;
    for (let i = this.waiters.length - 1; i >= 0; i -= 1) if (this.waiters[i]!.deadlineMs <= nowMs) this.waiters.splice(i, 1);
    for (const w of expired) out.push(waiterFailure(w, `write ${w.lastSeq} was not committed on both nodes within ${this.opts.replicationTimeoutMs} ms; it may still commit`));
  }

  // ---- local persistence and commit --------------------------------------------------------

  /** One store transaction at a time, of everything sequenced and not persisted yet. */
  private startPersist(nowMs: number, out: LeaderEffect[]): void {
    if (this.persisting || nowMs < this.persistRetryAtMs || this.persistedSeq >= this.log.lastSeq) return;
    this.persisting = true;
    this.counts.persists += 1;
    out.push({ type: 'persist', records: this.log.slice(this.persistedSeq + 1, this.log.lastSeq) });
  }

  private onPersisted(throughSeq: number, existed: readonly boolean[], out: LeaderEffect[]): void {
    this.persisting = false;
    if (throughSeq !== this.persistedSeq + existed.length) throw new Error(`core invariant: persisted ${existed.length} entries through ${throughSeq}, was at ${this.persistedSeq}`);
    if (this.storageError !== undefined) out.push({ type: 'log', level: 'info', msg: 'store writable again' });
    this.storageError = undefined;
    this.persistedSeq = throughSeq;
    for (const e of existed) this.existed.push(e);
  }

  /** Retried until it persists: the follower may have acknowledged these entries already. */
  private onPersistFailed(error: string, nowMs: number, out: LeaderEffect[]): void {
    this.persisting = false;
    if (this.storageError === undefined) out.push({ type: 'log', level: 'error', msg: 'store cannot persist entries; refusing writes and retrying', fields: { err: error } });
    this.storageError = error;
    this.persistRetryAtMs = nowMs + this.opts.retryBackoffMs;
  }

  /** Durable on both nodes (or here alone, where allowed): visible, answered, dropped from memory. */
  private commit(out: LeaderEffect[]): void {
    const target = Math.min(this.persistedSeq, Math.max(this.follower.ackedSeq, this.aloneThroughSeq));
    const from = this.log.appliedSeq + 1;
    if (target < from) return;
    const records = this.log.slice(from, target);
    out.push({ type: 'committed', records });
    if (this.committedExisted.length === 0) this.committedExistedFromSeq = from;
    for (const e of this.existed.splice(0, records.length)) this.committedExisted.push(e);
    this.log.commitThrough(target);
    this.answerThrough(target, out);
    this.dropAnsweredExisted(target);
  }

  private answerThrough(target: number, out: LeaderEffect[]): void {
    let n = 0;
    while (n < this.waiters.length && this.waiters[n]!.lastSeq <= target) n += 1;
    for (const w of this.waiters.splice(0, n)) {
      const results = w.plan.map((p): CommandResult => {
        if ('refused' in p || 'replay' in p) return settled(p);
        const seq = w.firstSeq + p.entry;
        const existed = this.committedExisted[seq - this.committedExistedFromSeq];
        if (existed === undefined) throw new Error(`core invariant: no existed flag for committed seq ${seq}`);
        const r: WriteResult = { seq, existed };
        return p.value === undefined ? r : { ...r, value: p.value };
      });
      out.push({ type: 'answer', id: w.id, results });
    }
  }

  /** Keeps the flags of committed entries only while a write still waiting has entries among them. */
  private dropAnsweredExisted(target: number): void {
    let keepFromSeq = target + 1;
    for (const w of this.waiters) if (w.firstSeq > 0 && w.firstSeq < keepFromSeq) keepFromSeq = w.firstSeq;
    const drop = Math.min(this.committedExisted.length, Math.max(0, keepFromSeq - this.committedExistedFromSeq));
    this.committedExisted.splice(0, drop);
    this.committedExistedFromSeq += drop;
  }

  // ---- replication messages ------------------------------------------------------------------

  private send(nowMs: number, out: LeaderEffect[]): void {
    if (nowMs < this.quietUntilMs) return;
    // A follower behind the in-memory log gets nothing but heartbeats until its catch-up ends.
    const canSendEntries = this.nextSeq >= this.log.startSeq;
    while (this.inFlight.length < this.opts.inFlightMessagesMax && canSendEntries && this.nextSeq <= this.log.lastSeq) {
      this.sendBatch(this.log.batchFrom(this.nextSeq), nowMs, out);
    }
    if (this.inFlight.length === 0 && nowMs - this.lastSentAtMs >= this.opts.heartbeatIntervalMs) this.sendBatch([], nowMs, out);
  }

  private sendBatch(batch: LogRecord[], nowMs: number, out: LeaderEffect[]): void {
    const msgId = this.nextMsgId++;
    const fromSeq = batch.length > 0 ? batch[0]!.entry.seq : this.nextSeq;
    const toSeq = fromSeq + batch.length - 1;
    const body = replicateBody(this.shardJson, this.epoch, this.termJson, this.log.startSeq, this.log.lastSeq, batch, this.resync);
    this.inFlight.push({ msgId, toSeq, sentAtMs: nowMs });
    this.lastSentAtMs = nowMs;
    this.nextSeq = toSeq + 1;
    this.counts.messagesSent += 1;
    this.counts.entriesSent += batch.length;
    out.push({ type: 'send', msgId, body, fromSeq, toSeq });
  }

  private takeInFlight(msgId: number): InFlight | undefined {
    const i = this.inFlight.findIndex((m) => m.msgId === msgId);
    return i < 0 ? undefined : this.inFlight.splice(i, 1)[0];
  }

  private onSendFailed(msgId: number, error: string, staleEpoch: boolean, nowMs: number, out: LeaderEffect[]): void {
    if (staleEpoch) return this.onFence(`replicate refused: ${error}`, out);
    if (this.takeInFlight(msgId) === undefined) return;
    const f = this.follower;
    if (this.mode === 'sync') out.push({ type: 'report', event: 'followerLost', epoch: this.epoch });
    if (f.reachable) out.push({ type: 'log', level: 'warn', msg: 'follower unreachable; refusing writes', fields: { err: error } });
    f.reachable = false;
    f.lastError = error;
    // Whatever else was in flight may be lost too: resend from the last acknowledgement.
    this.inFlight = [];
    this.nextSeq = Math.max(f.ackedSeq + 1, this.log.appliedSeq + 1);
    this.quietUntilMs = nowMs + this.opts.retryBackoffMs;
  }

  private onReplied(msgId: number, reply: ReplicateReply, local: LocalState, nowMs: number, out: LeaderEffect[]): void {
    const sent = this.takeInFlight(msgId);
    if (sent === undefined) return;
    const f = this.follower;
    // The follower answered a message of our epoch: as of its sending, it was not promoted.
    this.leaseFromMs = Math.max(this.leaseFromMs, sent.sentAtMs);
    if (!f.reachable) out.push({ type: 'log', level: 'info', msg: 'follower reachable', fields: { seq: reply.seq } });
    f.reachable = true;
    f.lastContactAtMs = nowMs;
    f.lastError = undefined;
    f.catchingUp = reply.catchingUp;
    if (!reply.catchingUp && this.differs(reply, local)) return this.onDiverged(reply, nowMs, out);
    this.resync = false;
    // Below what it acknowledged: it lost its disk (or runs in memory and restarted). It cannot
    // count as in sync any more, whatever it catches up to later.
    if (reply.seq < f.ackedSeq && this.mode === 'sync') out.push({ type: 'report', event: 'followerLost', epoch: this.epoch });
    // While we commit alone a follower is always catching up (each tail ends behind the next
    // writes); once it is close, writes wait for it again and it catches the rest from memory.
    if (this.mode !== 'sync' && reply.seq >= this.log.appliedSeq - REJOIN_LAG_ENTRIES_MAX) this.rejoin(out);
    if (reply.catchingUp) return void (this.quietUntilMs = nowMs + this.opts.retryBackoffMs);
    f.diverged = false;
    this.acknowledged(reply, sent, out);
  }

  private acknowledged(reply: ReplicateReply, sent: InFlight, out: LeaderEffect[]): void {
    const f = this.follower;
    f.ackedSeq = reply.seq;
    // Messages travel in order on one connection and the follower takes them in order, so an
    // answer below the end of its message means a gap (something before it was lost) or a
    // follower that lost entries: what is still in flight is useless; resend from its seq.
    if (reply.gap || reply.seq < sent.toSeq) {
      this.inFlight = [];
      this.nextSeq = reply.seq + 1;
    } else {
      this.nextSeq = Math.max(this.nextSeq, reply.seq + 1);
    }
    if (this.rejoinSeq !== undefined && reply.seq >= this.rejoinSeq) out.push({ type: 'report', event: 'followerCaughtUp', epoch: this.epoch });
  }

  /**
   * Never adopt or keep a history we did not write: refuse writes, and have the follower replace
   * its state with ours (it cannot hold an acknowledged write we lack: we reconciled with it at
   * start-up, and since then only we have written to it).
   */
  private onDiverged(reply: ReplicateReply, nowMs: number, out: LeaderEffect[]): void {
    const f = this.follower;
    if (!f.diverged) out.push({ type: 'log', level: 'error', msg: 'follower state differs from ours: asking it to resync', fields: { followerSeq: reply.seq, lastSeq: this.log.lastSeq } });
    f.diverged = true;
    this.resync = true;
    this.quietUntilMs = nowMs + this.opts.retryBackoffMs;
  }

  /** The follower is ahead of anything we sequenced, or at our store's seq with another state. */
  private differs(reply: ReplicateReply, local: LocalState): boolean {
    return reply.seq > this.log.lastSeq || (reply.seq === local.seq && reply.digest !== local.digest);
  }

  // ---- configuration -------------------------------------------------------------------------

  /**
   * A new configuration for this leader (same node, same role). Going `alone` commits whatever
   * waits for the lost follower (once persisted here); going `sync` keeps committing alone only
   * what was accepted alone.
   */
  private onConfigure(mode: CommitMode, epoch: number, out: LeaderEffect[]): void {
    // The same epoch's "alone" again, while rejoining: we already know we may commit alone and
    // chose to wait for the follower; going back would undo the rejoin we asked to record.
    if (epoch === this.epoch && mode !== 'sync' && this.rejoinSeq !== undefined) return;
    this.epoch = epoch;
    this.rejoinSeq = undefined;
    this.changeMode(mode, out);
  }

  private changeMode(mode: CommitMode, out: LeaderEffect[]): void {
    if (mode !== this.mode) out.push({ type: 'log', level: 'info', msg: 'commit mode changed', fields: { from: this.mode, to: mode, epoch: this.epoch } });
    this.mode = mode;
    if (mode === 'alone') this.aloneThroughSeq = this.log.lastSeq;
  }

  /**
   * The out-of-sync follower is close behind: from now on writes wait for it again, so nothing
   * commits without it any more. Only when it also has the last entry committed alone is the
   * coordinator asked to count it in sync (promotable).
   */
  private rejoin(out: LeaderEffect[]): void {
    out.push({ type: 'log', level: 'info', msg: 'follower close behind: waiting for it again', fields: { appliedSeq: this.log.appliedSeq } });
    this.changeMode('sync', out);
    this.rejoinSeq = this.log.lastSeq;
  }

  private onFence(why: string, out: LeaderEffect[]): void {
    out.push({ type: 'log', level: 'warn', msg: 'replaced by a newer epoch: no longer serving', fields: { epoch: this.epoch, why } });
    this.end('fenced', 'leader replaced', out);
    out.push({ type: 'report', event: 'fenced', epoch: this.epoch });
  }

  /** Waiting writes may still commit (a promoted follower may hold them): indeterminate. */
  private end(state: CoreState, why: string, out: LeaderEffect[]): void {
    this.state = state;
    for (const w of this.waiters.splice(0)) out.push(waiterFailure(w, `${why}; write ${w.lastSeq} may or may not commit`));
  }

  // ---- queries (no state change) ---------------------------------------------------------------

  /**
   * Reads are linearizable only while no other node can have been promoted. With the follower
   * in sync that is what its recent acknowledgement proves: a promoted follower refuses our
   * messages, and waits out this lease before it serves. Committing alone or refusing, the
   * follower is out of sync and cannot be promoted, so no lease is needed.
   */
  readRefusal(nowMs: number): KvError | undefined {
    if (this.state !== 'serving') return new KvError('not_ready', `leader is ${this.state}`);
    if (this.mode !== 'sync') return undefined;
    // Our store may hold entries from before a restart that the follower never acknowledged:
    // nothing is served until it has them all, so no read shows a value held by one node only.
    if (this.follower.ackedSeq < this.termStartSeq) return new KvError('not_ready', `the follower has not confirmed entries up to ${this.termStartSeq} yet: not serving reads until it has them`);
    const sinceMs = nowMs - this.leaseFromMs;
    if (sinceMs < this.opts.readLeaseMs) return undefined;
    const since = Number.isFinite(sinceMs) ? `for ${Math.round(sinceMs)} ms` : 'yet';
    return new KvError('not_ready', `leader has had no acknowledgement from its follower ${since}: it cannot be sure it still leads, so it serves no reads until it hears from it`);
  }

  get serving(): boolean {
    return this.state === 'serving';
  }

  get fenced(): boolean {
    return this.state === 'fenced';
  }

  get commitMode(): CommitMode {
    return this.mode;
  }

  get status() {
    return {
      state: this.state,
      epoch: this.epoch,
      commitMode: this.mode,
      lastSeq: this.log.lastSeq,
      committedSeq: this.log.appliedSeq,
      persistedSeq: this.persistedSeq,
      messagesInFlight: this.inFlight.length,
      storageError: this.storageError ?? null,
      queue: { entries: this.log.queuedEntries, bytes: this.log.queuedBytes },
      counts: { ...this.counts },
    };
  }
}

/** A planned command that needs no entry of its own: its refusal, or the first answer of its Idempotency-Key. */
function settled(p: Planned): CommandResult {
  if ('refused' in p) return p;
  if ('replay' in p) return p.replay;
  throw new Error('core invariant: a sequenced command answered before its entry');
}

/**
 * A waiting write that will not be answered: indeterminate (`unknown` says why), unless it holds
 * refusals only. Those sequenced nothing and are definite, though the state they were decided on
 * did not commit in time.
 */
function waiterFailure(w: Waiter, unknown: string): LeaderEffect {
  if (w.firstSeq > 0 || w.plan.some((p) => 'replay' in p)) return { type: 'fail', id: w.id, code: 'replication_timeout', message: unknown };
  return { type: 'fail', id: w.id, code: 'no_replica', message: `the state this write was refused on (through seq ${w.lastSeq}) did not commit on both nodes in time; nothing was applied` };
}

function fail(id: number, err: KvError): LeaderEffect {
  return { type: 'fail', id, code: err.code, message: err.message };
}
