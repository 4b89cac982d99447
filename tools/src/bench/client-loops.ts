import { request } from 'undici';
import type { Run } from './config';

/**
 * `npm run bench:client`'s and `bench:grpc`'s parts: closed loops of one typed client (through
 * the router, with direct routing, or over gRPC) and the check that the cluster serves a slot map.
 */
export type ClientOp = 'GET' | 'PUT';

/** What the loops call: KvClient and KvGrpcClient both are one. */
export interface LoopClient {
  get(key: string): Promise<unknown>;
  put(key: string, value: string): Promise<unknown>;
}

export interface LoopsSpec {
  client: LoopClient;
  op: ClientOp;
  keys: readonly string[];
  value: string;
  concurrency: number;
  durationMs: number;
}

/** Latencies kept per run: enough for a p99 of a few seconds at any rate one machine reaches. */
const LATENCY_SAMPLES_MAX = 2_000_000;

/** `concurrency` loops, each issuing the next call as the last one answers, for `durationMs`. */
export async function runLoops(spec: LoopsSpec): Promise<Run> {
  const latenciesMs: number[] = [];
  let ok = 0;
  let errors = 0;
  const started = performance.now();
  const endsAt = started + spec.durationMs;
  const loop = async () => {
    while (performance.now() < endsAt) {
      const key = spec.keys[Math.floor(Math.random() * spec.keys.length)]!;
      const t0 = performance.now();
      try {
        if (spec.op === 'GET') await spec.client.get(key);
        else await spec.client.put(key, spec.value);
        ok += 1;
        if (latenciesMs.length < LATENCY_SAMPLES_MAX) latenciesMs.push(performance.now() - t0);
      } catch {
        errors += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, loop));
  const durationMs = performance.now() - started;
  latenciesMs.sort((a, b) => a - b);
  return { rps: (ok * 1000) / durationMs, p50Ms: quantile(latenciesMs, 0.5), p99Ms: quantile(latenciesMs, 0.99), errors, requests: ok + errors, durationMs };
}

function quantile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** The cluster cannot be measured at all (as opposed to a failure while measuring it). */
export class NoSlotMapError extends Error {
  override name = 'NoSlotMapError';
}

/**
 * Direct routing needs `/cluster/map` with hash slots; without it the "direct" client would send
 * everything through the router and the comparison would measure nothing, so this refuses first.
 */
export async function requireSlotMap(routerUrl: string): Promise<{ version: number; shards: number }> {
  const res = await request(`${routerUrl}/cluster/map`);
  const text = await res.body.text();
  if (res.statusCode === 404) throw new NoSlotMapError(`${routerUrl}/cluster/map answered 404: this router predates slot maps, so there is nothing to route directly by (bench:client needs the resharding core)`);
  if (res.statusCode !== 200) throw new Error(`${routerUrl}/cluster/map answered ${res.statusCode}: ${text.slice(0, 200)}`);
  const map = JSON.parse(text) as { version: number; slots: unknown; shards: unknown[] };
  if (map.slots === null) throw new NoSlotMapError(`${routerUrl}/cluster/map has slots: null (a cluster without hash slots): a direct client would route everything through the router`);
  return { version: map.version, shards: map.shards.length };
}
