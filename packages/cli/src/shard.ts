import type { KvClient } from '@shardkv/client';
import { migrationEnded, type ClusterMap, type MigrationStarted, type MigrationView } from '@shardkv/common';
import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';

/**
 * `kv shard add|remove|list`: online resharding from the command line. add and remove only start
 * a migration (the router answers 202); by default the command then polls `/cluster/map` until
 * it shows no migration, so that "done" means the slots have moved.
 */
export interface ShardDeps {
  withClient<T>(fn: (c: KvClient) => Promise<T>): Promise<T>;
  fail(message: string, code: number): never;
  int(raw: string): number;
}

/** How often a waiting add/remove reads the map. */
const POLL_MS_DEFAULT = 500;
/** A migration still running after this long is reported (exit 3), not waited for forever; it keeps running. */
const WAIT_MS_DEFAULT = 30 * 60_000;
const STATES: ReadonlyArray<MigrationView['state']> = ['copying', 'frozen', 'cleanup'];

interface WaitOptions {
  wait: boolean;
  pollMs: number;
  waitMs: number;
  progress: boolean;
}

export function addShardCommands(program: Command, deps: ShardDeps): void {
  const shard = program.command('shard').description('add, remove or list shards (online resharding; add/remove need KV_ADMIN_TOKEN)');
  const waiting = (c: Command) =>
    c
      .option('--no-wait', 'return once the migration has started')
      .option('--poll-ms <ms>', 'while waiting, read /cluster/map this often', deps.int, POLL_MS_DEFAULT)
      .option('--wait-ms <ms>', 'give up waiting after this long (exit 3; the migration goes on)', deps.int, WAIT_MS_DEFAULT)
      .option('--no-progress', 'no progress bar');
  waiting(shard.command('add <id>').description('add a shard and move its share of the slots onto it'))
    .requiredOption('--leader <url>', "the new shard's leader")
    .requiredOption('--follower <url>', "the new shard's follower")
    .action(async (id: string, o: WaitOptions & { leader: string; follower: string }) => {
      await deps.withClient(async (c) => finish(c, await c.addShard({ id, leader: o.leader, follower: o.follower }), o, deps));
    });
  waiting(shard.command('remove <id>').description("move a shard's slots to the others, then drop it"))
    .action(async (id: string, o: WaitOptions) => {
      await deps.withClient(async (c) => finish(c, await c.removeShard(id), o, deps));
    });
  shard
    .command('list')
    .description('the map version, each shard with its slots and keys, and any migration')
    .option('--json', 'print the listing as JSON')
    .action(async (o: { json?: boolean }) => {
      const listing = await deps.withClient(listShards);
      process.stdout.write(o.json === true ? `${JSON.stringify(listing, null, 2)}\n` : formatListing(listing));
    });
}

/** After a migration started: report it, and unless --no-wait, follow it until the map shows none. */
async function finish(c: KvClient, answer: MigrationStarted, o: WaitOptions, deps: ShardDeps): Promise<void> {
  const started = answer.migration;
  process.stdout.write(`migration ${started.id} started: ${describeMigration(started)}\n`);
  if (!o.wait) return;
  const startedMs = Date.now();
  const show = progressOf(o.progress && process.stderr.isTTY === true);
  try {
    for (;;) {
      const map = await c.clusterMap();
      if (migrationEnded(map, answer)) {
        show.stop();
        process.stdout.write(`done: ${started.kind} ${started.shard} in ${((Date.now() - startedMs) / 1000).toFixed(1)} s; map version ${map.version}\n`);
        return;
      }
      if (map.migration !== null) show.update(map.migration);
      if (Date.now() - startedMs > o.waitMs) show.stop(), deps.fail(`migration ${started.id} still ${map.migration?.state ?? 'running'} after ${o.waitMs} ms; it goes on (see kv shard list)`, 3);
      await new Promise((resolve) => setTimeout(resolve, o.pollMs));
    }
  } finally {
    show.stop();
  }
}

/** A bar on a terminal (state by state, with the coordinator's progress when this router has it); else a line per change. */
function progressOf(tty: boolean): { update(m: MigrationView): void; stop(): void } {
  if (!tty) {
    let last = '';
    return {
      update: (m) => {
        const line = `${m.state}${m.progress === null ? '' : ` (${m.progress.phase})`}`;
        if (line !== last) process.stderr.write(`migration ${m.id}: ${(last = line)}\n`);
      },
      stop: () => undefined,
    };
  }
  const bar = new SingleBar({ format: '{shard} [{bar}] {state} | {progress}', hideCursor: true, stream: process.stderr }, Presets.shades_classic);
  let started = false;
  return {
    update: (m) => {
      const payload = { shard: `${m.kind} ${m.shard}`, state: m.state, progress: describeProgress(m.progress) };
      if (!started) bar.start(STATES.length, 0, payload), (started = true);
      bar.update(STATES.indexOf(m.state) + 1, payload);
    },
    stop: () => started && (bar.stop(), (started = false)),
  };
}

export interface ShardListing {
  version: number;
  /** False for a cluster whose map predates hash slots: no slot counts, no resharding. */
  slotMap: boolean;
  shards: Array<{ id: string; leader: string; follower: string; epoch: number; slots: number | null; keys: number | null; keysPercent: number | null }>;
  migration: MigrationView | null;
}

async function listShards(c: KvClient): Promise<ShardListing> {
  // Key counts are a nicety: a /status that fails (a node down) leaves them unknown, not the listing.
  const [map, status] = await Promise.all([c.clusterMap(), c.status().catch(() => undefined)]);
  const keys = keysByShard(status);
  const total = [...keys.values()].reduce((sum, n) => sum + n, 0);
  const slots = slotsByShard(map);
  return {
    version: map.version,
    slotMap: map.slots !== null,
    shards: map.shards.map((s) => {
      const k = keys.get(s.id);
      return { id: s.id, leader: s.leader, follower: s.follower, epoch: s.epoch, slots: slots?.get(s.id) ?? (slots === undefined ? null : 0), keys: k ?? null, keysPercent: k === undefined || total === 0 ? null : (100 * k) / total };
    }),
    migration: map.migration,
  };
}

function slotsByShard(map: ClusterMap): Map<string, number> | undefined {
  if (map.slots === null) return undefined;
  const counts = new Map<string, number>();
  for (const [from, to, id] of map.slots) counts.set(id, (counts.get(id) ?? 0) + (to - from));
  return counts;
}

/** Leader key counts from the router's /status (a leader that did not answer has none). */
function keysByShard(status: unknown): Map<string, number> {
  const shards = (status as { shards?: Array<{ id: string; leader?: { keys?: unknown } }> } | undefined)?.shards ?? [];
  return new Map(shards.flatMap((s) => (typeof s.leader?.keys === 'number' ? [[s.id, s.leader.keys] as const] : [])));
}

export function formatListing(l: ShardListing): string {
  const head = ['SHARD', 'LEADER', 'FOLLOWER', 'EPOCH', 'SLOTS', 'KEYS', '%KEYS'];
  const rows = l.shards.map((s) => [s.id, s.leader, s.follower, String(s.epoch), s.slots === null ? '-' : String(s.slots), s.keys === null ? '?' : String(s.keys), s.keysPercent === null ? '?' : `${s.keysPercent.toFixed(1)}%`]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `${cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`;
  const version = `map version ${l.version}${l.slotMap ? '' : ' (no slot map: the cluster predates hash slots, resharding is unsupported)'}\n`;
  const migration = l.migration === null ? 'no migration running\n' : `migration ${l.migration.id}: ${describeMigration(l.migration)}; ${l.migration.state}, ${describeProgress(l.migration.progress)}\n`;
  return version + line(head) + rows.map(line).join('') + migration;
}

function describeMigration(m: MigrationView): string {
  const moves = m.moves.map((mv) => `${mv.source} -> ${mv.target} (${mv.slots})`).join(', ');
  return `${m.kind} ${m.shard}, ${m.slotsMoving} slots moving${moves === '' ? '' : `: ${moves}`}`;
}

function describeProgress(p: MigrationView['progress']): string {
  if (p === null) return 'progress known only on the coordinating router';
  return `${p.phase}: ${p.keysCopied} keys copied, ${p.entriesTailed} entries tailed, lag ${p.lagEntries ?? '?'}`;
}
