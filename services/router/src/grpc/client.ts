import { Client, credentials, Metadata, status, type MethodDefinition, type ServiceError } from '@grpc/grpc-js';
import type { GetResponse, IncrResponse, KvMethod, KvRpcs, MGetResponse, MPutResponse, PutEntry, PutRequest, PutResponse } from './messages';
import { loadKvDefinition, SERVICE_NAME } from './proto';
import { ERROR_CODE_METADATA, OUTCOME_METADATA } from './status';

export { status };
export type * from './messages';

export interface KvGrpcClientOptions {
  /** Each call's deadline unless the call gives its own. */
  deadlineMs?: number;
  /** The largest answer taken (the router's GRPC_SEND_MESSAGE_BYTES_MAX by default; grpc-js's own default is 4 MiB). */
  receiveMessageBytesMax?: number;
}

/** A failed call: the gRPC status, and the error table's code and outcome from the trailers. */
export class KvGrpcError extends Error {
  override name = 'KvGrpcError';
  constructor(
    readonly grpcCode: status,
    /** `key_not_found`, `invalid_key`, ...; undefined when the failure is grpc-js's own (a deadline, a lost connection). */
    readonly code: string | undefined,
    /** `definite` or `indeterminate`; undefined with `code`. */
    readonly outcome: string | undefined,
    message: string,
    readonly metadata: Metadata,
  ) {
    super(message);
  }
}

/**
 * A small typed client of the router's gRPC service, loading the same .proto: what the tests and
 * `npm run bench:grpc` use, and an example for users. `call` reaches any rpc of KvRpcs, so a new
 * rpc needs no code here.
 */
export class KvGrpcClient {
  private readonly client: Client;
  private readonly methods: Record<string, MethodDefinition<unknown, unknown>>;
  private readonly deadlineMs: number;

  /** `address`: `host:port` of a router's gRPC port. */
  constructor(address: string, opts: KvGrpcClientOptions = {}) {
    this.methods = loadKvDefinition()[SERVICE_NAME] as Record<string, MethodDefinition<unknown, unknown>>;
    this.client = new Client(address, credentials.createInsecure(), { 'grpc.max_receive_message_length': opts.receiveMessageBytesMax ?? 64 * 1024 * 1024 });
    this.deadlineMs = opts.deadlineMs ?? 10_000;
  }

  call<M extends KvMethod>(method: M, request: KvRpcs[M]['request'], opts: { deadlineMs?: number } = {}): Promise<KvRpcs[M]['response']> {
    return this.unary(method, (m) => m.requestSerialize, request, opts);
  }

  /** An rpc with its request given as bytes, as a client that does not follow proto3 could send it (tests of the router's checks). */
  callRaw<M extends KvMethod>(method: M, request: Buffer, opts: { deadlineMs?: number } = {}): Promise<KvRpcs[M]['response']> {
    return this.unary(method, () => (b: Buffer) => b, request, opts);
  }

  /** `request` encoded as the rpc's request message. */
  encode<M extends KvMethod>(method: M, request: KvRpcs[M]['request']): Buffer {
    return this.method(method).requestSerialize(request);
  }

  private unary<M extends KvMethod, Q>(method: M, serializer: (m: MethodDefinition<unknown, unknown>) => (q: Q) => Buffer, request: Q, opts: { deadlineMs?: number }): Promise<KvRpcs[M]['response']> {
    const m = this.method(method);
    const deadline = Date.now() + (opts.deadlineMs ?? this.deadlineMs);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(m.path, serializer(m), m.responseDeserialize, request, new Metadata(), { deadline }, (err: ServiceError | null, res?: unknown) => {
        if (err === null) resolve(res as KvRpcs[M]['response']);
        else reject(toError(err));
      });
    });
  }

  private method(name: KvMethod): MethodDefinition<unknown, unknown> {
    const m = this.methods[name];
    if (m === undefined) throw new Error(`the .proto has no rpc ${name}`);
    return m;
  }

  async get(key: string, opts: { stale?: boolean; deadlineMs?: number } = {}): Promise<string> {
    return (await this.call('Get', { key, consistency: opts.stale === true ? 'CONSISTENCY_STALE' : 'CONSISTENCY_LINEARIZABLE' }, opts)).value;
  }

  async put(key: string, value: string, opts: { deadlineMs?: number } = {}): Promise<number> {
    return (await this.call('Put', { key, value }, opts)).seq;
  }

  async delete(key: string, opts: { deadlineMs?: number; ifVersion?: number; idempotencyKey?: string } = {}): Promise<boolean> {
    const { deadlineMs, ...condition } = opts;
    return (await this.call('Delete', { key, ...condition }, deadlineMs === undefined ? {} : { deadlineMs })).deleted;
  }

  mget(keys: string[], opts: { deadlineMs?: number } = {}): Promise<MGetResponse> {
    return this.call('MGet', { keys }, opts);
  }

  mput(entries: PutEntry[], opts: { deadlineMs?: number; idempotencyKey?: string } = {}): Promise<MPutResponse> {
    return this.call('MPut', { entries, ...(opts.idempotencyKey === undefined ? {} : { idempotencyKey: opts.idempotencyKey }) }, opts);
  }

  incr(key: string, by = 1, opts: { deadlineMs?: number; idempotencyKey?: string } = {}): Promise<IncrResponse> {
    return this.call('Incr', { key, by, ...(opts.idempotencyKey === undefined ? {} : { idempotencyKey: opts.idempotencyKey }) }, opts);
  }

  /** The full answers of Get and Put: versions, ttl, conditions. */
  getEntry(key: string, opts: { deadlineMs?: number } = {}): Promise<GetResponse> {
    return this.call('Get', { key }, opts);
  }

  putWith(request: PutRequest, opts: { deadlineMs?: number } = {}): Promise<PutResponse> {
    return this.call('Put', request, opts);
  }

  close(): void {
    this.client.close();
  }
}

function toError(err: ServiceError): KvGrpcError {
  const first = (key: string) => {
    const v = err.metadata?.get(key)[0];
    return v === undefined ? undefined : String(v);
  };
  return new KvGrpcError(err.code, first(ERROR_CODE_METADATA), first(OUTCOME_METADATA), err.details || err.message, err.metadata ?? new Metadata());
}
