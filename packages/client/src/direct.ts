import { EPOCH_HEADER, KvError, ownersOf, parseMgetBody, parseMputBody, SLOT_COUNT, slotOf, type ClusterMap, type EntryResult, type PutEntry } from '@shardkv/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { decodeAnswer, KvClientError, noAnswer } from './errors';

/**
 * Direct routing (`routing: 'direct'`): the client reads `/cluster/map` from a router, computes
 * each key's slot itself and sends the request to the owning shard's leader, one hop instead of
 * two. Its map can be older than the cluster's: a leader then refuses with a definite code (nothing
 * applied), and only those refusals make the client re-read the map and try again, within the
 * call's deadline. Anything else, above all an indeterminate failure, is reported as it is: a
 * write that may have been applied is never sent twice.
 */
export type Method = 'GET' | 'POST' | 'DELETE';

/** The client's path through its routers: for the map, and for whatever direct routing cannot route. */
export interface RouterPath {
  call(method: Method, path: string, body: unknown, absent: readonly number[], signal: AbortSignal, extra?: Record<string, string>): Promise<unknown>;
}

export interface BatchAnswer {
  results: EntryResult[];
  ok: number;
  failed: number;
}

/** Refusals that prove the client's map is old (or the slot is in cutover): nothing was applied. */
const REROUTE = new Set(['not_leader', 'stale_epoch', 'wrong_shard', 'migrating']);
/** The one slot function this client knows (see common/slots.ts); any other map is routed by the router. */
const SLOT_HASH = 'md5-le32-top12';
/** A frozen slot's cutover takes well under a second: wait this long before the first retry, doubling after. */
export const REROUTE_BACKOFF_MS = 25;
const REROUTE_BACKOFF_MS_MAX = 400;
/** Map refreshes one call may wait for; a cluster whose map does not settle by then is reported, not chased. */
export const REROUTE_ATTEMPTS_MAX = 8;
/** One /cluster/map fetch, shared by every call waiting for it, so not bound by any one call's deadline. */
const MAP_FETCH_TIMEOUT_MS = 5_000;

interface Leader {
  shard: string;
  url: string;
  epoch: number;
}

/** Where one request goes: a leader, or the router (no usable map, or the leader refused connections). */
type Target = Leader | 'router';

/** One map, as the client routes by it: the leader of every slot, or none (route through the router). */
export class RouteTable {
  private readonly bySlot: Leader[] | undefined;

  constructor(readonly map: ClusterMap | undefined) {
    this.bySlot = map === undefined ? undefined : leadersBySlot(map);
  }

  get direct(): boolean {
    return this.bySlot !== undefined;
  }

  leaderOf(key: string): Leader | undefined {
    return this.bySlot?.[slotOf(key)];
  }
}

/** Undefined for a map this client cannot route by: no slots (an old cluster), another slot hash, or runs that do not cover every slot. */
function leadersBySlot(map: ClusterMap): Leader[] | undefined {
  if (map.slots === null || map.slotHash !== SLOT_HASH || map.slotCount !== SLOT_COUNT) return undefined;
  const leaders = new Map(map.shards.map((s) => [s.id, { shard: s.id, url: s.leader, epoch: s.epoch }]));
  try {
    const bySlot = ownersOf(map.slots).map((id) => leaders.get(id));
    return bySlot.every((l) => l !== undefined) ? (bySlot as Leader[]) : undefined;
  } catch {
    return undefined;
  }
}

export class DirectRouting {
  private table: RouteTable | undefined;
  private refreshing: Promise<RouteTable> | undefined;
  private readonly pools = new Map<string, Pool>();

  constructor(
    private readonly router: RouterPath,
    private readonly connections: number,
  ) {}

  /** The map calls route by now (fetched by the first call). */
  get current(): RouteTable | undefined {
    return this.table;
  }

  /** get/put/delete of one key: to its leader; after a refusal that proves nothing was applied, again by a fresher map. */
  async one(key: string, method: Method, path: string, body: unknown, absent: readonly number[], signal: AbortSignal, extra: Record<string, string> = {}): Promise<unknown> {
    let table = await this.start(signal);
    let target: Target = table.leaderOf(key) ?? 'router';
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.send(target, method, path, body, absent, signal, extra);
      } catch (err) {
        if (target === 'router' || !(err instanceof KvClientError)) throw err;
        if (err.code === 'unreachable') {
          // Never sent, so the router may take it: it waits out the shard's failover, the client cannot.
          this.refreshSoon(table);
          target = 'router';
          continue;
        }
        table = await this.reroute(err, attempt, table, signal);
        target = table.leaderOf(key) ?? 'router';
      }
    }
  }

  /** mput/mget: one request per leader; entries a leader refused definitely go again, by a fresher map. */
  async batch(kind: 'mput', entries: readonly PutEntry[], signal: AbortSignal): Promise<BatchAnswer>;
  async batch(kind: 'mget', keys: readonly string[], signal: AbortSignal): Promise<BatchAnswer>;
  async batch(kind: 'mput' | 'mget', items: ReadonlyArray<PutEntry | string>, signal: AbortSignal): Promise<BatchAnswer> {
    validateBatch(kind, items);
    const keyOf = (i: number) => (kind === 'mput' ? (items[i] as PutEntry).key : (items[i] as string));
    const bodyOf = (idx: number[]) => (kind === 'mput' ? { entries: idx.map((i) => items[i]) } : { keys: idx.map((i) => items[i]) });
    const results: EntryResult[] = new Array(items.length);
    const unreachable = new Set<string>();
    let table = await this.start(signal);
    let pending = items.map((_, i) => i);
    for (let attempt = 1; pending.length > 0; attempt += 1) {
      const groups = groupByTarget(pending, (i) => table.leaderOf(keyOf(i)), unreachable);
      const again = await Promise.all([...groups].map(([target, idx]) => this.sendGroup(target, `/${kind}`, idx, bodyOf(idx), keyOf, results, unreachable, signal)));
      pending = again.flat().sort((a, b) => a - b); // in the order given: a later duplicate still wins
      // Entries whose leader refused connections need no new map: they go through the router next.
      const refusals = pending.flatMap((i) => refusalOf(results[i]!) ?? []);
      if (refusals.length === 0) continue;
      // The longest wait any of them needs: a frozen slot's, if one is among them.
      const refusal = refusals.find((r) => r.code === 'migrating') ?? refusals[0]!;
      const next = await this.reroute(refusal, attempt, table, signal).catch(() => undefined);
      if (next === undefined) break; // their results keep the refusal: definite, nothing applied
      table = next;
    }
    const ok = results.filter((r) => r.ok).length;
    return { results, ok, failed: results.length - ok };
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
  }

  /**
   * One group's request; fills its entries' results and returns the indexes to send again: those
   * a leader refused definitely because the map was old, or whose leader refused connections.
   */
  private async sendGroup(target: Target, path: string, idx: number[], body: unknown, keyOf: (i: number) => string, results: EntryResult[], unreachable: Set<string>, signal: AbortSignal): Promise<number[]> {
    try {
      const answer = (await this.send(target, 'POST', path, body, [], signal)) as { results: EntryResult[] };
      answer.results.forEach((r, j) => (results[idx[j]!] = r));
      return target === 'router' ? [] : idx.filter((i) => refusalOf(results[i]!) !== undefined);
    } catch (err) {
      if (!(err instanceof KvClientError)) throw err;
      idx.forEach((i) => (results[i] = { key: keyOf(i), ok: false, error: { code: err.code, message: err.message }, outcome: err.outcome }));
      if (target === 'router') return [];
      if (err.code === 'unreachable') unreachable.add(target.url);
      return REROUTE.has(err.code) || err.code === 'unreachable' ? idx : [];
    }
  }

  /**
   * After a definite refusal on `table`: waits (a frozen slot, or a map that did not help the
   * last time), then a fresher map. Throws the refusal itself when retrying is not allowed or the
   * deadline would pass first: it is definite, so the caller knows nothing was applied.
   */
  private async reroute(err: KvClientError, attempt: number, table: RouteTable, signal: AbortSignal): Promise<RouteTable> {
    if (!REROUTE.has(err.code) || attempt >= REROUTE_ATTEMPTS_MAX || signal.aborted) throw err;
    const waitMs = err.code === 'migrating' || attempt > 1 ? Math.min(REROUTE_BACKOFF_MS * 2 ** (attempt - 1), REROUTE_BACKOFF_MS_MAX) : 0;
    try {
      if (waitMs > 0) await sleep(waitMs, undefined, { signal });
      return await this.refresh(table, signal);
    } catch (cause) {
      throw signal.aborted ? err : cause;
    }
  }

  /** The map to start a call with; a deadline passed while the first is fetched is definite: nothing was sent. */
  private async start(signal: AbortSignal): Promise<RouteTable> {
    try {
      return await this.refresh(undefined, signal);
    } catch (err) {
      if (err instanceof KvClientError || !signal.aborted) throw err;
      throw new KvClientError('the deadline passed while reading /cluster/map; nothing was sent', 0, 'deadline_exceeded', 'definite');
    }
  }

  /**
   * A map newer than `seen` (undefined: any map). Calls that were refused on the same map share
   * one fetch, so a wave of refusals after a cutover costs one /cluster/map, not one per call; a
   * call whose map was replaced meanwhile takes the new one without fetching.
   */
  private refresh(seen: RouteTable | undefined, signal: AbortSignal): Promise<RouteTable> {
    if (this.table !== undefined && this.table !== seen) return Promise.resolve(this.table);
    this.refreshing ??= this.fetchMap().finally(() => (this.refreshing = undefined));
    return untilAborted(this.refreshing, signal);
  }

  /** After a leader refused connections: a fresher map for later calls (its failover may have named another). */
  private refreshSoon(seen: RouteTable): void {
    this.refresh(seen, AbortSignal.timeout(MAP_FETCH_TIMEOUT_MS)).catch(() => undefined);
  }

  private async fetchMap(): Promise<RouteTable> {
    // A router without slot maps answers 404: route everything through it, as with `slots: null`.
    const map = (await this.router.call('GET', '/cluster/map', undefined, [404], AbortSignal.timeout(MAP_FETCH_TIMEOUT_MS))) as ClusterMap | undefined;
    this.table = new RouteTable(map);
    return this.table;
  }

  private async send(target: Target, method: Method, path: string, body: unknown, absent: readonly number[], signal: AbortSignal, extra: Record<string, string> = {}): Promise<unknown> {
    if (target === 'router') return this.router.call(method, path, body, absent, signal, extra);
    const headers: Record<string, string> = { ...extra, [EPOCH_HEADER]: String(target.epoch) };
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      const res = await this.poolFor(target.url).request({ method, path, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
      const text = await res.body.text();
      return decodeAnswer(res.statusCode, text, absent);
    } catch (err) {
      throw err instanceof KvClientError ? err : noAnswer(`${method} ${path}`, target.url, err, signal);
    }
  }

  private poolFor(url: string): Pool {
    let pool = this.pools.get(url);
    if (pool === undefined) this.pools.set(url, (pool = new Pool(url, { connections: this.connections })));
    return pool;
  }
}

/** The entry's refusal when it proves the map was old (nothing applied), else undefined. */
function refusalOf(r: EntryResult): KvClientError | undefined {
  if (r.ok || !REROUTE.has(r.error.code)) return undefined;
  return new KvClientError(r.error.message, 0, r.error.code, 'definite');
}

/** Indexes per target, in the order given (a later duplicate key stays later). */
function groupByTarget(pending: number[], leaderOf: (i: number) => Leader | undefined, unreachable: Set<string>): Map<Target, number[]> {
  const groups = new Map<Target, number[]>();
  for (const i of pending) {
    // One table holds one Leader object per shard, so equal targets are the same object.
    const leader = leaderOf(i);
    const target: Target = leader === undefined || unreachable.has(leader.url) ? 'router' : leader;
    const group = groups.get(target);
    if (group === undefined) groups.set(target, [i]);
    else group.push(i);
  }
  return groups;
}

/** A batch is refused whole before anything is sent, as the router refuses it: split, a bad entry would fail only its leader's part. */
function validateBatch(kind: 'mput' | 'mget', items: ReadonlyArray<PutEntry | string>): void {
  try {
    if (kind === 'mput') parseMputBody({ entries: items });
    else parseMgetBody({ keys: items });
  } catch (err) {
    if (err instanceof KvError) throw new KvClientError(err.message, err.status, err.code, 'definite');
    throw err;
  }
}

/** The promise, or the signal's abort, whichever comes first (the promise is shared: it is not cancelled). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
