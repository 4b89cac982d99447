// Bulk load through faults: while `kv load` runs, a follower is killed (kill -9, then restarted
// by the supervisor), or a leader is paused long enough to be replaced. Afterwards every line
// kv load did not report failed is in the store with its value, every line it reported failed
// definitely is not, and the indeterminate ones may be either: no entry reported loaded is lost.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { KvClient } from '@shardkv/client';
import { clusterForFile, eventually, shardsInSync, shardView, status, waitFor, type TestCluster } from './helpers';

const KV = resolve(__dirname, '..', 'packages', 'cli', 'dist', 'kv.js');
const LINES = 60_000;
let cluster: TestCluster;
let client: KvClient;
const { dir } = clusterForFile('shardkv-load-faults-', (c, k) => {
  cluster = c;
  client = k;
}, { timeoutMs: 20_000 });

interface Run {
  child: ChildProcess;
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
  running: () => boolean;
}

/** Starts `kv load` on a file of unique keys (`<prefix>-<n> v<n>`); requests of 1 MiB, so a fault meets many of them. */
function startLoad(prefix: string): { run: Run; file: string; failedFile: string } {
  const file = join(dir, `${prefix}.txt`);
  const failedFile = join(dir, `${prefix}.failed`);
  writeFileSync(file, Array.from({ length: LINES }, (_, i) => `${prefix}-${i + 1} v${i + 1}\n`).join(''));
  const child = spawn(process.execPath, [KV, '--url', cluster.router.url, '--timeout-ms', '30000', 'load', file, '--request-mib', '1', '--failed-lines', failedFile, '--no-progress'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let done = false;
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((res) => child.on('exit', (code) => ((done = true), res({ code, stdout, stderr }))));
  return { run: { child, exited, running: () => !done }, file, failedFile };
}

/** Waits until shard `index`'s leader has sequenced `entries` entries of the load, which must still be running. */
async function midLoad(run: Run, index: number, entries: number): Promise<void> {
  const leaderUrl = (await shardView(cluster, cluster.shards[index]!.id)).leader.url;
  const base = (await status(leaderUrl)).seq as number;
  const reached = await eventually(async () => ((await status(leaderUrl)).seq as number) >= base + entries || !run.running(), 60_000, 20);
  expect({ reached, loadStillRunning: run.running() }).toEqual({ reached: true, loadStillRunning: true });
}

/** Every line is loaded with its value unless reported failed; a definite failure is absent; an indeterminate one either. */
async function checkOutcomes(prefix: string, failedFile: string, stderr: string): Promise<{ failedDefinite: number; indeterminate: number }> {
  // A request that failed whole stops the load: the lines after it were never sent.
  const stoppedAt = Number(/kv load stopped at line (\d+)/.exec(stderr)?.[1] ?? Infinity);
  const failed = new Map<number, string>();
  for (const row of readFileSync(failedFile, 'utf8').split('\n').filter((l) => l !== '')) {
    const [line, , outcome] = row.split(' ');
    failed.set(Number(line), outcome!);
  }
  const wrong: unknown[] = [];
  for (let first = 1; first <= LINES; first += 1000) {
    const lines = Array.from({ length: Math.min(1000, LINES - first + 1) }, (_, i) => first + i);
    const r = await client.mget(lines.map((n) => `${prefix}-${n}`));
    r.results.forEach((res, i) => {
      const n = lines[i]!;
      const present = res.ok && res.value === `v${n}`;
      const outcome = failed.get(n) ?? (n >= stoppedAt ? 'definite' : undefined);
      if (outcome === undefined && !present) wrong.push({ line: n, reported: 'loaded', read: res.ok ? res.value : res.error.code });
      if (outcome === 'definite' && res.ok) wrong.push({ line: n, reported: 'failed, definite', read: res.value });
    });
  }
  expect(wrong.slice(0, 20)).toEqual([]);
  const outcomes = [...failed.values()];
  return { failedDefinite: outcomes.filter((o) => o === 'definite').length, indeterminate: outcomes.filter((o) => o === 'indeterminate').length };
}

describe('bulk load through faults', () => {
  test('kill -9 of a follower mid-load: every entry reported loaded is there, none reported definitely failed is', async () => {
    await waitFor('all shards in sync', cluster, () => shardsInSync(cluster));
    const { run, failedFile } = startLoad('kf');
    try {
      await midLoad(run, 0, 3000);
      const follower = cluster.shards[0]!.follower;
      const restartsBefore = cluster.process(follower.name).restarts;
      cluster.process(follower.name).signal('SIGKILL');
      const r = await run.exited;
      expect(r.stdout).toMatch(/^loaded \d+ keys, skipped 0 malformed line\(s\), failed \d+/);
      expect(cluster.process(follower.name).restarts).toBeGreaterThan(restartsBefore); // the fault happened
      // Reads wait for the shard to be whole again: a failover's new leader serves none until its follower confirms the term.
      await waitFor('shard-0 in sync again', cluster, () => shardsInSync(cluster, [0]), 30_000);
      const outcomes = await checkOutcomes('kf', failedFile, r.stderr);
      expect(r.code).toBe(outcomes.failedDefinite + outcomes.indeterminate > 0 ? 1 : 0);
    } finally {
      if (run.running()) run.child.kill('SIGKILL');
    }
  }, 120_000);

  test('a leader paused until it is replaced mid-load: every entry reported loaded is there, none reported definitely failed is', async () => {
    await waitFor('all shards in sync', cluster, () => shardsInSync(cluster));
    const before = await shardView(cluster, cluster.shards[1]!.id);
    const leader = cluster.process(cluster.nodes.find((n) => n.url === before.leader.url)!.name);
    const { run, failedFile } = startLoad('lp');
    try {
      await midLoad(run, 1, 3000);
      leader.signal('SIGSTOP');
      try {
        await waitFor('shard-1 has a new leader', cluster, async () => (await shardView(cluster, cluster.shards[1]!.id)).leader.url !== before.leader.url, 15_000);
      } finally {
        leader.signal('SIGCONT');
      }
      const r = await run.exited;
      expect(r.stdout).toMatch(/^loaded \d+ keys, skipped 0 malformed line\(s\), failed \d+/);
      await waitFor('shard-1 in sync again', cluster, () => shardsInSync(cluster, [1]), 30_000);
      const outcomes = await checkOutcomes('lp', failedFile, r.stderr);
      expect(r.code).toBe(outcomes.failedDefinite + outcomes.indeterminate > 0 ? 1 : 0);
    } finally {
      leader.signal('SIGCONT');
      if (run.running()) run.child.kill('SIGKILL');
    }
    expect((await shardView(cluster, cluster.shards[1]!.id)).epoch).toBeGreaterThan(before.epoch);
  }, 120_000);
});
