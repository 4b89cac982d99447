/**
 * The one error table. Every failure the system reports has a stable `code` that clients match
 * on, an HTTP status, and an outcome:
 *  - `definite`: the request was not applied, retrying is safe;
 *  - `indeterminate`: the request may or may not have been applied (timeouts, lost connections),
 *    a client must read before it assumes either.
 * Client errors (4xx) are always definite.
 */
export type Outcome = 'definite' | 'indeterminate';

interface ErrorSpec {
  status: number;
  outcome: Outcome;
}

export const ERRORS = {
  invalid_json: { status: 400, outcome: 'definite' },
  invalid_body: { status: 400, outcome: 'definite' },
  invalid_key: { status: 400, outcome: 'definite' },
  invalid_value: { status: 400, outcome: 'definite' },
  bad_request: { status: 400, outcome: 'definite' },
  /** A bulk-load line that is not `<key> <value>` within the key and value rules (reported per line; the line is skipped). */
  invalid_line: { status: 400, outcome: 'definite' },
  unauthorized: { status: 401, outcome: 'definite' },
  key_not_found: { status: 404, outcome: 'definite' },
  route_not_found: { status: 404, outcome: 'definite' },
  method_not_allowed: { status: 405, outcome: 'definite' },
  not_leader: { status: 409, outcome: 'definite' },
  /** The key's slot is not this shard's (its map is newer than the sender's): re-read the map and send it to the owner named. */
  wrong_shard: { status: 409, outcome: 'definite' },
  /** `POST /admin/shards` or a removal while another migration runs: one at a time. */
  migration_in_progress: { status: 409, outcome: 'definite' },
  /** Resharding asked of a cluster whose map predates hash slots, or a change the map cannot take. */
  resharding_unsupported: { status: 409, outcome: 'definite' },
  /** `/incr` on a key whose value is not a decimal integer: nothing was applied. */
  not_an_integer: { status: 409, outcome: 'definite' },
  /** `/incr` would take the counter past the safe integers (|n| > 2^53 - 1): nothing was applied. */
  out_of_range: { status: 409, outcome: 'definite' },
  /** A conditional write (If-Match, If-None-Match: *, ifVersion) whose condition does not hold; `version` is the current one (null: absent). */
  version_mismatch: { status: 412, outcome: 'definite' },
  /** A message or configuration from an older epoch: its sender was replaced (fencing). */
  stale_epoch: { status: 409, outcome: 'definite' },
  /** Replication sent to a node that is not a follower now. */
  not_follower: { status: 409, outcome: 'definite' },
  /** A shard event or admin command sent to a router that is not the coordinator now (it names the one that is). */
  not_coordinator: { status: 409, outcome: 'definite' },
  /** A configuration from a coordinator older than one the node has already obeyed (a deposed coordinator). */
  stale_coordinator: { status: 409, outcome: 'definite' },
  /** A bulk load (`POST /load`) must declare its size, so an oversized one is refused before anything is loaded. */
  length_required: { status: 411, outcome: 'definite' },
  body_too_large: { status: 413, outcome: 'definite' },
  batch_too_large: { status: 413, outcome: 'definite' },
  value_too_large: { status: 413, outcome: 'definite' },
  headers_too_large: { status: 431, outcome: 'definite' },
  unsupported_media_type: { status: 415, outcome: 'definite' },
  /** The router's per-client rate limit (RATE_LIMIT_REQUESTS): refused before anything was read or sent; `Retry-After` says when to come back. */
  rate_limited: { status: 429, outcome: 'definite' },
  internal: { status: 500, outcome: 'indeterminate' },
  // 503: nothing was applied.
  no_replica: { status: 503, outcome: 'definite' },
  replication_queue_full: { status: 503, outcome: 'definite' },
  not_ready: { status: 503, outcome: 'definite' },
  /** The node's store refuses writes (disk full, I/O error); checked before anything is sequenced. */
  storage_unavailable: { status: 503, outcome: 'definite' },
  shard_unavailable: { status: 503, outcome: 'definite' },
  /** The key's slot is frozen for its cutover to another shard (well under a second): retry; the router does. */
  migrating: { status: 503, outcome: 'definite' },
  /** Too many requests already wait in the router for one shard; this one was not sent. */
  router_busy: { status: 503, outcome: 'definite' },
  /** The control plane could not record a decision (etcd unreachable, or the writer was deposed); nothing was decided. */
  coordinator_unavailable: { status: 503, outcome: 'definite' },
  // 504: the outcome is unknown.
  replication_timeout: { status: 504, outcome: 'indeterminate' },
  upstream_timeout: { status: 504, outcome: 'indeterminate' },
  upstream_connection_lost: { status: 504, outcome: 'indeterminate' },
  /** The request waited on a leader that the coordinator replaced meanwhile: it may have been applied. */
  leader_changed: { status: 504, outcome: 'indeterminate' },
  /** The control plane did not answer whether a decision was recorded (it may have been): re-read before assuming either. */
  decision_unknown: { status: 504, outcome: 'indeterminate' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export interface ErrorBody {
  error: { code: string; message: string; [extra: string]: unknown };
}

export class KvError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly outcome: Outcome;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'KvError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.outcome = ERRORS[code].outcome;
    this.details = details;
  }

  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message, ...this.details } };
  }
}

export function isKvError(err: unknown, code?: ErrorCode): err is KvError {
  return err instanceof KvError && (code === undefined || err.code === code);
}
