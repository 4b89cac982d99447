import { KvError, LineScanner, LOAD_CHUNK_BYTES_MAX, LOAD_CHUNK_ENTRIES_MAX, LOAD_MALFORMED_LISTED_MAX, type ChunkAnswer, type ErrorCode, type LoadAnswer, type LoadChunkReport, type Outcome } from '@shardkv/common';

/**
 * The router's half of `POST /load`: the body's lines are validated as they stream in (the
 * common LineScanner; no string is decoded), placed by shard (md5 of the key bytes on the same
 * ring as every other request) and copied into one chunk per shard; a full chunk goes to that
 * shard's leader (`POST /internal/load`) as bytes, in the same line format. Bounded everywhere:
 * a chunk by entries and bytes, the chunks of a shard in flight (per request, and across every
 * request through the shard's gate), the chunks built and waiting (past it the body is not read
 * any further until one returns). Memory per request is those chunks, whatever the body size.
 *
 * A later duplicate wins: a shard's chunks leave in the order they were built, and one that holds
 * a key of a chunk still in flight waits for it (keys are compared by their ring point: two keys
 * on one point only wait for each other). A chunk whose entries fail definitely and transiently
 * (no replica, queue full, a leader not ready yet, a shard without a reachable leader) is sent
 * again, only those entries, with backoff, within `retryWindowMs`; anything indeterminate (a
 * timeout, a lost connection, a leader replaced while it waited) is reported as such, never sent
 * again. Every entry ends up loaded or reported failed, with its line number.
 */
export interface LoadLimits {
  /** Chunks of one shard in flight for one request. More than one only pays when leaders are idle between chunks. */
  requestInFlightMax: number;
  /** Chunks of one shard in flight across every /load request: the leader's replication queue is bounded. */
  shardInFlightMax: number;
  /** Chunks of one shard built and waiting to leave; past it the router reads no more of the body. */
  queuedMax: number;
  /** How long a chunk's definite, transient failures are sent again before they are reported. */
  retryWindowMs: number;
  retryBackoffMinMs: number;
  retryBackoffMaxMs: number;
}

export interface LoadPlacement {
  /** Where a key (its bytes) falls on the ring; equal keys fall on equal points. */
  pointOf(key: Uint8Array): number;
  shardAt(point: number): string;
}

/** Sends one chunk (`entries` lines) to the shard's leader. */
export type ChunkSend = (shardId: string, chunk: Buffer, entries: number) => Promise<ChunkAnswer>;

/** Definite failures that a short wait can cure: sending the entries again is safe and may succeed. */
const RETRYABLE: ReadonlySet<string> = new Set<ErrorCode>(['no_replica', 'replication_queue_full', 'not_ready', 'shard_unavailable', 'storage_unavailable']);

/** A shard's chunks in flight across every request. FIFO: a freed slot goes to the longest waiter. */
export class ShardGate {
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly max: number) {}

  tryAcquire(): boolean {
    if (this.inFlight >= this.max || this.waiting.length > 0) return false;
    this.inFlight += 1;
    return true;
  }

  /** Resolves once the caller holds a slot (handed over by `release`). */
  acquire(): Promise<void> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next === undefined) this.inFlight -= 1;
    else next();
  }
}

/** One gate per shard, shared by every /load request of this router. */
export class ShardGates {
  private readonly gates = new Map<string, ShardGate>();

  constructor(private readonly max: number) {}

  get(shardId: string): ShardGate {
    let g = this.gates.get(shardId);
    if (g === undefined) this.gates.set(shardId, (g = new ShardGate(this.max)));
    return g;
  }
}

/** Entries for one shard in the load format, copied out of the body as they are read. */
class Chunk {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  /** Where each entry starts in `buf` (it ends where the next starts, or at `used`). */
  readonly starts: number[] = [];
  readonly lines: number[] = [];
  readonly points: number[] = [];

  constructor(readonly shard: string) {}

  get entries(): number {
    return this.starts.length;
  }

  get full(): boolean {
    return this.starts.length >= LOAD_CHUNK_ENTRIES_MAX || this.used >= LOAD_CHUNK_BYTES_MAX;
  }

  /** Appends `src[start, end)` and a newline: key, separator, value (a CR before the newline is not kept). */
  add(src: Buffer, start: number, end: number, lineNo: number, point: number): void {
    const need = this.used + (end - start) + 1;
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, this.used);
      this.buf = grown;
    }
    this.starts.push(this.used);
    this.lines.push(lineNo);
    this.points.push(point);
    this.used += src.copy(this.buf, this.used, start, end);
    this.buf[this.used++] = 10;
  }

  body(): Buffer {
    return this.buf.subarray(0, this.used);
  }

  /** Just these entries (indexes, ascending), for a retry. */
  subset(indexes: readonly number[]): Buffer {
    return Buffer.concat(indexes.map((i) => this.buf.subarray(this.starts[i]!, i + 1 < this.starts.length ? this.starts[i + 1]! : this.used)));
  }
}

/** One shard's chunks within one request. */
interface Lane {
  shard: string;
  gate: ShardGate;
  building: Chunk;
  queue: Chunk[];
  inFlight: number;
  /** Ring points of the entries in flight (only tracked when more than one chunk may be). */
  points: Set<number>;
  waitingForGate: boolean;
}

/**
 * One /load request: `push` the body's blocks as they arrive (awaiting what it returns, which
 * is the backpressure), then `finish` for the answer. `abandon` when the body cannot be read to
 * its end: chunks not sent yet are dropped (never applied), those in flight are waited for.
 */
export class BulkLoad {
  private readonly scanner: LineScanner;
  private readonly lanes = new Map<string, Lane>();
  private readonly reports: LoadChunkReport[] = [];
  private readonly malformedLines: LoadAnswer['malformedLines'] = [];
  private malformed = 0;
  private entries = 0;
  private readonly firstLine: number;
  /** Chunks built and not yet reported. */
  private outstanding = 0;
  private wakeReader: (() => void) | undefined;
  private wakeFinish: (() => void) | undefined;

  constructor(
    private readonly placement: LoadPlacement,
    private readonly send: ChunkSend,
    private readonly gates: ShardGates,
    private readonly limits: LoadLimits,
    firstLine = 1,
    private readonly now: () => number = Date.now,
  ) {
    this.firstLine = firstLine;
    this.scanner = new LineScanner(
      {
        entry: (buf, start, keyEnd, valueEnd, lineNo) => this.entry(buf, start, keyEnd, valueEnd, lineNo),
        malformed: (lineNo, reason) => {
          this.malformed += 1;
          if (this.malformedLines.length < LOAD_MALFORMED_LISTED_MAX) this.malformedLines.push({ line: lineNo, code: 'invalid_line', message: reason });
        },
      },
      firstLine,
    );
  }

  /** Reads a block of the body; when it returns a promise, read nothing more until it resolves. */
  push(block: Buffer): Promise<void> | undefined {
    this.scanner.push(block);
    return this.backlogged() ? new Promise<void>((resolve) => (this.wakeReader = resolve)) : undefined;
  }

  async finish(): Promise<LoadAnswer> {
    this.scanner.end();
    for (const lane of this.lanes.values()) this.close(lane);
    if (this.outstanding > 0) await new Promise<void>((resolve) => (this.wakeFinish = resolve));
    return this.answer();
  }

  async abandon(): Promise<void> {
    for (const lane of this.lanes.values()) {
      this.outstanding -= lane.queue.length;
      lane.queue = [];
    }
    if (this.outstanding > 0) await new Promise<void>((resolve) => (this.wakeFinish = resolve));
  }

  private entry(buf: Buffer, start: number, keyEnd: number, valueEnd: number, lineNo: number): void {
    this.entries += 1;
    const point = this.placement.pointOf(buf.subarray(start, keyEnd));
    const lane = this.lane(this.placement.shardAt(point));
    lane.building.add(buf, start, valueEnd, lineNo, point);
    if (lane.building.full) this.close(lane);
  }

  private lane(shard: string): Lane {
    let lane = this.lanes.get(shard);
    if (lane === undefined) {
      lane = { shard, gate: this.gates.get(shard), building: new Chunk(shard), queue: [], inFlight: 0, points: new Set(), waitingForGate: false };
      this.lanes.set(shard, lane);
    }
    return lane;
  }

  /** The chunk being built leaves the building slot and queues. */
  private close(lane: Lane): void {
    if (lane.building.entries === 0) return;
    lane.queue.push(lane.building);
    lane.building = new Chunk(lane.shard);
    this.outstanding += 1;
    this.pump(lane);
  }

  private backlogged(): boolean {
    for (const lane of this.lanes.values()) if (lane.queue.length > this.limits.queuedMax) return true;
    return false;
  }

  /** Sends the lane's chunks in order while its limits, its gate and the keys in flight allow. */
  private pump(lane: Lane): void {
    while (lane.queue.length > 0 && lane.inFlight < this.limits.requestInFlightMax && !lane.waitingForGate) {
      if (lane.inFlight > 0 && lane.queue[0]!.points.some((p) => lane.points.has(p))) return;
      if (!lane.gate.tryAcquire()) {
        lane.waitingForGate = true;
        void lane.gate.acquire().then(() => {
          lane.waitingForGate = false;
          // The queue is empty only if the request was abandoned meanwhile.
          if (lane.queue.length > 0) this.start(lane);
          else lane.gate.release();
          this.pump(lane);
        });
        return;
      }
      this.start(lane);
    }
  }

  /** The lane's next chunk leaves; the caller holds a slot of the shard's gate for it. */
  private start(lane: Lane): void {
    const chunk = lane.queue.shift()!;
    lane.inFlight += 1;
    const tracked = this.limits.requestInFlightMax > 1;
    if (tracked) for (const p of chunk.points) lane.points.add(p);
    void this.run(chunk).then(() => {
      lane.inFlight -= 1;
      if (tracked) for (const p of chunk.points) lane.points.delete(p);
      lane.gate.release();
      this.outstanding -= 1;
      this.pump(lane);
      this.settled();
    });
  }

  /** A chunk has been reported and the next ones sent: the reader may go on, or the answer be built. */
  private settled(): void {
    if (this.wakeReader !== undefined && !this.backlogged()) {
      const wake = this.wakeReader;
      this.wakeReader = undefined;
      wake();
    }
    if (this.outstanding === 0 && this.wakeFinish !== undefined) this.wakeFinish();
  }

  /** One chunk to its leader, and again for what failed definitely and transiently; never throws. */
  private async run(chunk: Chunk): Promise<void> {
    const report: LoadChunkReport = { shard: chunk.shard, firstLine: chunk.lines[0]!, lastLine: chunk.lines[chunk.entries - 1]!, entries: chunk.entries, loaded: 0, attempts: 0, failures: [] };
    this.reports.push(report);
    const fail = (code: string, message: string, outcome: Outcome, indexes: readonly number[]) => addFailure(report, code, message, outcome, indexes.map((i) => chunk.lines[i]!));
    const giveUpAt = this.now() + this.limits.retryWindowMs;
    let backoffMs = this.limits.retryBackoffMinMs;
    let sent: number[] = range(chunk.entries);
    let body = chunk.body();
    for (;;) {
      report.attempts += 1;
      const mayRetry = this.now() + backoffMs < giveUpAt;
      let again: number[] = [];
      try {
        const answer = await this.send(chunk.shard, body, sent.length);
        report.loaded += answer.loaded;
        const retryable: Array<{ f: ChunkAnswer['failed'][number]; indexes: number[] }> = [];
        for (const f of answer.failed) {
          const indexes = sent.slice(f.first, f.first + f.count);
          if (mayRetry && f.outcome === 'definite' && RETRYABLE.has(f.code)) retryable.push({ f, indexes });
          else fail(f.code, f.message, f.outcome, indexes);
        }
        // Sent again only if nothing after them was loaded: a later entry of the chunk may hold
        // the same key, and must stay the later write. (Refusals before sequencing fail a tail.)
        const tail = retryable.flatMap((r) => r.indexes);
        if (isSuffix(tail, sent)) again = tail;
        else for (const r of retryable) fail(r.f.code, r.f.message, r.f.outcome, r.indexes);
      } catch (err) {
        const e = err instanceof KvError ? err : new KvError('internal', err instanceof Error ? err.message : String(err));
        if (mayRetry && e.outcome === 'definite' && RETRYABLE.has(e.code)) again = sent;
        else fail(e.code, e.message, e.outcome, sent);
      }
      if (again.length === 0) return;
      await new Promise((r) => setTimeout(r, backoffMs));
      backoffMs = Math.min(backoffMs * 2, this.limits.retryBackoffMaxMs);
      sent = again;
      body = chunk.subset(again);
    }
  }

  private answer(): LoadAnswer {
    const chunks = this.reports.sort((a, b) => a.firstLine - b.firstLine);
    let loaded = 0;
    let indeterminate = 0;
    for (const c of chunks) {
      loaded += c.loaded;
      for (const f of c.failures) {
        f.lines.sort((a, b) => a - b);
        if (f.outcome === 'indeterminate') indeterminate += f.lines.length;
      }
    }
    return {
      lines: this.scanner.nextLine - this.firstLine,
      entries: this.entries,
      loaded,
      failed: this.entries - loaded,
      indeterminate,
      malformed: this.malformed,
      malformedLines: this.malformedLines,
      chunks,
    };
  }
}

/** Entries that failed alike are listed together: one failure per code and outcome in a chunk. */
function addFailure(report: LoadChunkReport, code: string, message: string, outcome: Outcome, lines: number[]): void {
  const same = report.failures.find((f) => f.code === code && f.outcome === outcome);
  if (same === undefined) report.failures.push({ code, message, outcome, lines });
  else same.lines.push(...lines);
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Whether `part` (ascending) is the tail of `all` (ascending). */
function isSuffix(part: readonly number[], all: readonly number[]): boolean {
  const offset = all.length - part.length;
  return part.every((x, i) => all[offset + i] === x);
}
