import { BODY_BYTES_MAX, envInt, envOptionalString, envPort, envUrl, parseEnv } from '@shardkv/common';
import { join, resolve } from 'node:path';
import { z } from 'zod';

const MiB = 1024 * 1024;

const schema = z
  .object({
    SHARD_ID: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" or "-"'),
    ROLE: z.enum(['leader', 'follower']),
    NODE_NAME: envOptionalString(),
    HOST: z.string().default('127.0.0.1'),
    PORT: envPort(5001),
    LEADER_URL: envUrl().optional(),
    FOLLOWER_URL: envUrl().optional(),
    CLUSTER_TOKEN: envOptionalString(),
    /** Every router (any may coordinate), comma-separated; without any the node keeps its ROLE for good. */
    COORDINATOR_URLS: envOptionalString(),
    /** The single-router form of COORDINATOR_URLS, kept for older set-ups. */
    COORDINATOR_URL: envUrl().optional(),
    /** Source address of this node's outgoing connections (the fault harness gives each process its own). */
    SOURCE_ADDRESS: envOptionalString(),
    /**
     * A leader whose follower is in sync serves reads only this long after the follower last
     * acknowledged it (counted from when that message was sent), and a promoted follower starts
     * serving only this long after it last acknowledged the old leader: so the two never serve
     * at once, even when a router with an old map still reads from the old one.
     */
    READ_LEASE_MS: envInt(1000, 10),
    REPORT_RETRY_MS: envInt(1000, 10),
    /**
     * A starting leader that has not reached its follower yet waits this long before it reports
     * it lost (serving nothing meanwhile): at a cold start the follower may simply not be up yet.
     * Like COORDINATOR_STARTUP_GRACE_MS on the router.
     */
    FOLLOWER_STARTUP_GRACE_MS: envInt(5000, 0),
    STORAGE: z.enum(['lmdb', 'memory']).default('lmdb'),
    DATA_DIR: envOptionalString(),
    /** Stored in every data directory: a directory from another cluster is refused at start-up. */
    CLUSTER_ID: z.string().min(1).default('shardkv'),
    LOG_WINDOW_ENTRIES: envInt(100_000, 1),
    LOG_WINDOW_BYTES: envInt(64 * MiB, 1024),
    REPLICATION_TIMEOUT_MS: envInt(2000, 1),
    HEARTBEAT_INTERVAL_MS: envInt(250, 10),
    RETRY_BACKOFF_MS: envInt(250, 10),
    REPLICATION_QUEUE_ENTRIES_MAX: envInt(10_000, 1),
    REPLICATION_QUEUE_BYTES_MAX: envInt(64 * MiB, BODY_BYTES_MAX),
    REPLICATION_BATCH_ENTRIES_MAX: envInt(1000, 1),
    REPLICATION_BATCH_BYTES_MAX: envInt(4 * MiB, 1024),
    /** Replication messages in flight at once, in order on one connection (pipelining). */
    REPLICATION_IN_FLIGHT_MAX: envInt(4, 1),
    /** The leader deletes expired keys: this often, at most this many per sweep (a pass over the store goes this many keys at a time). */
    EXPIRY_SWEEP_INTERVAL_MS: envInt(250, 10),
    EXPIRY_SWEEP_KEYS_MAX: envInt(1000, 1),
    /** A write's Idempotency-Key is remembered this long: a retry within it gets the first answer. */
    IDEMPOTENCY_WINDOW_MS: envInt(10 * 60_000, 1000),
  })
  .refine((c) => c.ROLE !== 'leader' || c.FOLLOWER_URL !== undefined, { message: 'a leader needs FOLLOWER_URL', path: ['FOLLOWER_URL'] })
  .refine((c) => c.ROLE !== 'follower' || c.LEADER_URL !== undefined, { message: 'a follower needs LEADER_URL', path: ['LEADER_URL'] });

export type ShardConfig = ReturnType<typeof loadConfig>;

export function loadConfig(env: NodeJS.ProcessEnv = process.env) {
  const c = parseEnv(schema, env);
  const nodeName = c.NODE_NAME ?? `${c.SHARD_ID}-${c.ROLE}`;
  return {
    shardId: c.SHARD_ID,
    role: c.ROLE,
    nodeName,
    host: c.HOST,
    port: c.PORT,
    peerUrl: (c.ROLE === 'leader' ? c.FOLLOWER_URL : c.LEADER_URL)!,
    clusterToken: c.CLUSTER_TOKEN,
    coordinatorUrls: coordinatorUrls(c.COORDINATOR_URLS, c.COORDINATOR_URL),
    sourceAddress: c.SOURCE_ADDRESS,
    readLeaseMs: c.READ_LEASE_MS,
    reportRetryMs: c.REPORT_RETRY_MS,
    followerStartupGraceMs: c.FOLLOWER_STARTUP_GRACE_MS,
    storage: c.STORAGE,
    dataDir: resolve(c.DATA_DIR ?? join('data', nodeName)),
    clusterId: c.CLUSTER_ID,
    logWindow: { entriesMax: c.LOG_WINDOW_ENTRIES, bytesMax: c.LOG_WINDOW_BYTES },
    replicationTimeoutMs: c.REPLICATION_TIMEOUT_MS,
    heartbeatIntervalMs: c.HEARTBEAT_INTERVAL_MS,
    retryBackoffMs: c.RETRY_BACKOFF_MS,
    inFlightMessagesMax: c.REPLICATION_IN_FLIGHT_MAX,
    expiry: { intervalMs: c.EXPIRY_SWEEP_INTERVAL_MS, keysMax: c.EXPIRY_SWEEP_KEYS_MAX },
    idempotencyWindowMs: c.IDEMPOTENCY_WINDOW_MS,
    limits: {
      queueEntriesMax: c.REPLICATION_QUEUE_ENTRIES_MAX,
      queueBytesMax: c.REPLICATION_QUEUE_BYTES_MAX,
      batchEntriesMax: c.REPLICATION_BATCH_ENTRIES_MAX,
      batchBytesMax: c.REPLICATION_BATCH_BYTES_MAX,
    },
    /** One replication request: a full batch, or one entry of the largest public body, plus framing. */
    internalBodyBytesMax: c.REPLICATION_BATCH_BYTES_MAX + BODY_BYTES_MAX + 64 * 1024,
  };
}

function coordinatorUrls(list: string | undefined, single: string | undefined): string[] {
  const urls = (list ?? single ?? '').split(',').map((u) => u.trim().replace(/\/+$/, '')).filter((u) => u !== '');
  const bad = urls.find((u) => !/^https?:\/\/[^/]+$/.test(u));
  if (bad !== undefined) throw new Error(`invalid COORDINATOR_URLS entry "${bad}": expected http://host:port`);
  return urls;
}
