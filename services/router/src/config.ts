import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BATCH_ENTRIES_MAX, BODY_BYTES_MAX, envInt, envOptionalString, envPort, envUrl, parseEnv } from '@shardkv/common';
import { z } from 'zod';

import type { ShardAddress } from './control/records';
import type { RateLimits } from './rate-limit';

export type { ShardAddress };

const url = z.url().transform((u) => u.replace(/\/+$/, ''));
const shardListSchema = z
  .array(z.object({ id: z.string().regex(/^[A-Za-z0-9._-]+$/), leader: url, follower: url }))
  .min(1)
  .refine((l) => new Set(l.map((s) => s.id)).size === l.length, 'shard ids must be unique');

const schema = z.object({
  HOST: z.string().default('127.0.0.1'),
  PORT: envPort(5000),
  /** The gRPC service (grpc/): a port, or `off`. Unset: PORT + 100 (5100 beside 5000; 0 beside 0). */
  GRPC_PORT: z.preprocess((v) => (v === '' ? undefined : v), z.union([z.literal('off'), z.coerce.number().int().min(0).max(65535)]).optional()),
  /** The largest gRPC answer the router sends (an MGet of big values); a larger one fails with RESOURCE_EXHAUSTED. */
  GRPC_SEND_MESSAGE_BYTES_MAX: envInt(64 * 1024 * 1024, 1024 * 1024, 1024 * 1024 * 1024),
  /** Calls in flight on one gRPC (HTTP/2) connection; a client opens more connections or waits. */
  GRPC_CONCURRENT_STREAMS_MAX: envInt(1000, 1, 100_000),
  /** On SIGTERM, calls in flight get this long to be answered before the gRPC server closes them. */
  GRPC_SHUTDOWN_GRACE_MS: envInt(2000, 0, 60_000),
  /** `shard-0=http://leader:5001,http://follower:6001;shard-1=...` (wins over SHARDS_FILE). */
  SHARDS: envOptionalString(),
  /** A JSON file: `[{"id","leader","follower"}, ...]`. */
  SHARDS_FILE: envOptionalString(),
  /** Without SHARDS or SHARDS_FILE: this many shards on 127.0.0.1, leaders 5001+i, followers 6001+i. */
  SHARD_COUNT: envInt(3, 1, 1000),
  UPSTREAM_TIMEOUT_MS: envInt(5000, 1),
  STATUS_TIMEOUT_MS: envInt(1000, 1),
  UPSTREAM_CONNECTIONS: envInt(64, 1, 10_000),
  CLUSTER_TOKEN: envOptionalString(),
  /** Bearer token of /admin/*; the cluster token when unset. */
  ADMIN_TOKEN: envOptionalString(),
  /** The embedded control plane's directory (shard map, each shard's epoch, roles, in-sync flag). */
  DATA_DIR: envOptionalString(),
  /** This router's name in the coordinator election and /status. */
  ROUTER_ID: z.string().regex(/^[A-Za-z0-9._-]+$/).optional(),
  /** Where other processes reach this router (nodes report shard events here when it coordinates). */
  ROUTER_URL: envUrl().optional(),
  /** Source address of this router's connections to nodes (the fault harness gives each process its own). */
  SOURCE_ADDRESS: envOptionalString(),
  /** `http://h1:2379,http://h2:2379,...`: the control plane on etcd; unset: embedded (one router). */
  ETCD_ENDPOINTS: envOptionalString(),
  CLUSTER_ID: z.string().regex(/^[A-Za-z0-9._-]+$/).default('shardkv'),
  /** Every key of this cluster in etcd lives under it; default `/shardkv/<CLUSTER_ID>/`. */
  ETCD_PREFIX: envOptionalString(),
  /** The coordinator's lease in etcd (whole seconds): a dead coordinator is replaced about this long after it died. */
  COORDINATOR_LEASE_TTL_S: envInt(2, 1, 60),
  ETCD_CALL_TIMEOUT_MS: envInt(1000, 50, 60_000),
  /** A full re-read of the control plane this often, besides the watch. */
  CONTROL_RESYNC_INTERVAL_MS: envInt(2000, 100),
  /** A router waiting to become coordinator re-reads the election this often. */
  COORDINATOR_POLL_MS: envInt(200, 10),
  /** A new coordinator does not declare a leader down that it has never seen answer before this. */
  COORDINATOR_STARTUP_GRACE_MS: envInt(5000, 0),
  HEALTH_INTERVAL_MS: envInt(200, 10),
  HEALTH_TIMEOUT_MS: envInt(300, 10),
  HEALTH_FAILURES: envInt(3, 1),
  /** Deadline of one configuration push; pushes hold the shard's decision lock, so it is short. */
  CONFIG_PUSH_TIMEOUT_MS: envInt(1000, 10),
  MIN_INSYNC_REPLICAS: envInt(1, 1, 2),
  /** Coalesced batches per shard in flight at once (see batcher.ts). One measured best here: the
   * bigger batches cost the leader and follower fewer HTTP rounds and commits than overlap saves. */
  BATCH_IN_FLIGHT_MAX: envInt(1, 1, 64),
  /** Estimated bytes of keys and values per coalesced batch. Half the shard's body limit, because
   * re-encoding can lengthen a value (JSON escapes) and one more item may always join. */
  BATCH_BYTES_MAX: envInt(512 * 1024, 1024, BODY_BYTES_MAX / 2),
  /** Single-key requests waiting per shard (and kind: reads, writes) before 503 router_busy. */
  BATCH_QUEUE_MAX: envInt(10_000, 1),
  /** Bulk load (POST /load, see load.ts): chunks of one shard in flight for one request. */
  LOAD_REQUEST_IN_FLIGHT_MAX: envInt(1, 1, 16),
  /** Chunks of one shard in flight across every /load request (each leader queues at most REPLICATION_QUEUE_ENTRIES_MAX). */
  LOAD_SHARD_IN_FLIGHT_MAX: envInt(4, 1, 64),
  /** Chunks of one shard built and waiting per request before the router stops reading its body. */
  LOAD_QUEUED_MAX: envInt(1, 0, 64),
  /** A chunk's definite, transient failures (no replica, queue full, ...) are sent again for this long. */
  LOAD_RETRY_WINDOW_MS: envInt(5000, 0),
  /** Resharding: the longest the moving slots stay frozen at a cutover before it is abandoned and tried again. */
  MIGRATION_FREEZE_MAX_MS: envInt(1000, 50, 60_000),
  /** A tail round this small means the new owner is close enough behind its source to freeze. */
  MIGRATION_CUTOVER_LAG_ENTRIES: envInt(2000, 1),
  /** How long the router sends a request again while its key's slot is frozen or has just moved (more than the freeze). */
  CUTOVER_WAIT_MS: envInt(3000, 0, 60_000),
  /** Fault-harness failpoint: the cutover holds the slots frozen this much longer (0: never; not for production). */
  MIGRATION_FAILPOINT_FROZEN_PAUSE_MS: envInt(0, 0, 60_000),
  /** Per-client rate limit of the public data API, cluster-wide: requests one client may make per window (0: no limit, the default). */
  RATE_LIMIT_REQUESTS: envInt(0, 0, 1_000_000_000),
  /** The rate limit's fixed window. */
  RATE_LIMIT_WINDOW_MS: envInt(1000, 100, 3_600_000),
  /** Routers the cluster-wide limit is split over: each enforces RATE_LIMIT_REQUESTS / RATE_LIMIT_ROUTERS, rounded down. */
  RATE_LIMIT_ROUTERS: envInt(1, 1, 1000),
});

export type RouterConfig = ReturnType<typeof loadConfig>;

export function loadConfig(env: NodeJS.ProcessEnv = process.env) {
  const c = parseEnv(schema, env);
  return {
    host: c.HOST,
    port: c.PORT,
    grpc: grpcOptions(c),
    shards: shardList(c),
    upstreamTimeoutMs: c.UPSTREAM_TIMEOUT_MS,
    statusTimeoutMs: c.STATUS_TIMEOUT_MS,
    configPushTimeoutMs: c.CONFIG_PUSH_TIMEOUT_MS,
    upstreamConnections: c.UPSTREAM_CONNECTIONS,
    clusterToken: c.CLUSTER_TOKEN,
    adminToken: c.ADMIN_TOKEN ?? c.CLUSTER_TOKEN,
    dataDir: resolve(c.DATA_DIR ?? join('data', 'router')),
    self: { id: c.ROUTER_ID ?? `router-${c.PORT}`, url: c.ROUTER_URL ?? `http://${c.HOST === '0.0.0.0' ? '127.0.0.1' : c.HOST}:${c.PORT}` },
    sourceAddress: c.SOURCE_ADDRESS,
    etcd: c.ETCD_ENDPOINTS === undefined ? undefined : etcdOptions(c),
    coordinator: {
      healthIntervalMs: c.HEALTH_INTERVAL_MS,
      healthTimeoutMs: c.HEALTH_TIMEOUT_MS,
      healthFailures: c.HEALTH_FAILURES,
      minInsync: c.MIN_INSYNC_REPLICAS as 1 | 2,
      startupGraceMs: c.COORDINATOR_STARTUP_GRACE_MS,
    },
    batching: {
      entriesMax: BATCH_ENTRIES_MAX,
      bytesMax: c.BATCH_BYTES_MAX,
      inFlightMax: c.BATCH_IN_FLIGHT_MAX,
      queueMax: c.BATCH_QUEUE_MAX,
      timeoutMs: c.UPSTREAM_TIMEOUT_MS,
    },
    load: {
      requestInFlightMax: c.LOAD_REQUEST_IN_FLIGHT_MAX,
      shardInFlightMax: c.LOAD_SHARD_IN_FLIGHT_MAX,
      queuedMax: c.LOAD_QUEUED_MAX,
      retryWindowMs: c.LOAD_RETRY_WINDOW_MS,
      retryBackoffMinMs: 50,
      retryBackoffMaxMs: 500,
    },
    migration: {
      freezeMaxMs: c.MIGRATION_FREEZE_MAX_MS,
      cutoverLagEntriesMax: c.MIGRATION_CUTOVER_LAG_ENTRIES,
      tailRoundsMax: 20,
      retryBackoffMs: 1000,
      pollMs: 200,
      failpointFrozenPauseMs: c.MIGRATION_FAILPOINT_FROZEN_PAUSE_MS,
    },
    cutoverWaitMs: c.CUTOVER_WAIT_MS,
    rateLimit: rateLimits(c),
    nodeName: 'router',
  };
}

/** Undefined when off. Each router enforces its share, so that N routers together allow at most the configured limit. */
function rateLimits(c: z.infer<typeof schema>): RateLimits | undefined {
  if (c.RATE_LIMIT_REQUESTS === 0) return undefined;
  const share = Math.floor(c.RATE_LIMIT_REQUESTS / c.RATE_LIMIT_ROUTERS);
  if (share < 1) throw new Error(`RATE_LIMIT_REQUESTS (${c.RATE_LIMIT_REQUESTS}) is less than RATE_LIMIT_ROUTERS (${c.RATE_LIMIT_ROUTERS}): each router would allow no request at all`);
  return { requestsPerWindow: share, windowMs: c.RATE_LIMIT_WINDOW_MS };
}

/** The gRPC server's address and limits, or undefined when GRPC_PORT=off. Requests are held to the HTTP API's body limit. */
function grpcOptions(c: z.infer<typeof schema>) {
  if (c.GRPC_PORT === 'off') return undefined;
  const port = c.GRPC_PORT ?? (c.PORT === 0 ? 0 : c.PORT + 100);
  if (port > 65535) throw new Error(`invalid configuration:\n  GRPC_PORT: PORT ${c.PORT} + 100 is not a port; set GRPC_PORT (or GRPC_PORT=off)`);
  if (port !== 0 && port === c.PORT) throw new Error(`invalid configuration:\n  GRPC_PORT: ${port} is PORT too; HTTP and gRPC need a port each`);
  return {
    host: c.HOST,
    port,
    receiveMessageBytesMax: BODY_BYTES_MAX,
    sendMessageBytesMax: c.GRPC_SEND_MESSAGE_BYTES_MAX,
    concurrentStreamsMax: c.GRPC_CONCURRENT_STREAMS_MAX,
    shutdownGraceMs: c.GRPC_SHUTDOWN_GRACE_MS,
  };
}

export type GrpcOptions = NonNullable<ReturnType<typeof grpcOptions>>;

function etcdOptions(c: z.infer<typeof schema>) {
  const endpoints = c.ETCD_ENDPOINTS!.split(',').map((e) => e.trim()).filter((e) => e !== '');
  const bad = endpoints.find((e) => !/^https?:\/\/[^/]+$/.test(e));
  if (endpoints.length === 0 || bad !== undefined) throw new Error(`invalid ETCD_ENDPOINTS "${c.ETCD_ENDPOINTS}": a comma-separated list of http://host:port`);
  const prefix = c.ETCD_PREFIX ?? `/shardkv/${c.CLUSTER_ID}/`;
  return { endpoints, prefix: prefix.endsWith('/') ? prefix : `${prefix}/`, leaseTtlS: c.COORDINATOR_LEASE_TTL_S, callTimeoutMs: c.ETCD_CALL_TIMEOUT_MS, campaignPollMs: c.COORDINATOR_POLL_MS, resyncIntervalMs: c.CONTROL_RESYNC_INTERVAL_MS };
}

function shardList(c: z.infer<typeof schema>): ShardAddress[] {
  if (c.SHARDS !== undefined) return parseShardList(c.SHARDS);
  if (c.SHARDS_FILE !== undefined) return shardListSchema.parse(JSON.parse(readFileSync(c.SHARDS_FILE, 'utf8')));
  return defaultShards(c.SHARD_COUNT);
}

export function defaultShards(count: number, host = '127.0.0.1'): ShardAddress[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `shard-${i}`,
    leader: `http://${host}:${5001 + i}`,
    follower: `http://${host}:${6001 + i}`,
  }));
}

export function parseShardList(spec: string): ShardAddress[] {
  const shards = spec
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      const [id, urls] = s.split('=', 2);
      const [leader, follower] = (urls ?? '').split(',');
      return { id: id?.trim(), leader: leader?.trim(), follower: follower?.trim() };
    });
  const parsed = shardListSchema.safeParse(shards);
  if (!parsed.success) throw new Error(`invalid SHARDS "${spec}": ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}
