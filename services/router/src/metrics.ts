import { httpMetrics, LATENCY_BUCKETS_SECONDS } from '@shardkv/common';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ShardTable } from './control/shard-table';
import type { Coordinator } from './coordinator';
import type { MigrationDriver } from './migration/driver';

/**
 * Every metric the router exposes on GET /metrics, defined once here (one registry per process; main.ts adds the default process metrics).
 * Labels stay low-cardinality: shard ids, route patterns, operations, error codes and reasons
 * from fixed sets, never a key.
 */
export const registry = new Registry();

export const http = httpMetrics('shardkv_router', registry);

/** The public operations, by the route that serves each. */
export const OPERATIONS: Readonly<Record<string, string>> = { '/get': 'get', '/put': 'put', '/delete': 'delete', '/incr': 'incr', '/mget': 'mget', '/mput': 'mput', '/load': 'load' };

/*
 * Counters and histograms whose label values are a fixed set start with every series at 0: one
 * that appears only with its first event makes that event invisible to rate() and increase()
 * (they need a sample before the change), and failovers or decisions are often single events.
 */

export const operationSeconds = new Histogram({
  name: 'shardkv_router_operation_duration_seconds',
  help: 'Time from a client request arriving to its answer, over HTTP or gRPC, by operation (get, put, delete, incr, mget, mput, load)',
  labelNames: ['op'],
  buckets: LATENCY_BUCKETS_SECONDS,
  registers: [registry],
});
for (const op of Object.values(OPERATIONS)) operationSeconds.zero({ op });

/** gRPC calls answered, by method (the .proto's rpcs) and status name (OK, NOT_FOUND, ...): both fixed sets. */
export const grpcRequests = new Counter({
  name: 'shardkv_router_grpc_requests_total',
  help: 'gRPC calls answered, by method and status code name',
  labelNames: ['method', 'code'],
  registers: [registry],
});

export const batchEntries = new Histogram({
  name: 'shardkv_router_batch_entries',
  help: 'Single-key requests coalesced into one internal batch, per shard and kind (read, write)',
  labelNames: ['shard', 'kind'],
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000],
  registers: [registry],
});

export const retries = new Counter({
  name: 'shardkv_router_retries_total',
  help: 'Requests sent again: refused by a node that did nothing (cause leader_refused) or by a slot moving (cause slot_moved), by code',
  labelNames: ['cause', 'code'],
  registers: [registry],
});

export const rateLimited = new Counter({
  name: 'shardkv_router_rate_limited_total',
  help: 'Requests refused with 429 rate_limited by the per-client limit, by operation and how the client was named (token, address); never by client',
  labelNames: ['op', 'client'],
  registers: [registry],
});

export const decisions = new Counter({
  name: 'shardkv_router_coordinator_decisions_total',
  help: 'Shard configuration decisions this router tried to record as coordinator, by reason and outcome (committed, refused, unknown)',
  labelNames: ['reason', 'outcome'],
  registers: [registry],
});

/** The shards of the router's map, for the failover series that start at 0 (set by watchRouter). */
let mapShards: () => Iterable<string> = () => [];

export const failovers = new Counter({
  name: 'shardkv_router_failovers_total',
  help: 'Decisions this router committed that gave a shard a new leader, by reason',
  labelNames: ['shard', 'reason'],
  registers: [registry],
  // The shards are known only from the map, which changes: each scrape adds the series of a new shard.
  collect() {
    for (const shard of mapShards()) for (const reason of FAILOVER_REASONS) this.inc({ shard, reason }, 0);
  },
});

/** The `why` of each coordinator decision (coordinator.ts) as a label; anything new counts as `other` until named here. */
const REASONS: Readonly<Record<string, string>> = {
  follower_lost: 'follower_lost',
  follower_caught_up: 'follower_caught_up',
  'leader down: promoting its in-sync follower': 'leader_down',
  'failover (admin)': 'admin_failover',
  'unsafe failover (admin)': 'admin_unsafe_failover',
};

export function decisionReason(why: string): string {
  return REASONS[why] ?? 'other';
}

/** How coordinator.ts's commit ends: recorded, refused by the control plane, or not confirmed. */
export type DecisionOutcome = 'committed' | 'refused' | 'unknown';
const DECISION_OUTCOMES: readonly DecisionOutcome[] = ['committed', 'refused', 'unknown'];
for (const reason of [...new Set([...Object.values(REASONS), 'other'])]) for (const outcome of DECISION_OUTCOMES) decisions.inc({ reason, outcome }, 0);

/** The reasons of the decisions that can give a shard a new leader (a follower's loss or return cannot). */
const FAILOVER_REASONS = ['leader_down', 'admin_failover', 'admin_unsafe_failover'].map((r) => {
  if (!Object.values(REASONS).includes(r)) throw new Error(`failover reason ${r} is not a decision reason`);
  return r;
});

/** Queue depth per shard and kind, read at scrape time from the batchers app.ts creates. */
export type QueueDepths = () => Iterable<{ shard: string; kind: 'read' | 'write'; depth: number; inFlight: number }>;

/**
 * Gauges read at scrape time from the router's state, so nothing on the request path updates
 * them: the map, the shards' epochs, whether this router coordinates, the migration.
 */
export function watchRouter(table: ShardTable, coordinator: Coordinator, migrations: MigrationDriver): void {
  mapShards = () => table.all.map((s) => s.id);
  gauge('shardkv_router_map_version', 'Version of the shard map this router routes by', [], (g) => g.set(table.map.version));
  gauge('shardkv_router_coordinator', '1 while this router is the coordinator, else 0', [], (g) => g.set(coordinator.leading ? 1 : 0));
  gauge('shardkv_router_shard_epoch', 'Epoch of each shard in this router\'s map (each decision raises it)', ['shard'], (g) => {
    for (const s of table.all) g.set({ shard: s.id }, s.epoch);
  });
  gauge('shardkv_router_shard_in_sync', '1 while the shard\'s follower is in the in-sync set, else 0', ['shard'], (g) => {
    for (const s of table.all) g.set({ shard: s.id }, s.inSync ? 1 : 0);
  });
  watchMigration(migrations);
}

const MIGRATION_STATES = ['none', 'copying', 'frozen', 'cleanup'] as const;

function watchMigration(migrations: MigrationDriver): void {
  gauge('shardkv_router_migration_state', '1 for the state of the migration in the map (none, copying, frozen, cleanup)', ['state'], (g) => {
    const state = migrations.view()?.state ?? 'none';
    for (const s of MIGRATION_STATES) g.set({ state: s }, s === state ? 1 : 0);
  });
  gauge('shardkv_router_migration_slots_moving', 'Slots the migration in progress moves (0: none)', [], (g) => g.set(migrations.view()?.slotsMoving ?? 0));
  // Progress is known only on the router that drives the migration (the coordinator).
  gauge('shardkv_router_migration_keys_copied', 'Keys copied so far by the migration this router drives', [], (g) => g.set(migrations.view()?.progress?.keysCopied ?? 0));
  gauge('shardkv_router_migration_entries_tailed', 'Log entries tailed so far by the migration this router drives', [], (g) => g.set(migrations.view()?.progress?.entriesTailed ?? 0));
  gauge('shardkv_router_migration_lag_entries', 'Entries the last tail round applied (the targets\' distance behind their sources)', [], (g) => g.set(migrations.view()?.progress?.lagEntries ?? 0));
}

export function watchQueues(depths: QueueDepths): void {
  gauge('shardkv_router_batch_queue_depth', 'Single-key requests waiting in the router for their shard\'s next batch', ['shard', 'kind'], (g) => {
    for (const q of depths()) g.set({ shard: q.shard, kind: q.kind }, q.depth);
  });
  gauge('shardkv_router_batches_in_flight', 'Coalesced batches out to each shard\'s leader', ['shard', 'kind'], (g) => {
    for (const q of depths()) g.set({ shard: q.shard, kind: q.kind }, q.inFlight);
  });
}

function gauge(name: string, help: string, labelNames: string[], read: (g: Gauge) => void): void {
  // Defined again by a second app in one process (tests): the newest sources win.
  registry.removeSingleMetric(name);
  // A gauge read at scrape time starts empty each time: a shard gone from the map leaves no series.
  new Gauge({ name, help, labelNames, registers: [registry], collect() { this.reset(); read(this); } });
}
