import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster } from '../cluster';
import { formatSummary, profilerEnv as sharedProfilerEnv, readProfile, summarizeProfile } from '../profile';
import { stopSkeletons, type Skeletons } from '../skeletons';
import { fmtRun, OUT_DIR, ROOT, type BenchConfig } from './config';
import type { Driver } from './drivers';
import type { Systems } from './systems';

/**
 * BENCH_PROFILE=1: a V8 CPU profile of every node of ours and of skeleton (b) under the PUT load.
 * Each node profiles itself through the preload of `../profile.ts` (started on SIGUSR2, so that
 * start-up, seeding and warm-up stay out; written at exit), which `bench:load` uses too.
 */

/** Functions listed per process in the summary. */
const TOP_FUNCTIONS_MAX = 15;

/** The environment that makes a node profile itself (only the nodes get it, not this process). */
export function profilerEnv(tmp: string): Record<string, string> {
  return sharedProfilerEnv(join(tmp, 'prof'), { sampler: true });
}

export interface ProfileDeps {
  cfg: BenchConfig;
  tmp: string;
  cluster: Cluster;
  skeletons: Skeletons;
  driver: Driver;
  systems: Systems;
}

/**
 * Every node runs under the sampling profiler (profilerEnv); PUT load goes through our router,
 * then through skeleton (b)'s; stopping the nodes (SIGTERM, a clean exit) writes the profiles,
 * which are matched to nodes by pid. The summary is printed and kept beside the profiles.
 */
export async function profile(d: ProfileDeps): Promise<void> {
  const { cluster, skeletons: skel, driver, systems, cfg } = d;
  const pids: Record<string, number | undefined> = {
    'ours router': cluster.process(cluster.router.name).pid,
    ...Object.fromEntries(cluster.shards.flatMap((s) => [[`ours ${s.id} leader`, cluster.process(s.leader.name).pid], [`ours ${s.id} follower`, cluster.process(s.follower.name).pid]])),
    'skeleton (b) router': skel.putRouter.proc.pid,
    'skeleton (b) leader': skel.putLeader.proc.pid,
    'skeleton (b) follower': skel.putFollower.proc.pid,
  };
  for (const sys of [systems.ours, systems.skeletonB]) await driver.run(sys, 'PUT', cfg.warmupSeconds);
  for (const p of [...cluster.nodes.map((n) => cluster.process(n.name)), ...skel.all.map((n) => n.proc)]) p.signal('SIGUSR2');
  const ours = await driver.run(systems.ours, 'PUT', cfg.seconds);
  const skeleton = await driver.run(systems.skeletonB, 'PUT', cfg.seconds);
  const lines = [`PUT under the CPU profiler, ${cfg.seconds} s each (both profiled throughout): ours ${fmtRun(ours)} | skeleton (b) ${fmtRun(skeleton)}`];
  await Promise.all([cluster.stop(), stopSkeletons(skel)]);
  const outDir = join(OUT_DIR, 'profiles');
  mkdirSync(outDir, { recursive: true });
  for (const [name, pid] of Object.entries(pids)) {
    const prof = readProfile(join(d.tmp, 'prof'), pid);
    if (prof === undefined) {
      lines.push('', `${name}: no profile written (pid ${pid})`);
      continue;
    }
    const kept = join(outDir, `${name.replace(/[^a-z0-9]+/gi, '-')}.cpuprofile`);
    copyFileSync(join(d.tmp, 'prof', `${pid}.cpuprofile`), kept);
    lines.push('', `${formatSummary(name, summarizeProfile(prof, TOP_FUNCTIONS_MAX))}\n  (${kept.replace(`${ROOT}/`, '')})`);
  }
  const summary = join(outDir, 'summary.txt');
  writeFileSync(summary, `${lines.join('\n')}\n`);
  console.log(`${lines.join('\n')}\n\nprofiles (open in Chrome DevTools or speedscope) and this summary: ${outDir.replace(`${ROOT}/`, '')}/`);
}
