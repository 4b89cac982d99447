import { performance } from 'node:perf_hooks';
import { httpMetrics, LATENCY_BUCKETS_SECONDS } from '@shardkv/common';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ShardNode } from './node';
import type { CatchUpResult } from './replication/transfer';
import type { KvStore } from './store';

/**
 * Every metric a shard node exposes on GET /metrics, defined once here (one registry per
 * process). The replication core (leader-core.ts) knows nothing of them: the shells count what
 * they perform (leader.ts: messages sent and acknowledged, its store's commits; follower.ts: its
 * commits and catch-ups), and the gauges are read from the node at scrape time.
 */
export const registry = new Registry();

export const http = httpMetrics('shardkv_node', registry);

export const commitSeconds = new Histogram({
  name: 'shardkv_node_store_commit_duration_seconds',
  help: 'One store transaction of replicated entries, fsync included, by the role that committed it',
  labelNames: ['role'],
  buckets: LATENCY_BUCKETS_SECONDS,
  registers: [registry],
});

export const replication = {
  messagesSent: new Counter({ name: 'shardkv_node_replication_messages_sent_total', help: 'Replication messages (batches and heartbeats) this leader sent', registers: [registry] }),
  bytesSent: new Counter({ name: 'shardkv_node_replication_sent_bytes_total', help: 'Bytes of replication messages this leader sent', registers: [registry] }),
  entriesSent: new Counter({ name: 'shardkv_node_replication_entries_sent_total', help: 'Log entries this leader sent (resends included)', registers: [registry] }),
  messagesAcked: new Counter({ name: 'shardkv_node_replication_messages_acked_total', help: 'Replication messages the follower answered', registers: [registry] }),
  bytesAcked: new Counter({ name: 'shardkv_node_replication_acked_bytes_total', help: 'Bytes of replication messages the follower answered', registers: [registry] }),
  sendFailures: new Counter({ name: 'shardkv_node_replication_send_failures_total', help: 'Replication messages that failed (no answer, refused, timed out)', registers: [registry] }),
};

export const catchUps = new Counter({
  name: 'shardkv_node_catchups_total',
  help: 'Catch-ups this node took from its peer, by kind (none, tail, full) and role (a follower behind, a leader reconciling at start)',
  labelNames: ['kind', 'role'],
  registers: [registry],
});

export const catchUpSeconds = new Histogram({
  name: 'shardkv_node_catchup_duration_seconds',
  help: 'Time one catch-up took, transfer and install, by kind (none, tail, full)',
  labelNames: ['kind'],
  buckets: [0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60, 300],
  registers: [registry],
});

export const catchUpFailures = new Counter({ name: 'shardkv_node_catchup_failures_total', help: 'Catch-up attempts that failed and were tried again', labelNames: ['role'], registers: [registry] });
export const expiredKeys = new Counter({ name: 'shardkv_node_expired_keys_total', help: 'Expired keys this leader deleted (replicated deletes, from its sweep and from reads that found them expired)', registers: [registry] });

// Catch-ups are single events: every series starts at 0, so that rate() and increase() see the
// first one (a series that appears with it has no sample before the change). A follower
// restarted behind its leader catches up before its first scrape: its new process's 1 still reads
// as an increase over the 0 its old process exposed.
const CATCH_UP_KINDS: ReadonlyArray<CatchUpResult['kind']> = ['none', 'tail', 'full'];
const CATCH_UP_ROLES = ['leader', 'follower'] as const;
for (const kind of CATCH_UP_KINDS) {
  catchUpSeconds.zero({ kind });
  for (const role of CATCH_UP_ROLES) catchUps.inc({ kind, role }, 0);
}
for (const role of CATCH_UP_ROLES) catchUpFailures.inc({ role }, 0);
// The same for commits by role: after a failover, the first commits in a node's new role would
// otherwise make a series that rate() cannot see (the fsync panel showed nothing for them).
for (const role of CATCH_UP_ROLES) commitSeconds.zero({ role });

/** One catch-up that ended (transfer.ts's result), counted by kind and by the role that took it. */
export function recordCatchUp(role: 'leader' | 'follower', kind: CatchUpResult['kind'], startMs: number): void {
  catchUps.inc({ kind, role });
  catchUpSeconds.observe({ kind }, secondsSince(startMs));
}

/** Seconds since `startMs` (performance.now()). */
export function secondsSince(startMs: number): number {
  return (performance.now() - startMs) / 1000;
}

const ROLES = ['leader', 'follower', 'standby'] as const;

/** Gauges read from the node and its store at scrape time: nothing on the write path sets them. */
export function watchNode(node: ShardNode, store: KvStore): void {
  gauge('shardkv_node_role', '1 for the role this node plays now (leader, follower, standby)', ['role'], (g) => {
    for (const r of ROLES) g.set({ role: r }, node.role.kind === r ? 1 : 0);
  });
  gauge('shardkv_node_epoch', 'The highest configuration epoch this node has accepted', [], (g) => g.set(node.epoch));
  gauge('shardkv_node_seq', 'Last committed entry (a leader: durable on both nodes or committed alone; a follower: applied)', [], (g) => g.set(committedSeq(node, store)));
  gauge('shardkv_node_store_keys', 'Keys in this node\'s store', [], (g) => g.set(store.size));
  gauge('shardkv_node_store_bytes', 'Bytes this node\'s store uses on disk (0 with STORAGE=memory)', [], (g) => g.set(store.diskBytes ?? 0));
  watchReplication(node, store);
}

function committedSeq(node: ShardNode, store: KvStore): number {
  const role = node.role;
  return role.kind === 'leader' ? role.leader.status.committedSeq : store.seq;
}

/**
 * Lag as each role sees it: a leader, entries its follower has not acknowledged and the age of
 * the oldest of them; a follower, entries behind the leader's last message and, when behind,
 * the time since that message. Queue and in-flight figures are the leader's (0 elsewhere).
 */
function watchReplication(node: ShardNode, store: KvStore): void {
  gauge('shardkv_node_replication_lag_entries', 'Entries sequenced by the leader that the follower does not hold yet', [], (g) => {
    const role = node.role;
    if (role.kind === 'leader') g.set(Math.max(0, role.leader.status.lastSeq - role.leader.follower.ackedSeq));
    else if (role.kind === 'follower') g.set(Math.max(0, role.follower.status.leaderLastSeq - store.seq));
  });
  gauge('shardkv_node_replication_lag_seconds', 'Age of the oldest entry the follower has not acknowledged (leader), or time since the leader\'s last message while behind it (follower)', [], (g) => {
    const role = node.role;
    if (role.kind === 'leader') g.set(role.leader.replicationLagMs / 1000);
    else if (role.kind === 'follower') g.set(followerLagMs(role.follower.status, store.seq) / 1000);
  });
  gauge('shardkv_node_replication_queue_entries', 'Uncommitted writes the leader holds (REPLICATION_QUEUE_ENTRIES_MAX refuses beyond)', [], (g) => {
    const role = node.role;
    g.set(role.kind === 'leader' ? role.leader.status.queue.entries : 0);
  });
  gauge('shardkv_node_replication_queue_bytes', 'Bytes of the uncommitted writes the leader holds', [], (g) => {
    const role = node.role;
    g.set(role.kind === 'leader' ? role.leader.status.queue.bytes : 0);
  });
  gauge('shardkv_node_replication_messages_in_flight', 'Replication messages out to the follower now', [], (g) => {
    const role = node.role;
    g.set(role.kind === 'leader' ? role.leader.status.messagesInFlight : 0);
  });
}

function followerLagMs(status: { leaderLastSeq: number; lastContactMsAgo: number | null }, seq: number): number {
  return status.leaderLastSeq > seq && status.lastContactMsAgo !== null ? status.lastContactMsAgo : 0;
}

function gauge(name: string, help: string, labelNames: string[], read: (g: Gauge) => void): void {
  // Defined again by a second node in one process (tests): the newest sources win.
  registry.removeSingleMetric(name);
  new Gauge({ name, help, labelNames, registers: [registry], collect() { this.reset(); read(this); } });
}
