import { decodeStored } from '../stored';
import type { Command } from './commands';

export interface ExpiryLimits {
  /** How often the leader sweeps (EXPIRY_SWEEP_INTERVAL_MS). */
  intervalMs: number;
  /** Keys examined per sweep, and expired keys deleted per sweep at most (EXPIRY_SWEEP_KEYS_MAX). */
  keysMax: number;
}

/** A bounded piece of a pass over the store in key order; `cursor` undefined: the pass is over. */
export type StoreScan = (cursor: string | undefined, max: number) => { pairs: Array<[string, string]>; cursor: string | undefined };

/**
 * How expired keys leave the store: only the leader deletes them, as ordinary replicated deletes,
 * the way a Redis replica never expires a key itself but waits for its primary's DEL. Reads
 * never return an expired value anyway (on either node, by its own clock); this reclaims space.
 *
 * Two ways in, both bounded per sweep: a read that found a key expired (lazy), and a pass over
 * the store in key order, `keysMax` keys per sweep. Each delete is conditional on the version
 * that expired (`expiredVersion`), so a key written again meanwhile is never deleted.
 */
export class ExpirySweeper {
  private cursor: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private sweeping = false;
  /** Expired keys seen by reads, by the version that expired: deleted by the next sweep. */
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly scan: StoreScan,
    private readonly write: (commands: Command[]) => Promise<unknown>,
    private readonly limits: ExpiryLimits,
    private readonly onExpired: (keys: number) => void = () => {},
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sweep(), this.limits.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** A read found `key` expired at `version`. */
  expired(key: string, version: number): void {
    if (this.seen.size < this.limits.keysMax) this.seen.set(key, version);
  }

  /** One sweep: the keys reads found expired, then the next piece of the pass. Resolves when its deletes are answered. */
  async sweep(nowMs = Date.now()): Promise<number> {
    if (this.sweeping) return 0;
    this.sweeping = true;
    try {
      const deletes: Command[] = [...this.seen].map(([key, version]) => ({ op: 'del', key, expiredVersion: version }));
      this.seen.clear();
      const { pairs, cursor } = this.scan(this.cursor, this.limits.keysMax);
      this.cursor = cursor;
      for (const [key, stored] of pairs) {
        const v = decodeStored(stored);
        if (v.expiresAtMs !== undefined && v.expiresAtMs <= nowMs && deletes.length < 2 * this.limits.keysMax) deletes.push({ op: 'del', key, expiredVersion: v.version });
      }
      if (deletes.length === 0) return 0;
      const results = (await this.write(deletes).catch(() => [])) as Array<{ refused?: unknown }>;
      const done = results.filter((r) => !('refused' in r)).length;
      this.onExpired(done);
      return done;
    } finally {
      this.sweeping = false;
    }
  }
}
