/**
 * When the entries the follower has not acknowledged yet were first sent, so that replication
 * lag can be read in time as well as in entries: the age of the oldest unacknowledged entry. It
 * lives in the shell (leader.ts), fed from the core's `send` effects and the replies; the core
 * keeps no clock of its own for this.
 *
 * Only a message reaching past every earlier one is recorded (a resend after a failure keeps the
 * first send's time, which is the age that matters), and at most `sendsMax` at once: past that
 * (a follower away for long) the newest are not recorded, so the oldest's age stays right.
 */
export class AckClock {
  private readonly sends: Array<{ toSeq: number; atMs: number }> = [];

  constructor(private readonly sendsMax = 4096) {}

  sent(toSeq: number, atMs: number): void {
    const last = this.sends[this.sends.length - 1];
    if ((last !== undefined && toSeq <= last.toSeq) || this.sends.length >= this.sendsMax) return;
    this.sends.push({ toSeq, atMs });
  }

  /** The follower holds every entry through `seq`. */
  acked(seq: number): void {
    let n = 0;
    while (n < this.sends.length && this.sends[n]!.toSeq <= seq) n += 1;
    if (n > 0) this.sends.splice(0, n);
  }

  /** How long the oldest unacknowledged entry has waited (0: none waits). */
  lagMs(nowMs: number): number {
    const oldest = this.sends[0];
    return oldest === undefined ? 0 : Math.max(0, nowMs - oldest.atMs);
  }
}
