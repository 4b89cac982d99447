import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster } from '../cluster';
import { stopSkeletons, type Skeletons } from '../skeletons';
import { fmtRun, OUT_DIR, ROOT, type BenchConfig } from './config';
import type { Driver } from './drivers';
import type { Systems } from './systems';

/**
 * BENCH_PROFILE=1: a V8 CPU profile of every node of ours and of skeleton (b) under the PUT load.
 *
 * Node 20 refuses `--cpu-prof` in NODE_OPTIONS, and the supervisor passes no flags to its
 * children, so each node instead preloads (`--require`, allowed there) this script, which runs
 * the same V8 sampling profiler through `node:inspector`: started on SIGUSR2 (so that startup,
 * seeding and warm-up stay out of the profile), written to `<pid>.cpuprofile` at exit. A
 * same-thread inspector session answers synchronously, so the 'exit' handler can write it.
 */
const PROFILER_PRELOAD = `'use strict';
const inspector = require('node:inspector');
const { writeFileSync } = require('node:fs');
const session = new inspector.Session();
session.connect();
session.post('Profiler.enable');
let started = false;
process.on('SIGUSR2', () => {
  if (!started) session.post('Profiler.start');
  started = true;
});
process.on('exit', () => started && session.post('Profiler.stop', (err, res) => {
  if (!err) writeFileSync(require('node:path').join(process.env.BENCH_PROF_DIR, process.pid + '.cpuprofile'), JSON.stringify(res.profile));
}));
`;

/** Functions listed per process in the summary. */
const TOP_FUNCTIONS_MAX = 15;

/** The environment that makes a node profile itself (only the nodes get it, not this process). */
export function profilerEnv(tmp: string): Record<string, string> {
  const dir = join(tmp, 'prof');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(tmp, 'profiler.cjs'), PROFILER_PRELOAD);
  return { NODE_OPTIONS: `--require ${join(tmp, 'profiler.cjs')}`, BENCH_PROF_DIR: dir };
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
    const file = join(d.tmp, 'prof', `${pid}.cpuprofile`);
    if (pid === undefined || !existsSync(file)) {
      lines.push('', `${name}: no profile written (pid ${pid})`);
      continue;
    }
    const kept = join(outDir, `${name.replace(/[^a-z0-9]+/gi, '-')}.cpuprofile`);
    copyFileSync(file, kept);
    lines.push('', ...topSelf(name, JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, kept));
  }
  const summary = join(outDir, 'summary.txt');
  writeFileSync(summary, `${lines.join('\n')}\n`);
  console.log(`${lines.join('\n')}\n\nprofiles (open in Chrome DevTools or speedscope) and this summary: ${outDir.replace(`${ROOT}/`, '')}/`);
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function (summed over its call sites) and per area, as shares of busy time. */
function topSelf(name: string, p: CpuProfile, file: string): string[] {
  const frameOf = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, us: number) => m.set(k, (m.get(k) ?? 0) + us);
  p.samples.forEach((id, i) => {
    const f = frameOf.get(id)!;
    const us = p.timeDeltas[i + 1] ?? 0;
    const url = f.url.replace(/^file:\/\//, '').replace(`${ROOT}/`, '').replace(/.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '');
    add(byFunction, `${f.functionName || '(anonymous)'}${url === '' ? '' : ` ${url}:${f.lineNumber + 1}`}`, us);
    add(byArea, area(f.functionName, url), us);
  });
  const busyUs = [...byArea].filter(([k]) => k !== 'idle').reduce((a, [, us]) => a + us, 0);
  const share = (us: number) => `${((100 * us) / busyUs).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms`;
  const top = [...byFunction].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, TOP_FUNCTIONS_MAX);
  return [
    `${name}: ${(busyUs / 1000).toFixed(0)} ms busy, ${((byArea.get('idle') ?? 0) / 1000).toFixed(0)} ms idle (${file.replace(`${ROOT}/`, '')})`,
    `  by area: ${[...byArea].filter(([k]) => k !== 'idle').sort((a, b) => b[1] - a[1]).map(([k, us]) => `${k} ${((100 * us) / busyUs).toFixed(0)}%`).join(', ')}`,
    ...top.map(([k, us]) => `  ${share(us)}  ${k}`),
  ];
}

/** Which library (or part of the runtime) a sampled frame belongs to. */
function area(fn: string, url: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'gc';
  if (url === '') return fn === '(program)' ? 'v8 (program)' : 'native (writev, ...)';
  if (url.startsWith('wasm://')) return 'llhttp wasm (undici)';
  if (url.startsWith('node:')) return 'node core';
  const pkg = /^(@[^/]+\/[^/]+|[^/]+)/.exec(url)?.[1] ?? url;
  if (['services', 'packages', 'tools'].includes(pkg)) return pkg === 'tools' ? 'skeleton code' : 'shardkv code';
  if (/^(koa|@koa|koa-compose|delegates|path-to-regexp|http-errors|statuses|cookies|accepts|type-is|mime|content-type|on-finished|encodeurl|vary)/.test(pkg)) return 'koa & deps';
  return pkg;
}
