import { KvClientError, type KvClient } from '@shardkv/client';
import { slotOf, type ClusterMap } from '@shardkv/common';
import { request } from 'undici';
import { logTimeMs, parseRouterLine, type OpLog, type RouterEvent } from './reshard-ops';

/**
 * `npm run bench:reshard`'s parts that do IO: the bulk load of the key set, the client loops that
 * record every operation, the watch on the nodes' logs, and the shards' key counts.
 */

/** Wall-clock milliseconds with sub-millisecond precision: comparable with the `time` of the nodes' log lines (same machine). */
export const nowMs = (): number => performance.timeOrigin + performance.now();

export interface KeySet {
  keys: string[];
  /** Each key's slot, computed once (the loops would otherwise hash every op twice). */
  slots: Uint16Array;
  value: string;
}

export function keySet(count: number, valueBytes: number): KeySet {
  const keys = Array.from({ length: count }, (_, i) => `rbench-${i}`);
  return { keys, slots: Uint16Array.from(keys, (k) => slotOf(k)), value: 'v'.repeat(valueBytes) };
}

/** One /load body: well under LOAD_BODY_BYTES_MAX (64 MiB), large enough that its per-request cost vanishes. */
const LOAD_BODY_LINES = 100_000;
/**
 * Sends of a key's line before the load gives up. A failed entry is sent again even when the
 * failure was indeterminate (`replication_timeout`): every line puts the same value, so a second
 * put of it leaves the same state. On a busy 2-core machine a follower can miss the replication
 * deadline under a bulk load, and the benchmark measures resharding, not the load.
 */
const LOAD_SENDS_MAX = 3;
const LOAD_RETRY_PAUSE_MS = 1000;

export interface LoadResult {
  seconds: number;
  /** Entries sent again after a failure, by code (a clean load has none). */
  retriedByCode: Record<string, number>;
}

/** Loads every key through `POST /load`, one body at a time (as `kv load` does by default); throws unless each one is loaded. */
export async function loadKeys(client: KvClient, set: KeySet): Promise<LoadResult> {
  const started = nowMs();
  const retriedByCode: Record<string, number> = {};
  let pending = Array.from({ length: set.keys.length }, (_, i) => i);
  for (let send = 1; pending.length > 0; send += 1) {
    const failed: number[] = [];
    for (let at = 0; at < pending.length; at += LOAD_BODY_LINES) failed.push(...(await loadBody(client, set, pending.slice(at, at + LOAD_BODY_LINES), retriedByCode)));
    if (failed.length > 0 && send >= LOAD_SENDS_MAX) throw new Error(`POST /load: ${failed.length} keys still not loaded after ${send} sends (${JSON.stringify(retriedByCode)})`);
    if (failed.length > 0) await new Promise((r) => setTimeout(r, LOAD_RETRY_PAUSE_MS));
    pending = failed;
  }
  return { seconds: (nowMs() - started) / 1000, retriedByCode };
}

/** One /load of the keys at `indexes`; returns the indexes of those that failed (counted by code in `byCode`). */
async function loadBody(client: KvClient, set: KeySet, indexes: number[], byCode: Record<string, number>): Promise<number[]> {
  const body = Buffer.from(indexes.map((i) => `${set.keys[i]} ${set.value}\n`).join(''));
  const answer = await client.load(body);
  const failed: number[] = [];
  for (const f of answer.chunks.flatMap((c) => c.failures)) {
    byCode[f.code] = (byCode[f.code] ?? 0) + f.lines.length;
    for (const line of f.lines) failed.push(indexes[line - 1]!);
  }
  if (answer.loaded + failed.length !== indexes.length) throw new Error(`POST /load answered ${answer.loaded} loaded and ${failed.length} failed of ${indexes.length} lines (${answer.malformed} malformed)`);
  return failed;
}

export interface RunningLoops {
  /** Ends every loop after its current operation and waits for them. */
  stop(): Promise<void>;
}

/**
 * `concurrency` closed loops, each a random key of the set, GET or PUT with equal odds, its next
 * call sent as the last one answers, until stopped. Every operation goes into `log` with its
 * key's slot and, when it failed, the client's error code.
 */
export function startLoops(client: KvClient, set: KeySet, concurrency: number, log: OpLog): RunningLoops {
  let stopping = false;
  const loop = async () => {
    while (!stopping) {
      const i = Math.floor(Math.random() * set.keys.length);
      const key = set.keys[i]!;
      const t0 = nowMs();
      let code: string | undefined;
      try {
        if (Math.random() < 0.5) await client.get(key);
        else await client.put(key, set.value);
      } catch (err) {
        code = err instanceof KvClientError ? err.code : `exception:${err instanceof Error ? err.name : typeof err}`;
      }
      const t1 = nowMs();
      log.record(t1, t1 - t0, set.slots[i]!, code);
    }
  };
  const done = Promise.all(Array.from({ length: concurrency }, loop));
  return {
    stop: async () => {
      stopping = true;
      await done;
    },
  };
}

/** Lines kept from every node, printed if the benchmark fails (they are noise otherwise). */
const NODE_LINES_KEPT_MAX = 50;
/** Warnings and errors kept per run for the report (their count is kept whatever their number). */
const WARNINGS_KEPT_MAX = 200;

/**
 * What the benchmark reads from the nodes' logs: the router's migration events, and every
 * warning or error of any node (a migration that the clients do not notice may still be noisy).
 */
export class LogWatch {
  readonly events: RouterEvent[] = [];
  readonly lastLines: string[] = [];
  readonly warnings: Array<{ node: string; atMs: number; msg: string }> = [];
  warningCount = 0;

  constructor(private readonly format: (name: string, line: string) => string) {}

  readonly sink = (name: string, line: string): void => {
    this.lastLines.push(this.format(name, line));
    if (this.lastLines.length > NODE_LINES_KEPT_MAX) this.lastLines.shift();
    if (name === 'router') {
      const e = parseRouterLine(line);
      if (e !== undefined) this.events.push(e);
    }
    this.noteWarning(name, line);
  };

  /** The first event of `kind` logged at or after `fromMs`, waiting up to `waitMs` for it (a line may trail the map write it follows). */
  async first<K extends RouterEvent['kind']>(kind: K, fromMs: number, toMs: number, waitMs: number): Promise<Extract<RouterEvent, { kind: K }> | undefined> {
    const deadline = nowMs() + waitMs;
    for (;;) {
      const e = this.events.find((x) => x.kind === kind && x.atMs >= fromMs && x.atMs <= toMs);
      if (e !== undefined || nowMs() > deadline) return e as Extract<RouterEvent, { kind: K }> | undefined;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  between(fromMs: number, toMs: number): RouterEvent[] {
    return this.events.filter((e) => e.atMs >= fromMs && e.atMs <= toMs);
  }

  private noteWarning(node: string, line: string): void {
    let rec: { level?: unknown; time?: unknown; msg?: unknown };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      return;
    }
    if (typeof rec.level !== 'number' || rec.level < 40) return;
    this.warningCount += 1;
    if (this.warnings.length < WARNINGS_KEPT_MAX) this.warnings.push({ node, atMs: logTimeMs(rec.time), msg: String(rec.msg) });
  }
}

/** Keys held by each shard's leader in `map` (its /status). */
export async function shardKeyCounts(map: ClusterMap): Promise<Record<string, number>> {
  const counts = await Promise.all(
    map.shards.map(async (s) => {
      const res = await request(`${s.leader}/status`, { signal: AbortSignal.timeout(10_000) });
      const body = (await res.body.json()) as { keys: number };
      return [s.id, body.keys] as const;
    }),
  );
  return Object.fromEntries(counts);
}

/** A change of the migration's state or phase, as the coordinator's /cluster/map showed it. */
export interface PhaseChange {
  atMs: number;
  state: string;
  phase: string | null;
  keysCopied: number | null;
}

/** How often the phase watch reads the map: often enough to time a phase of a second, cheap for the router. */
const PHASE_POLL_MS = 250;
/** How often the phase watch prints the copy's progress. */
const PROGRESS_PRINT_MS = 10_000;

/**
 * Reads the coordinator's map until stopped, keeping every change of the migration's state or
 * phase (so the report can say where a migration's time went) and printing its progress now and then.
 */
export function watchPhases(client: KvClient, print: (line: string) => void): { stop(): PhaseChange[] } {
  const changes: PhaseChange[] = [];
  let printedMs = nowMs();
  let stopped = false;
  const poll = async () => {
    while (!stopped) {
      const m = (await client.clusterMap().catch(() => undefined))?.migration;
      const state = m === undefined ? 'unknown' : (m?.state ?? 'none');
      const phase = m?.progress?.phase ?? null;
      const last = changes[changes.length - 1];
      if (last === undefined || last.state !== state || last.phase !== phase) changes.push({ atMs: nowMs(), state, phase, keysCopied: m?.progress?.keysCopied ?? null });
      if (m !== undefined && m !== null && nowMs() - printedMs >= PROGRESS_PRINT_MS) {
        printedMs = nowMs();
        print(`migration ${m.state}${phase === null ? '' : ` (${phase})`}: ${m.progress?.keysCopied ?? '?'} keys copied, ${m.progress?.entriesTailed ?? '?'} entries tailed, lag ${m.progress?.lagEntries ?? '?'}`);
      }
      await new Promise((r) => setTimeout(r, PHASE_POLL_MS));
    }
  };
  void poll();
  let kept: PhaseChange[] | undefined;
  return {
    // The poll in flight may still see a change after this: the copy taken here is what the report times.
    stop: () => {
      stopped = true;
      return (kept ??= changes.slice());
    },
  };
}
