import { execFileSync } from 'node:child_process';
import { request } from 'undici';
import { EtcdCluster, ensureEtcd } from '../etcd';
import type { LineSink } from '../supervisor';
import type { BenchConfig, System } from './config';

/**
 * etcd 3.4 in the benchmark: 3 members from Debian's etcd-server (installed by ensureEtcd when
 * missing and root), fsync on (etcd's default), their data under the run's temp root on the same
 * disk as our LMDB directories. wrk talks to one member's JSON gateway (POST /v3/kv/put,
 * /v3/kv/range), by default the leader's, so etcd gets its best case; on a follower the gateway
 * hands the request to that member's gRPC server, which forwards a put's proposal to the leader
 * and asks the leader for a read index before a linearizable range (one more hop, like our router).
 */
export interface EtcdTarget {
  cluster: EtcdCluster;
  system: System;
  version: string;
  /** The member wrk talks to, and whether it led when the run started. */
  memberName: string;
  leaderName: string | undefined;
}

/** etcd's own defaults (the tests' launcher uses faster ones): a benchmark runs etcd as shipped. */
const ETCD_HEARTBEAT_INTERVAL_MS = 100;
const ETCD_ELECTION_TIMEOUT_MS = 1000;
/** etcd's default backend quota; the bench writes far less (each put a revision of ~100 bytes). */
const ETCD_QUOTA_BACKEND_BYTES = 2 * 1024 ** 3;
const STATUS_TIMEOUT_MS = 2000;
const ETCD_MEMBERS = 3;

export async function startEtcdTarget(cfg: BenchConfig, dataRoot: string, sink: LineSink): Promise<EtcdTarget> {
  const binary = await ensureEtcd();
  const cluster = await EtcdCluster.create({
    members: ETCD_MEMBERS,
    dataRoot,
    sink,
    heartbeatIntervalMs: ETCD_HEARTBEAT_INTERVAL_MS,
    electionTimeoutMs: ETCD_ELECTION_TIMEOUT_MS,
    quotaBackendBytes: ETCD_QUOTA_BACKEND_BYTES,
  });
  await cluster.start();
  const leader = await etcdLeaderIndex(cluster.endpoints);
  // A follower is the one after the leader; with no leader known, member 0 is whatever it is.
  const index = cfg.etcdMember === 'leader' ? (leader ?? 0) : ((leader ?? 0) + 1) % ETCD_MEMBERS;
  const memberName = cluster.names[index]!;
  const role = leader === undefined ? 'role unknown' : index === leader ? 'the leader' : 'a follower';
  const system: System = {
    id: 'etcd',
    label: `etcd: ${memberName} (${role})`,
    url: cluster.endpoints[index]!,
    api: 'etcd',
    processes: () => cluster.names.map((n, i) => ({ name: `etcd member ${n}${i === leader ? ' (leader)' : ''}`, pid: cluster.pid(i) })),
  };
  return { cluster, system, version: etcdVersion(binary), memberName, leaderName: leader === undefined ? undefined : cluster.names[leader] };
}

function etcdVersion(binary: string): string {
  const out = execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  return /etcd Version: (\S+)/.exec(out)?.[1] ?? 'unknown';
}

/** The index of the member that says it leads (POST /v3/maintenance/status on each). */
export async function etcdLeaderIndex(endpoints: string[]): Promise<number | undefined> {
  const says = await Promise.all(
    endpoints.map(async (url) => {
      try {
        const res = await request(`${url}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
        const s = (await res.body.json()) as { header?: { member_id?: string }; leader?: string };
        return s.leader !== undefined && s.header?.member_id === s.leader;
      } catch {
        return false;
      }
    }),
  );
  const i = says.indexOf(true);
  return i < 0 ? undefined : i;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

async function etcdRange(url: string, body: Record<string, unknown>): Promise<{ count?: string; kvs?: Array<{ value?: string }> }> {
  const res = await request(`${url}/v3/kv/range`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
  if (res.statusCode !== 200) throw new Error(`etcd range answered ${res.statusCode}: ${await res.body.text()}`);
  return (await res.body.json()) as { count?: string; kvs?: Array<{ value?: string }> };
}

/**
 * After wrk's warm-up puts: etcd holds exactly the seeded keys (so the Lua script's base64 keys
 * are the seeded ones, not new keys beside them) and a key's value decodes to what was written.
 */
export async function verifyEtcd(url: string, keyCount: number, value: string): Promise<void> {
  // range_end "bench." is the prefix "bench-" with its last byte plus one: every key under the prefix.
  const all = await etcdRange(url, { key: b64('bench-'), range_end: b64('bench.'), count_only: true });
  if (Number(all.count) !== keyCount) throw new Error(`etcd holds ${all.count} bench keys after the warm-up, expected ${keyCount}: the wrk script's keys are not the seeded ones`);
  const one = await etcdRange(url, { key: b64('bench-0') });
  const got = Buffer.from(one.kvs?.[0]?.value ?? '', 'base64').toString();
  if (got !== value) throw new Error(`etcd's bench-0 holds ${JSON.stringify(got)}, expected ${JSON.stringify(value)}`);
}
