import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';
import { resolve } from 'node:path';

/** The service's .proto, shipped with the router package (Dockerfile.router checks that the image has it). */
export const PROTO_PATH = resolve(__dirname, '..', '..', 'proto', 'shardkv.proto');

/** The service's full name in the .proto. */
export const SERVICE_NAME = 'shardkv.v1.KV';

/**
 * How messages become JS objects, the same for the server and the client helper: fields in
 * camelCase, 64-bit integers as numbers (sequence numbers are safe integers), enums by name, and
 * absent fields as their proto3 defaults (so a request without a key has the key "", which the
 * API's validation refuses like an empty key).
 */
export const LOAD_OPTIONS: Options = { longs: Number, enums: String, defaults: true };

export function loadKvDefinition(): PackageDefinition {
  return loadSync(PROTO_PATH, LOAD_OPTIONS);
}
