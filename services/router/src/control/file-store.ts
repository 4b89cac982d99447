import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pidAlive } from '@shardkv/common';
import { z } from 'zod';
import type { Candidate, Leadership, MetaStore, PutResult, Versioned } from './meta-store';
import { COORDINATOR_KEY, coordinatorInfoSchema, type CoordinatorInfo, type ShardAddress, type ShardRecord } from './records';

const fileSchema = z.object({
  revision: z.number().int().nonnegative(),
  records: z.record(z.string(), z.object({ value: z.string(), revision: z.number().int().positive() })),
});
type FileState = z.infer<typeof fileSchema>;

/**
 * The embedded control plane: one JSON file, replaced atomically and fsynced on every write, in
 * the router's data directory. It serves exactly one router, which a lock file enforces: two
 * routers on one file would be two coordinators. That router wins every election at once; its
 * generation still grows with each start, so nodes can tell a restarted coordinator from an old one.
 */
export class FileMetaStore implements MetaStore {
  readonly kind = 'embedded';
  private readonly listeners = new Set<() => void>();
  private leadership: FileLeadership | undefined;

  private constructor(
    private readonly dir: string,
    private state: FileState,
  ) {}

  static open(dir: string): FileMetaStore {
    mkdirSync(dir, { recursive: true });
    takeLock(join(dir, 'router.lock'));
    const file = join(dir, 'control.json');
    const state = existsSync(file) ? fileSchema.parse(JSON.parse(readFileSync(file, 'utf8'))) : { revision: 0, records: {} };
    return new FileMetaStore(dir, state);
  }

  async list(): Promise<Map<string, Versioned>> {
    return new Map(Object.entries(this.state.records).map(([k, v]) => [k, { ...v }]));
  }

  async put(key: string, value: string, expectedRevision: number, fence?: Leadership): Promise<PutResult> {
    if (fence !== undefined && (fence !== this.leadership || !fence.valid())) return { ok: false, reason: 'deposed' };
    if ((this.state.records[key]?.revision ?? 0) !== expectedRevision) return { ok: false, reason: 'conflict' };
    const revision = this.state.revision + 1;
    this.save({ ...this.state, revision, records: { ...this.state.records, [key]: { value, revision } } });
    this.notify();
    return { ok: true, revision };
  }

  watch(onChange: () => void): () => void {
    this.listeners.add(onChange);
    return () => this.listeners.delete(onChange);
  }

  /** Elected at once. The generation is the revision of the coordinator record it writes, as with etcd. */
  async campaign(candidate: Candidate): Promise<Leadership> {
    const revision = this.state.revision + 1;
    const info = JSON.stringify({ id: candidate.id, url: candidate.url, since: Date.now() });
    this.save({ revision, records: { ...this.state.records, [COORDINATOR_KEY]: { value: info, revision } } });
    this.leadership = new FileLeadership(revision);
    this.notify();
    return this.leadership;
  }

  async coordinator(): Promise<CoordinatorInfo | undefined> {
    const rec = this.state.records[COORDINATOR_KEY];
    if (rec === undefined || this.leadership === undefined || !this.leadership.valid()) return undefined;
    return { ...coordinatorInfoSchema.parse(JSON.parse(rec.value)), generation: rec.revision };
  }

  async close(): Promise<void> {
    await this.leadership?.resign();
    rmSync(join(this.dir, 'router.lock'), { force: true });
  }

  private notify(): void {
    queueMicrotask(() => {
      for (const l of this.listeners) l();
    });
  }

  /**
   * Synchronous on purpose: writes are rare (a failover, a follower leaving or rejoining), and a
   * synchronous save keeps the in-memory state and the file in one step. Temp file, fsync,
   * rename, fsync the directory: the file is old or new, never torn.
   */
  private save(next: FileState): void {
    const tmp = join(this.dir, `.control.${process.pid}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(next, null, 2)}\n`);
    fsyncPath(tmp);
    renameSync(tmp, join(this.dir, 'control.json'));
    fsyncPath(this.dir);
    this.state = next;
  }
}

class FileLeadership implements Leadership {
  private active = true;
  private end!: () => void;
  readonly ended = new Promise<void>((resolve) => (this.end = resolve));

  constructor(readonly generation: number) {}

  valid(): boolean {
    return this.active;
  }

  async resign(): Promise<void> {
    this.active = false;
    this.end();
  }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Refuses a data directory that a live router already uses; a lock left by a dead one is taken over. */
function takeLock(lockFile: string): void {
  if (existsSync(lockFile)) {
    const pid = Number(readFileSync(lockFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
      throw new Error(`${lockFile}: another router (pid ${pid}) uses this data directory; the embedded control plane serves one router only (run several routers with ETCD_ENDPOINTS)`);
    }
  }
  writeFileSync(lockFile, `${process.pid}\n`);
}
const legacySchema = z.array(z.object({ id: z.string(), epoch: z.number().int().positive(), leaderIndex: z.union([z.literal(0), z.literal(1)]), inSync: z.boolean() }));

/**
 * The shard records of a router from before the control plane (`shards.json`: per shard, which
 * configured node leads, by position). Imported once into a new embedded store, so an upgraded
 * router keeps the epochs its nodes already hold (they would refuse older ones).
 */
export function legacyRecords(dir: string, addresses: readonly ShardAddress[]): ShardRecord[] {
  const file = join(dir, 'shards.json');
  if (!existsSync(file) || existsSync(join(dir, 'control.json'))) return [];
  return legacySchema.parse(JSON.parse(readFileSync(file, 'utf8'))).flatMap((s) => {
    const a = addresses.find((x) => x.id === s.id);
    if (a === undefined) return [];
    const [leader, follower] = s.leaderIndex === 0 ? [a.leader, a.follower] : [a.follower, a.leader];
    return [{ id: s.id, epoch: s.epoch, leader, follower, inSync: s.inSync }];
  });
}
