import { migrationEnded, type ClusterMap, type MigrationStarted, type MigrationView } from '@shardkv/common';
import { request } from 'undici';
import { CommandError, runningCluster, type ClusterFile } from './cluster-file';
import { setInMap, sleep, startPair, stopPair, type CommandOptions } from './pairs';
import { readTopology } from './topology';

/**
 * `npm run shard:add` and `npm run shard:remove -- <id>`: the router's admin API
 * (`POST /admin/shards`, `DELETE /admin/shards/<id>`) around the supervisor's pairs, waiting on
 * `GET /cluster/map` until the migration is done. A pair is started before the router is asked to
 * add it and stopped only after the router has drained it, so no key is ever on a stopped pair.
 */

/** A migration copies every key of the slots it moves; an hour is far more than a local data set takes. */
const MIGRATION_TIMEOUT_MS = 60 * 60_000;
const MAP_POLL_MS = 500;
const ADMIN_REQUEST_TIMEOUT_MS = 10_000;

export async function addShardCommand(o: CommandOptions): Promise<void> {
  const info = runningCluster(o.root);
  // Asked first: a router without resharding (no /cluster/map) fails the command before any pair starts.
  await clusterMap(info);
  const pair = await startPair(o);
  o.out(`${pair.id} is up: leader ${pair.leader.url}, follower ${pair.follower.url}`);
  const map = await clusterMap(info);
  let started: MigrationStarted | undefined;
  if (map.shards.some((s) => s.id === pair.id)) o.out(`${pair.id} is already in the router's map (an earlier shard:add asked for it)`);
  else {
    const res = await admin(info, 'POST', '/admin/shards', { id: pair.id, leader: pair.leader.url, follower: pair.follower.url });
    if (res.status !== 202) {
      // A definite refusal: the router changed nothing, so the pair goes too (its data stays).
      o.out(`the router refused ${pair.id}: ${describeError(res)}; stopping its pair`);
      await stopPair(o, pair.id);
      throw new CommandError(`POST /admin/shards refused ${pair.id}: ${describeError(res)}`);
    }
    started = res.body as MigrationStarted;
    o.out(`router accepted ${pair.id}: migration ${started.migration.id} started`);
  }
  await setInMap(o, pair.id, true);
  const done = await waitForMigration(o, info, started);
  const slots = slotsOf(done, pair.id);
  if (!done.shards.some((s) => s.id === pair.id)) throw new CommandError(`the migration ended without ${pair.id} in the map (aborted?); see ${info.routers[0]}/cluster/map`);
  o.out(`done: ${pair.id} serves ${slots} slots; the cluster has ${done.shards.length} shards (map version ${done.version})`);
}

export async function removeShardCommand(o: CommandOptions, id: string): Promise<void> {
  const info = runningCluster(o.root);
  const listed = readTopology(info.dataRoot)?.shards.map((s) => s.id) ?? [];
  if (!listed.includes(id)) throw new CommandError(`no shard ${id} in this cluster (it runs ${listed.join(', ') || 'none'})`);
  const map = await clusterMap(info);
  let started: MigrationStarted | undefined;
  if (!map.shards.some((s) => s.id === id)) o.out(`${id} is not in the router's map (already drained, or never added)`);
  else {
    const res = await admin(info, 'DELETE', `/admin/shards/${encodeURIComponent(id)}`);
    if (res.status !== 202) throw new CommandError(`DELETE /admin/shards/${id} refused: ${describeError(res)}; nothing changed`);
    started = res.body as MigrationStarted;
    o.out(`router accepted: draining ${id} into the other shards (migration ${started.migration.id})`);
  }
  const done = await waitForMigration(o, info, started);
  if (done.shards.some((s) => s.id === id)) throw new CommandError(`the migration ended with ${id} still in the map (aborted?); its pair keeps running; see ${info.routers[0]}/cluster/map`);
  const left = await stopPair(o, id);
  o.out(`done: ${id} is out of the map and its pair is stopped; ${left.shards.length} shards remain (map version ${done.version})`);
  o.out(`its data is kept in ${info.dataRoot}/shard${id.replace(/^shard-/, '')}-{leader,follower} (delete it by hand; npm run reset wipes all data)`);
}

// ---------------------------------------------------------------------------------------------
// The router.

interface AdminAnswer {
  status: number;
  body: unknown;
}

/**
 * An admin call to the first router that answers (with two, either may be down). An answer of
 * any status is returned; only when no router answers at all does it throw, and then the call
 * may or may not have been applied, so the message says how to find out.
 */
async function admin(info: ClusterFile, method: 'POST' | 'DELETE', path: string, body?: unknown): Promise<AdminAnswer> {
  const errors: string[] = [];
  for (const router of info.routers) {
    try {
      const res = await request(`${router}${path}`, {
        method,
        headers: { authorization: `Bearer ${info.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(ADMIN_REQUEST_TIMEOUT_MS),
      });
      const text = await res.body.text();
      return { status: res.statusCode, body: parseJson(text) };
    } catch (err) {
      errors.push(`${router}: ${(err as Error).message}`);
    }
  }
  throw new CommandError(`${method} ${path}: no router answered (${errors.join('; ')}); it may or may not have been applied: check ${info.routers[0]}/cluster/map and run the command again`);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** `409 migration_in_progress: ...` from the router's `{"error":{"code","message"}}`. */
export function describeError(res: AdminAnswer): string {
  const e = (res.body as { error?: { code?: string; message?: string } } | undefined)?.error;
  if (res.status === 404 && e?.code === undefined) return '404: this router has no resharding admin API';
  if (e === undefined) return `${res.status} ${typeof res.body === 'string' ? res.body.slice(0, 200) : JSON.stringify(res.body)}`;
  return `${res.status} ${e.code ?? 'error'}: ${e.message ?? ''}`.trim();
}

async function clusterMap(info: ClusterFile): Promise<ClusterMap> {
  const errors: string[] = [];
  for (const router of info.routers) {
    try {
      const res = await request(`${router}/cluster/map`, { signal: AbortSignal.timeout(ADMIN_REQUEST_TIMEOUT_MS) });
      if (res.statusCode === 200) return (await res.body.json()) as ClusterMap;
      errors.push(`${router}: ${res.statusCode} ${(await res.body.text()).slice(0, 200)}`);
    } catch (err) {
      errors.push(`${router}: ${(err as Error).message}`);
    }
  }
  throw new CommandError(`GET /cluster/map failed on every router (${errors.join('; ')})`);
}

/**
 * Polls the map until no migration runs (or another than ours: ours is then over), printing a
 * line whenever its progress changes. A router that does not answer for a while (restarting) is
 * waited for, within the same deadline.
 */
/** Until the map shows `started` over (a lagging router's older map does not count: see migrationEnded); with none, until it shows no migration. */
async function waitForMigration(o: CommandOptions, info: ClusterFile, started: MigrationStarted | undefined): Promise<ClusterMap> {
  const timeoutMs = o.migrationTimeoutMs ?? MIGRATION_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    let map: ClusterMap | undefined;
    try {
      map = await clusterMap(info);
    } catch (err) {
      if (last !== 'unreachable') o.out(`${(err as Error).message}; retrying`);
      last = 'unreachable';
    }
    const m = map?.migration;
    if (map !== undefined && (started === undefined ? m === null : migrationEnded(map, started))) return map;
    if (m !== undefined && m !== null && describeMigration(m) !== last) o.out((last = describeMigration(m)));
    if (Date.now() > deadline) throw new CommandError(`the migration is still running after ${timeoutMs} ms; it goes on in the router: watch ${info.routers[0]}/cluster/map`);
    await sleep(o.mapPollMs ?? MAP_POLL_MS);
  }
}

/** One progress line: `migration m1 (add shard-3): copying, 1024 slots moving (shard-0->shard-3 341, ...), 5000 keys copied, lag 3`. */
export function describeMigration(m: MigrationView): string {
  const moves = m.moves.map((mv) => `${mv.source}->${mv.target} ${mv.slots}`).join(', ');
  const p = m.progress;
  const progress = p === null ? '' : `, ${p.phase}: ${p.keysCopied} keys copied, ${p.entriesTailed} entries tailed, lag ${p.lagEntries ?? '?'}`;
  return `migration ${m.id} (${m.kind} ${m.shard}): ${m.state}, ${m.slotsMoving} slots moving (${moves})${progress}`;
}

/** How many slots the map gives `id`. */
function slotsOf(map: ClusterMap, id: string): number {
  return (map.slots ?? []).filter(([, , owner]) => owner === id).reduce((n, [from, to]) => n + (to - from), 0);
}
