/**
 * The messages of proto/shardkv.proto as the router sees them (see LOAD_OPTIONS in proto.ts), and
 * the service's methods as request/response pairs. `KvRpcs` is what ties the handlers
 * (service.ts) and the client helper (client.ts) to the .proto: adding an rpc is one entry here,
 * its two messages, and one handler; the server refuses to start when the .proto and the
 * handlers disagree.
 */
export type ConsistencyName = 'CONSISTENCY_LINEARIZABLE' | 'CONSISTENCY_STALE';
export type OutcomeName = 'OUTCOME_UNSPECIFIED' | 'OUTCOME_DEFINITE' | 'OUTCOME_INDETERMINATE';

export interface GetRequest {
  key: string;
  consistency?: ConsistencyName;
}
export interface GetResponse {
  key: string;
  value: string;
  version: number;
  ttlMs: number;
}

export interface PutRequest {
  key: string;
  value: string;
  ifVersion?: number;
  ttlMs?: number;
  ifAbsent?: boolean;
  idempotencyKey?: string;
}
export interface PutResponse {
  key: string;
  seq: number;
  version: number;
}

export interface IncrRequest {
  key: string;
  by?: number;
  idempotencyKey?: string;
}
export interface IncrResponse {
  key: string;
  value: string;
  seq: number;
  version: number;
}

export interface DeleteRequest {
  key: string;
  ifVersion?: number;
  idempotencyKey?: string;
}
export interface DeleteResponse {
  key: string;
  deleted: boolean;
  seq: number;
}

export interface EntryError {
  code: string;
  message: string;
  outcome: OutcomeName;
}

export interface MGetRequest {
  keys: string[];
}
export interface MGetResult {
  key: string;
  ok: boolean;
  value?: string;
  error?: EntryError | null;
}
export interface MGetResponse {
  results: MGetResult[];
  ok: number;
  failed: number;
}

export interface PutEntry {
  key: string;
  value: string;
  ttlMs?: number;
  ifVersion?: number;
  ifAbsent?: boolean;
}
export interface MPutRequest {
  entries: PutEntry[];
  idempotencyKey?: string;
}
export interface MPutResult {
  key: string;
  ok: boolean;
  seq?: number;
  error?: EntryError | null;
}
export interface MPutResponse {
  results: MPutResult[];
  ok: number;
  failed: number;
}

export interface KvRpcs {
  Get: { request: GetRequest; response: GetResponse };
  Put: { request: PutRequest; response: PutResponse };
  Delete: { request: DeleteRequest; response: DeleteResponse };
  MGet: { request: MGetRequest; response: MGetResponse };
  MPut: { request: MPutRequest; response: MPutResponse };
  Incr: { request: IncrRequest; response: IncrResponse };
}

export type KvMethod = keyof KvRpcs;
