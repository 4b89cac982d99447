import { Server, ServerCredentials, status, type MethodDefinition, type ServerUnaryCall, type ServiceDefinition, type sendUnaryData, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { KvError, type Logger } from '@shardkv/common';
import type { GrpcOptions } from '../config';
import { grpcRequests, http, operationSeconds } from '../metrics';
import type { KvMethod } from './messages';
import { loadKvDefinition, SERVICE_NAME } from './proto';
import type { Handlers } from './service';
import { grpcError, GRPC_STATUS, statusName } from './status';
import { firstInvalidString, wireSchema } from './utf8';

/** Set on a decoded request whose bytes held a string field that is not UTF-8 (see utf8.ts): its path. */
const INVALID_UTF8 = Symbol('invalid UTF-8 field');

export interface RunningGrpcServer {
  /** The port it listens on (the one the OS chose for port 0). */
  port: number;
  /** Stops taking calls, gives those in flight `shutdownGraceMs` to be answered, then closes every connection. */
  stop(): Promise<void>;
}

/**
 * The router's gRPC server, beside its HTTP one: the handlers of service.ts behind grpc-js, with
 * the limits of the config (request size = the HTTP body limit, answer size, calls in flight per
 * connection), every call counted by method and status, and every failure answered as the error
 * table's status with its code and outcome in the trailers.
 */
export async function startGrpcServer(handlers: Handlers, opts: GrpcOptions, log: Logger): Promise<RunningGrpcServer> {
  const def = loadKvDefinition();
  const service = strictUtf8(def, def[SERVICE_NAME] as ServiceDefinition);
  const server = new Server({
    'grpc.max_receive_message_length': opts.receiveMessageBytesMax,
    'grpc.max_send_message_length': opts.sendMessageBytesMax,
    'grpc.max_concurrent_streams': opts.concurrentStreamsMax,
  });
  server.addService(service, implementation(service, handlers, log));
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${opts.host}:${opts.port}`, ServerCredentials.createInsecure(), (err, bound) => (err === null ? resolve(bound) : reject(err)));
  });
  return { port, stop: () => shutdown(server, opts.shutdownGraceMs) };
}

/**
 * One unary handler per rpc of the .proto. A method without a handler, or a handler without a
 * method, stops the router at start: the .proto and service.ts must agree.
 */
function implementation(service: ServiceDefinition, handlers: Handlers, log: Logger): UntypedServiceImplementation {
  const methods = Object.keys(service);
  const missing = methods.filter((m) => !(m in handlers));
  const extra = Object.keys(handlers).filter((m) => !methods.includes(m));
  if (missing.length > 0 || extra.length > 0) throw new Error(`gRPC service and handlers disagree: no handler for [${missing.join(', ')}], no rpc for [${extra.join(', ')}]`);
  return Object.fromEntries(methods.map((m) => [m, unary(m as KvMethod, handlers, log)]));
}

function unary(method: KvMethod, handlers: Handlers, log: Logger) {
  const handler = handlers[method] as (req: unknown, opts: { deadlineAtMs?: number }) => Promise<unknown>;
  const op = method.toLowerCase();
  return (call: ServerUnaryCall<Record<symbol, unknown>, unknown>, callback: sendUnaryData<unknown>): void => {
    const startedNs = process.hrtime.bigint();
    const done = (code: status) => {
      grpcRequests.inc({ method, code: statusName(code) });
      operationSeconds.observe({ op }, Number(process.hrtime.bigint() - startedNs) / 1e9);
    };
    const field = call.request[INVALID_UTF8];
    // Inside a promise, so that a handler that throws before its first await is answered like any other failure.
    const answer = new Promise<unknown>((resolve) => {
      if (field !== undefined) throw invalidUtf8(String(field));
      resolve(handler(call.request, { deadlineAtMs: deadlineOf(call) }));
    });
    answer.then(
      (response) => {
        done(status.OK);
        callback(null, response);
      },
      (err: unknown) => {
        const kv = err instanceof KvError ? err : new KvError('internal', 'internal error');
        if (kv.code === 'internal') log.error({ err, method }, 'unhandled error in a gRPC call');
        http.errors.inc({ code: kv.code });
        done(GRPC_STATUS[kv.code]);
        callback(grpcError(kv));
      },
    );
  };
}

/** The call's deadline as Date.now() ms, or undefined when the client set none (the router's own deadline applies). */
function deadlineOf(call: ServerUnaryCall<unknown, unknown>): number | undefined {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) ? ms : undefined;
}

/** A field that is not UTF-8 gets the code its HTTP twin would: a key, a value, or else the body. */
function invalidUtf8(path: string): KvError {
  const leaf = path.slice(path.lastIndexOf('.') + 1);
  const code = leaf === 'key' ? 'invalid_key' : leaf === 'value' ? 'invalid_value' : 'invalid_body';
  return new KvError(code, `${path} is not valid UTF-8`);
}

/** The service with each request's bytes checked for strings that are not UTF-8 before they are decoded (see utf8.ts). */
function strictUtf8(def: PackageDefinition, service: ServiceDefinition): ServiceDefinition {
  const strict: Record<string, MethodDefinition<object, unknown>> = {};
  for (const [name, m] of Object.entries(service) as Array<[string, MethodDefinition<object, unknown> & { requestType: { type: { name: string } } }]>) {
    const schema = wireSchema(def, `${SERVICE_NAME.slice(0, SERVICE_NAME.lastIndexOf('.'))}.${m.requestType.type.name}`);
    strict[name] = {
      ...m,
      requestDeserialize: (buf: Buffer) => {
        const request = m.requestDeserialize(buf) as Record<symbol, unknown>;
        const field = firstInvalidString(buf, schema);
        if (field !== undefined) request[INVALID_UTF8] = field;
        return request;
      },
    };
  }
  return strict;
}

function shutdown(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
