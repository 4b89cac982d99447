// The leader's replication lag in time: the age of the oldest entry the follower has not acknowledged.
import { AckClock } from './ack-clock';

describe('AckClock', () => {
  it('is 0 with nothing sent or everything acknowledged', () => {
    const c = new AckClock();
    expect(c.lagMs(100)).toBe(0);
    c.sent(5, 10);
    c.acked(5);
    expect(c.lagMs(100)).toBe(0);
  });

  it('ages from the first send of the oldest unacknowledged entry, resends included', () => {
    const c = new AckClock();
    c.sent(5, 10);
    c.sent(9, 20);
    c.sent(9, 40); // a resend of the same entries keeps the first time
    expect(c.lagMs(100)).toBe(90);
    c.acked(6); // 1..6 acknowledged: the oldest still waiting was sent with the message through 9
    expect(c.lagMs(100)).toBe(80);
    c.acked(9);
    expect(c.lagMs(100)).toBe(0);
  });

  it('keeps the oldest send when full, so a follower away for long shows its whole lag', () => {
    const c = new AckClock(2);
    c.sent(1, 0);
    c.sent(2, 10);
    c.sent(3, 20);
    expect(c.lagMs(100)).toBe(100);
  });

  it('ignores heartbeats that carry no entry past the last one sent', () => {
    const c = new AckClock();
    c.sent(4, 0);
    c.sent(4, 50); // heartbeat: toSeq = nextSeq - 1
    c.acked(4);
    expect(c.lagMs(60)).toBe(0);
  });
});
