import type Router from '@koa/router';
import type Koa from 'koa';
import { BATCH_ENTRIES_MAX, EPOCH_HEADER, jsonBody, KvError, parseImportOpsBody, requireJson, SlotSet, slotRangesSchema } from '@shardkv/common';
import { Readable } from 'node:stream';
import { z } from 'zod';
import type { ShardNode } from '../node';
import type { Command } from '../replication/commands';
import type { KvStore, StoreView } from '../store';
import { exportLines, keysIn } from './export';

/** An export waits at most this long for its view's entries to commit (they normally do within a replication round). */
export const EXPORT_COMMIT_WAIT_MS_MAX = 5000;
/** Keys one purge call deletes at most; the caller calls again while `more`. */
export const PURGE_KEYS_PER_CALL_MAX = 50_000;
/** Delete batches of a purge in flight at once. */
export const PURGE_BATCHES_IN_FLIGHT_MAX = 1;

const exportSchema = z.object({ slots: slotRangesSchema, fromSeq: z.number().int().nonnegative() });
const copyId = z.string().min(1).max(100);
/** `copy`: the target's purge before a copy names it; from then on only that copy's imports are taken. */
const purgeSchema = z.object({ slots: slotRangesSchema, copy: copyId.optional() });
const importSchema = z.object({ copy: copyId, ops: z.array(z.unknown()) });

/**
 * The copy a target leader takes imports from: set by the purge that starts it. An import of an
 * abandoned copy (a batch whose answer was lost, arriving after the copy was started again) is
 * refused, so it cannot bring back a key the new copy's snapshot no longer has. Kept in memory:
 * a new leader takes no import until the next copy's purge names one.
 */
const currentCopy = new WeakMap<ShardNode, string>();

/**
 * The node's side of a slot migration, driven by the coordinator (services/router/src/migration):
 * the source leader exports its moving slots, the target leader imports them through its own
 * log (so they are durable on both target nodes like any write), and either side purges keys
 * of slots it does not serve (the source after the cutover, the target before a copy starts).
 * Only a serving leader takes part: whatever it exports is committed, whatever it imports and
 * purges replicates.
 */
export function addMigrationRoutes(router: Router, node: ShardNode, store: KvStore): void {
  router.post('/internal/export', requireJson, jsonBody(), async (ctx) => {
    const parsed = exportSchema.safeParse(ctx.request.body);
    if (!parsed.success) throw new KvError('invalid_body', `bad export request: ${parsed.error.issues[0]?.message}`);
    const view = await committedView(node, store, ctx);
    ctx.type = 'application/x-ndjson';
    ctx.body = Readable.from(closing(view, exportLines(view, new SlotSet(parsed.data.slots), parsed.data.fromSeq)));
  });

  router.post('/internal/import', requireJson, jsonBody(), async (ctx) => {
    const body = importSchema.safeParse(ctx.request.body);
    if (!body.success) throw new KvError('invalid_body', `bad import: ${body.error.issues[0]?.message}`);
    const ops = parseImportOpsBody({ ops: body.data.ops });
    const leader = node.servingLeader(ctx.get(EPOCH_HEADER));
    if (currentCopy.get(node) !== body.data.copy) throw new KvError('wrong_shard', `import of copy ${body.data.copy}, which is not the copy this leader takes (${currentCopy.get(node) ?? 'none'}): it was abandoned`);
    const stray = ops.find((op) => node.ownership?.importable(op.key) !== true);
    if (stray !== undefined) throw new KvError('wrong_shard', `import of key ${JSON.stringify(stray.key).slice(0, 80)}: its slot is not one this shard is importing (map version ${node.mapVersion})`, { mapVersion: node.mapVersion });
    const results = await leader.writeBatch(ops.map((op): Command => (op.op === 'put' && op.exp !== undefined ? { op: 'put', key: op.key, value: op.value, expiresAtMs: op.exp } : op)));
    const last = results[results.length - 1];
    ctx.body = { imported: ops.length, seq: last !== undefined && 'seq' in last ? last.seq : 0 };
  });

  router.post('/internal/purge', requireJson, jsonBody(), async (ctx) => {
    const parsed = purgeSchema.safeParse(ctx.request.body);
    if (!parsed.success) throw new KvError('invalid_body', `bad purge request: ${parsed.error.issues[0]?.message}`);
    node.servingLeader(ctx.get(EPOCH_HEADER));
    if (parsed.data.copy !== undefined) currentCopy.set(node, parsed.data.copy);
    ctx.body = await purge(node, store, new SlotSet(parsed.data.slots));
  });
}

/**
 * A view of the store whose entries are all committed. The leader persists in parallel with its
 * follower, so its store may hold entries a failover would discard; exporting one could move a
 * write that never happened. Waits (bounded) for the commit to pass the view's seq.
 */
async function committedView(node: ShardNode, store: KvStore, ctx: Koa.Context): Promise<StoreView> {
  const leader = node.servingLeader(ctx.get(EPOCH_HEADER));
  const view = store.view();
  try {
    await until(() => leader.status.committedSeq >= view.seq, () => leader.serving, `export: entries through ${view.seq} did not commit`);
  } catch (err) {
    view.close();
    throw err;
  }
  return view;
}

async function* closing(view: StoreView, lines: AsyncIterable<string>): AsyncGenerator<string> {
  try {
    yield* lines;
  } finally {
    view.close();
  }
}

/** Deletes keys of slots this shard does not serve, through the log, in batches; at most PURGE_KEYS_PER_CALL_MAX a call. */
async function purge(node: ShardNode, store: KvStore, slots: SlotSet): Promise<{ deleted: number; more: boolean }> {
  const leader = node.servingLeader('');
  // Every slot is checked: one of them served here would delete keys this shard owns.
  const owned = node.ownership;
  const served = owned === undefined ? undefined : slots.ranges().flatMap(([from, to]) => Array.from({ length: to - from }, (_, i) => from + i)).find((slot) => !owned.purgeable(slot));
  if (owned === undefined || served !== undefined) throw new KvError('bad_request', `purge refused: ${owned === undefined ? 'this node has no slot map' : `slot ${served} is served by this shard`}`);
  // Entries sequenced before this call (an import of an abandoned copy) must be in the view.
  const through = leader.status.lastSeq;
  await until(() => store.seq >= through, () => true, `purge: entries through ${through} were not persisted`);
  const view = store.view();
  let found;
  try {
    found = await keysIn(view, slots, PURGE_KEYS_PER_CALL_MAX);
  } finally {
    view.close();
  }
  // Distinct keys, so the delete batches may be in flight together (the log pipelines them).
  const batches: Array<Array<{ op: 'del'; key: string }>> = [];
  for (let i = 0; i < found.keys.length; i += BATCH_ENTRIES_MAX) batches.push(found.keys.slice(i, i + BATCH_ENTRIES_MAX).map((key) => ({ op: 'del' as const, key })));
  for (let i = 0; i < batches.length; i += PURGE_BATCHES_IN_FLIGHT_MAX) await Promise.all(batches.slice(i, i + PURGE_BATCHES_IN_FLIGHT_MAX).map((b) => leader.writeBatch(b)));
  return { deleted: found.keys.length, more: found.more };
}

/**
 * Waits (polling, bounded by EXPORT_COMMIT_WAIT_MS_MAX) until `done`; 503 not_ready if it does
 * not come in time or `valid` stops holding (the leader stopped serving).
 */
async function until(done: () => boolean, valid: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + EXPORT_COMMIT_WAIT_MS_MAX;
  while (!done()) {
    if (!valid() || Date.now() > deadline) throw new KvError('not_ready', `${what} within ${EXPORT_COMMIT_WAIT_MS_MAX} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
