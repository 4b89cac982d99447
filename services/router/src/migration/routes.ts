import type Router from '@koa/router';
import { isKvError, jsonBody, KvError, requireJson, SLOT_COUNT, type ClusterMap, type MigrationStarted, type MigrationView } from '@shardkv/common';
import { request } from 'undici';
import type Koa from 'koa';
import { z } from 'zod';
import type { ShardTable } from '../control/shard-table';
import type { MigrationDriver } from './driver';

const url = z.url().transform((u) => u.replace(/\/+$/, ''));
const addSchema = z.object({ id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'id: 1-64 of A-Z a-z 0-9 . _ -'), leader: url, follower: url }).strict();

/**
 * Resharding's HTTP face: `GET /cluster/map` (public: what smart clients route by) and the admin
 * commands that start a migration. Those answer 202 once the migration is recorded in the
 * control plane; the coordinator drives it from there (see driver.ts), and /cluster/map shows it.
 */
export function addReshardRoutes(router: Router, table: ShardTable, migrations: MigrationDriver, admin: Koa.Middleware): void {
  router.get('/cluster/map', (ctx) => {
    ctx.body = clusterMap(table, migrations);
  });

  router.post('/admin/shards', admin, requireJson, jsonBody(), async (ctx) => {
    const parsed = addSchema.safeParse(ctx.request.body);
    if (!parsed.success) throw new KvError('invalid_body', `add a shard with {"id","leader","follower"}: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message}`);
    await onCoordinator(ctx, table, JSON.stringify(parsed.data), () => migrations.add(parsed.data));
  });

  router.delete('/admin/shards/:id', admin, async (ctx) => {
    await onCoordinator(ctx, table, undefined, () => migrations.remove(ctx.params['id']!));
  });
}

const FORWARDED_HEADER = 'x-shardkv-forwarded';
const FORWARD_TIMEOUT_MS = 10_000;

/**
 * Starts a migration here if this router coordinates; otherwise hands the request, once, to the
 * router that does (the control plane names it), so that any router takes admin commands.
 */
async function onCoordinator(ctx: Koa.Context, table: ShardTable, body: string | undefined, start: () => Promise<MigrationView>): Promise<void> {
  try {
    const migration = await start();
    // The version that recorded it: a client waits for a newer map without it (see migrationEnded).
    ctx.body = { migration, mapVersion: table.map.version } satisfies MigrationStarted;
    ctx.status = 202;
  } catch (err) {
    const target = isKvError(err, 'not_coordinator') ? err.details['coordinator'] : undefined;
    if (typeof target !== 'string' || ctx.get(FORWARDED_HEADER) !== '') throw err;
    const res = await request(`${target}${ctx.path}`, { method: ctx.method as 'POST' | 'DELETE', body, headers: { authorization: ctx.get('authorization'), 'content-type': 'application/json', [FORWARDED_HEADER]: '1' }, signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS) }).catch(() => {
      throw err;
    });
    ctx.status = res.statusCode;
    ctx.type = 'application/json';
    ctx.body = await res.body.text();
  }
}

function clusterMap(table: ShardTable, migrations: MigrationDriver): ClusterMap {
  const map = table.map;
  return {
    version: map.version,
    slotCount: SLOT_COUNT,
    slotHash: 'md5-le32-top12',
    shards: map.shards.map((s) => {
      const r = table.state(s.id);
      return { id: s.id, leader: r.leader, follower: r.follower, epoch: r.epoch };
    }),
    slots: map.slots ?? null,
    migration: migrations.view(),
  };
}
