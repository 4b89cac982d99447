import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import type { ErrorCode, KvError, Outcome } from '@shardkv/common';

/**
 * Every code of the error table (packages/common/src/errors.ts) as a gRPC status. `satisfies
 * Record<ErrorCode, status>` makes the table total: a code added to the error table does not
 * compile until it is mapped here. The rules:
 *  - the request can never succeed as sent (bad input, over a limit): INVALID_ARGUMENT;
 *  - nothing was applied and a retry may succeed (503s, refusals by a node that is not the one
 *    to ask): UNAVAILABLE, the status gRPC retry policies treat as safe to retry;
 *  - the outcome is unknown (504s, `indeterminate` in the table): DEADLINE_EXCEEDED, which gRPC
 *    documents as "may have completed" for a call that changes state, so a client that retries
 *    on UNAVAILABLE alone never sends an indeterminate write twice;
 *  - a conflict with the cluster's state that a retry does not fix: FAILED_PRECONDITION.
 * The code and outcome themselves travel in the trailing metadata (see grpcError).
 */
export const GRPC_STATUS = {
  invalid_json: status.INVALID_ARGUMENT,
  invalid_body: status.INVALID_ARGUMENT,
  invalid_key: status.INVALID_ARGUMENT,
  invalid_value: status.INVALID_ARGUMENT,
  bad_request: status.INVALID_ARGUMENT,
  invalid_line: status.INVALID_ARGUMENT,
  unauthorized: status.UNAUTHENTICATED,
  key_not_found: status.NOT_FOUND,
  // HTTP routing only; a gRPC client meets grpc-js's own UNIMPLEMENTED for an unknown method.
  route_not_found: status.UNIMPLEMENTED,
  method_not_allowed: status.UNIMPLEMENTED,
  not_leader: status.UNAVAILABLE,
  wrong_shard: status.UNAVAILABLE,
  migration_in_progress: status.FAILED_PRECONDITION,
  resharding_unsupported: status.FAILED_PRECONDITION,
  stale_epoch: status.UNAVAILABLE,
  not_follower: status.UNAVAILABLE,
  not_coordinator: status.UNAVAILABLE,
  stale_coordinator: status.UNAVAILABLE,
  length_required: status.INVALID_ARGUMENT,
  // Limits of the API: the same request can never succeed, unlike an exhausted quota.
  body_too_large: status.INVALID_ARGUMENT,
  batch_too_large: status.INVALID_ARGUMENT,
  value_too_large: status.INVALID_ARGUMENT,
  headers_too_large: status.INVALID_ARGUMENT,
  unsupported_media_type: status.INVALID_ARGUMENT,
  internal: status.INTERNAL,
  no_replica: status.UNAVAILABLE,
  replication_queue_full: status.UNAVAILABLE,
  not_ready: status.UNAVAILABLE,
  storage_unavailable: status.UNAVAILABLE,
  shard_unavailable: status.UNAVAILABLE,
  migrating: status.UNAVAILABLE,
  router_busy: status.UNAVAILABLE,
  coordinator_unavailable: status.UNAVAILABLE,
  replication_timeout: status.DEADLINE_EXCEEDED,
  upstream_timeout: status.DEADLINE_EXCEEDED,
  upstream_connection_lost: status.DEADLINE_EXCEEDED,
  leader_changed: status.DEADLINE_EXCEEDED,
  decision_unknown: status.DEADLINE_EXCEEDED,
  // A counter that cannot be incremented: the key's state, not the request, is wrong.
  not_an_integer: status.FAILED_PRECONDITION,
  out_of_range: status.FAILED_PRECONDITION,
  // A compare-and-set that lost: a concurrency conflict, retried after a fresh read (gRPC's ABORTED).
  version_mismatch: status.ABORTED,
  rate_limited: status.RESOURCE_EXHAUSTED,
} as const satisfies Record<ErrorCode, status>;

/** Trailing metadata of every failed call: the error table's code, and whether it may have been applied. */
export const ERROR_CODE_METADATA = 'shardkv-error-code';
export const OUTCOME_METADATA = 'shardkv-outcome';

/** The status a KvError ends its call with: the table's status, the message, the code and outcome in the trailers. */
export function grpcError(err: KvError): Partial<StatusObject> {
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_METADATA, err.code);
  metadata.set(OUTCOME_METADATA, err.outcome satisfies Outcome);
  return { code: GRPC_STATUS[err.code], details: err.message, metadata };
}

/** `NOT_FOUND` for 5: the label the metrics use. */
export function statusName(code: status): string {
  return status[code] ?? String(code);
}
