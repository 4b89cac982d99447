import { KvError } from '@shardkv/common';

export interface BatcherLimits {
  /** Items in one batch (the shard's batch limit). */
  entriesMax: number;
  /** A batch closes once its items' estimated size reaches this; an item larger than it travels alone. */
  bytesMax: number;
  /** Batches of one shard in flight at once; what arrives meanwhile waits and leaves in the next one. */
  inFlightMax: number;
  /** Items waiting for a free slot; beyond this a request is refused (503, nothing was sent). */
  queueMax: number;
  /** An item's whole time in the router, waiting included, unless its caller gives an earlier deadline; its batch gets what is left of it. */
  timeoutMs: number;
}

interface Pending<I, R> {
  item: I;
  bytes: number;
  /** When the item's time is up (Date.now() ms): its request's deadline, kept by a resent item. */
  deadlineAtMs: number;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

/**
 * Coalesces concurrent single-key requests for one shard into batches, so that a burst costs the
 * router one upstream request, and the leader one HTTP request and one replication round, instead
 * of one each per client request. Nothing waits on a timer: while fewer than `inFlightMax`
 * batches are out, whatever arrived in this event-loop turn leaves at once; otherwise it leaves
 * when a batch returns. So a lone request pays no delay, and under load batches grow by
 * themselves to what arrives during one round trip (Nagle without the delay, as in group commit).
 *
 * `send` gets the items in arrival order and answers one result per item, or rejects for all.
 */
export class Batcher<I, R> {
  private queue: Array<Pending<I, R>> = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly send: (items: I[], timeoutMs: number) => Promise<R[]>,
    private readonly limits: BatcherLimits,
    private readonly sizeOf: (item: I) => number = () => 0,
    private readonly now: () => number = Date.now,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  get batchesInFlight(): number {
    return this.inFlight;
  }

  /**
   * `deadlineAtMs`: when the client's request must be answered (Date.now() ms); a resent one keeps
   * its first deadline. Default: `timeoutMs` from now.
   */
  submit(item: I, deadlineAtMs: number = this.now() + this.limits.timeoutMs): Promise<R> {
    if (this.queue.length >= this.limits.queueMax) {
      return Promise.reject(new KvError('router_busy', `${this.queue.length} requests already wait for this shard; nothing was sent, retry later`));
    }
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, bytes: this.sizeOf(item), deadlineAtMs, resolve, reject });
      this.schedule();
    });
  }

  /** After the current event-loop turn: requests read from the sockets in the same turn go together. */
  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.limits.inFlightMax || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.queue.length > 0 && this.inFlight < this.limits.inFlightMax) {
      // The batch gets the time its most urgent item has left, so none is kept past its own
      // deadline (a resent item keeps its first one, so queue order is not deadline order); an
      // item whose deadline has passed is not sent.
      const now = this.now();
      const leftOf = (p: Pending<I, R>) => p.deadlineAtMs - now;
      const batch: Array<Pending<I, R>> = [];
      for (const p of this.take()) {
        if (leftOf(p) > 0) batch.push(p);
        else p.reject(new KvError('shard_unavailable', 'its deadline passed while it waited in the router for the shard\'s earlier requests; nothing was sent'));
      }
      if (batch.length === 0) continue;
      this.inFlight += 1;
      this.dispatch(batch, Math.min(...batch.map(leftOf)));
    }
  }

  private take(): Array<Pending<I, R>> {
    let n = 0;
    let bytes = 0;
    while (n < this.queue.length && n < this.limits.entriesMax && (n === 0 || bytes + this.queue[n]!.bytes <= this.limits.bytesMax)) {
      bytes += this.queue[n]!.bytes;
      n += 1;
    }
    return this.queue.splice(0, n);
  }

  private dispatch(batch: Array<Pending<I, R>>, timeoutMs: number): void {
    let sent: Promise<R[]>;
    try {
      sent = this.send(batch.map((p) => p.item), timeoutMs);
    } catch (err) {
      sent = Promise.reject(err);
    }
    sent
      .then((results) => {
        if (results.length !== batch.length) throw new Error(`batch of ${batch.length} answered with ${results.length} results`);
        batch.forEach((p, i) => p.resolve(results[i]!));
      })
      .catch((err: unknown) => batch.forEach((p) => p.reject(err)))
      .finally(() => {
        this.inFlight -= 1;
        this.schedule();
      });
  }
}
