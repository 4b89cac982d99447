import { performance } from 'node:perf_hooks';
import { circuitBreaker, ConsecutiveBreaker, ConstantBackoff, ExponentialBackoff, handleWhen, retry, type IBackoff } from 'cockatiel';
import { Etcd3, EtcdLeaseInvalidError, GRPCUnavailableError, isRecoverableError, type Lease, type Namespace, type Watcher } from 'etcd3';
import type { Logger } from '@shardkv/common';
import type { Candidate, Leadership, MetaStore, PutResult, Versioned } from './meta-store';
import { COORDINATOR_KEY, coordinatorInfoSchema, type CoordinatorInfo } from './records';

export interface EtcdStoreOptions {
  endpoints: string[];
  /** Every key of this cluster lives under it, e.g. `/shardkv/<cluster id>/`. */
  prefix: string;
  /** The coordinator lease. etcd counts TTLs in whole seconds. */
  leaseTtlS: number;
  /** Deadline of one etcd call. */
  callTimeoutMs: number;
  /** How often a waiting candidate re-reads the coordinator key (besides the watch). */
  campaignPollMs: number;
  /** A full re-read this often, in case a watch event was missed. */
  resyncIntervalMs: number;
}

/**
 * The control plane on etcd (the `etcd3` client). Every conditional write is one transaction
 * comparing the key's mod_revision with what the writer read and, when fenced, the coordinator
 * key's mod_revision with the one its holder wrote: a deposed coordinator can never commit.
 *
 * The election is a key under a lease rather than etcd3's Election helper, whose observer can
 * name the wrong leader for ~0.5 s; the lease is kept alive by our own loop, and leadership ends
 * on our clock (`validUntil`) before the lease can have expired on the server, instead of at the
 * client's `lost` event (which fires at about twice the TTL).
 */
export class EtcdMetaStore implements MetaStore {
  readonly kind = 'etcd';
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  private readonly leaderships = new Set<EtcdLeadership>();

  constructor(
    private readonly opts: EtcdStoreOptions,
    private readonly log: Logger,
  ) {
    this.client = new Etcd3({
      hosts: opts.endpoints,
      dialTimeout: opts.callTimeoutMs,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + opts.callTimeoutMs }),
      faultHandling: {
        // The default breaker opens on any error for 5 s, so every call fails for 6-7 s after the
        // etcd leader dies. This one opens only on UNAVAILABLE (that host is down) and tries it
        // again after 300 ms; the global retry moves a failed call to another member once.
        host: () => circuitBreaker(handleWhen((e) => e instanceof GRPCUnavailableError), { halfOpenAfter: 300, breaker: new ConsecutiveBreaker(2) }),
        global: retry(handleWhen(isRecoverableError), { maxAttempts: 2, backoff: new ConstantBackoff(50) }),
        // The default reconnects a broken watch after up to 30 s; routers must learn changes fast.
        // etcd3 types this as a backoff instance but calls `.next()` on it, as on this factory.
        watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }) as unknown as IBackoff<unknown>,
      },
    });
    this.ns = this.client.namespace(opts.prefix);
  }

  async list(): Promise<Map<string, Versioned>> {
    const res = await this.ns.getAll().prefix('').exec();
    // Some of etcd3's builders strip the namespace from returned keys and some do not.
    const relative = (key: string) => (key.startsWith(this.opts.prefix) ? key.slice(this.opts.prefix.length) : key);
    return new Map(res.kvs.map((kv) => [relative(kv.key.toString('utf8')), { value: kv.value.toString('utf8'), revision: Number(kv.mod_revision) }]));
  }

  async put(key: string, value: string, expectedRevision: number, fence?: Leadership): Promise<PutResult> {
    if (fence !== undefined && !fence.valid()) return { ok: false, reason: 'deposed' };
    let txn = this.ns.if(key, 'Mod', '==', expectedRevision);
    if (fence !== undefined) txn = txn.and(COORDINATOR_KEY, 'Mod', '==', fence.generation);
    const res = await txn.then(this.ns.put(key).value(value)).commit();
    if (res.succeeded) return { ok: true, revision: Number(res.header.revision) };
    if (fence !== undefined && (await this.coordinator())?.generation !== fence.generation) return { ok: false, reason: 'deposed' };
    return { ok: false, reason: 'conflict' };
  }

  watch(onChange: () => void): () => void {
    let closed = false;
    let watcher: Watcher | undefined;
    let scheduled = false;
    const changed = () => {
      if (scheduled || closed) return;
      scheduled = true;
      queueMicrotask(() => {
        scheduled = false;
        if (!closed) onChange();
      });
    };
    const open = () => {
      this.ns
        .watch()
        .prefix('')
        .create()
        .then((w) => {
          if (closed) return void w.cancel();
          watcher = w;
          // A reconnect may have missed events, and a compacted revision cancels the watch:
          // either way the caller re-reads everything, which is a handful of keys.
          w.on('put', changed).on('delete', changed).on('connected', changed);
          w.on('error', (err) => {
            this.log.warn({ err: err.message }, 'etcd watch failed; re-reading and watching again');
            void w.cancel();
            changed();
            setTimeout(open, 100);
          });
        })
        .catch((err: unknown) => {
          if (closed) return;
          this.log.warn({ err: String(err) }, 'etcd watch could not start; retrying');
          setTimeout(open, 500);
        });
    };
    open();
    const resync = setInterval(changed, this.opts.resyncIntervalMs);
    return () => {
      closed = true;
      clearInterval(resync);
      void watcher?.cancel();
    };
  }

  async campaign(candidate: Candidate, signal: AbortSignal): Promise<Leadership> {
    for (;;) {
      signal.throwIfAborted();
      const elected = await this.tryAcquire(candidate).catch((err: unknown) => {
        this.log.warn({ err: String(err) }, 'coordinator election: etcd call failed; retrying');
        return undefined;
      });
      if (elected !== undefined) return elected;
      await abortableSleep(this.opts.campaignPollMs, signal);
    }
  }

  /** One attempt: only when nobody holds the key, grant a lease and create the key under it. */
  private async tryAcquire(candidate: Candidate): Promise<EtcdLeadership | undefined> {
    if ((await this.coordinator()) !== undefined) return undefined;
    const sentAtMs = performance.now();
    const lease = this.ns.lease(this.opts.leaseTtlS, { autoKeepAlive: false });
    const leaseId = await lease.grant();
    const info = JSON.stringify({ id: candidate.id, url: candidate.url, since: Date.now() });
    const res = await this.ns.if(COORDINATOR_KEY, 'Create', '==', 0).then(this.ns.put(COORDINATOR_KEY).value(info).lease(leaseId)).commit();
    if (!res.succeeded) {
      await lease.revoke().catch(() => {});
      return undefined;
    }
    const leadership = new EtcdLeadership(Number(res.header.revision), lease, sentAtMs, this.opts, this.log);
    this.leaderships.add(leadership);
    void leadership.ended.then(() => this.leaderships.delete(leadership));
    return leadership;
  }

  async coordinator(): Promise<CoordinatorInfo | undefined> {
    const res = await this.ns.get(COORDINATOR_KEY).exec();
    const kv = res.kvs[0];
    if (kv === undefined) return undefined;
    return { ...coordinatorInfoSchema.parse(JSON.parse(kv.value.toString('utf8'))), generation: Number(kv.mod_revision) };
  }

  async close(): Promise<void> {
    // client.close() alone would leave a held lease alive on the server until its TTL.
    await Promise.all([...this.leaderships].map((l) => l.resign()));
    this.client.close();
  }
}

/**
 * A held election: keeps its lease alive with one keepalive per third of the TTL, and counts as
 * valid until the TTL, minus a margin for clock drift, after the last keepalive that succeeded was
 * *sent* (the server restarted its countdown no earlier than that). Times are performance.now():
 * a wall-clock step (NTP) must not stretch a lease.
 */
class EtcdLeadership implements Leadership {
  private validUntilMs: number;
  private active = true;
  private timer: NodeJS.Timeout | undefined;
  private end!: () => void;
  readonly ended = new Promise<void>((resolve) => (this.end = resolve));

  constructor(
    readonly generation: number,
    private readonly lease: Lease,
    grantSentAtMs: number,
    private readonly opts: EtcdStoreOptions,
    private readonly log: Logger,
  ) {
    this.validUntilMs = grantSentAtMs + this.ttlMs - this.marginMs;
    this.schedule(this.ttlMs / 3);
  }

  private get ttlMs(): number {
    return this.opts.leaseTtlS * 1000;
  }

  /** A quarter of the TTL: covers clock drift and the time between our check and the write landing. */
  private get marginMs(): number {
    return this.ttlMs / 4;
  }

  valid(): boolean {
    if (this.active && performance.now() >= this.validUntilMs) void this.stop('lease not renewed in time');
    return this.active;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => void this.keepalive(), delayMs);
  }

  /**
   * One keepalive, then the next a third of the TTL after this one was sent; a failed one is
   * tried again soon, with a deadline at the moment we would stop counting ourselves elected.
   */
  private async keepalive(): Promise<void> {
    if (!this.valid()) return;
    const sentAtMs = performance.now();
    let nextMs = RETRY_KEEPALIVE_MS;
    try {
      // gRPC takes a wall-clock deadline: the moment we would stop counting ourselves elected.
      const res = await this.lease.keepaliveOnce({ deadline: Date.now() + (this.validUntilMs - sentAtMs) });
      const ttlS = Math.min(this.opts.leaseTtlS, Number(res.TTL));
      if (this.active) this.validUntilMs = Math.max(this.validUntilMs, sentAtMs + ttlS * 1000 - this.marginMs);
      nextMs = Math.max(0, sentAtMs + this.ttlMs / 3 - performance.now());
    } catch (err) {
      // The server says the lease is gone: another router may hold the election already.
      if (err instanceof EtcdLeaseInvalidError) return void this.stop('the lease expired on the server');
      this.log.warn({ err: String(err) }, 'coordinator lease keepalive failed; retrying');
    }
    if (this.valid()) this.schedule(nextMs);
  }

  private stop(why: string): Promise<void> {
    if (!this.active) return Promise.resolve();
    this.active = false;
    clearTimeout(this.timer);
    // Resigning (this router stops, or steps down on purpose) is no fault; a lease lost is.
    this.log[why === 'resigned' ? 'info' : 'warn']({ generation: this.generation, why }, 'coordinator leadership ended');
    // Revoked rather than left to expire, so that a rival need not wait out the TTL if the
    // server still holds it; if etcd cannot be reached the lease expires there by itself.
    const revoked = this.lease.revoke({ deadline: Date.now() + this.opts.callTimeoutMs }).catch(() => {});
    this.end();
    return revoked;
  }

  async resign(): Promise<void> {
    await this.stop('resigned');
  }
}

/** How soon a failed keepalive is tried again. */
const RETRY_KEEPALIVE_MS = 100;

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
