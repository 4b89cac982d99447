import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { statCpuTimes, ticksPerSec } from './bench/cpu';

/**
 * CPU accounting for benchmarks: how much CPU each process spent, and on what.
 *
 * Node 20 refuses `--cpu-prof` in NODE_OPTIONS, and the supervisor passes no flags to its
 * children, so a process is made to profile itself by preloading (`--require`, allowed there)
 * PRELOAD, which runs the same V8 sampling profiler through `node:inspector`. It starts on
 * SIGUSR2 (so start-up and warm-up stay out), or at once with PROF_NOW=1 (a short-lived command
 * such as `kv load`), and at exit writes `<pid>.cpuprofile` and `<pid>.cpu.json` (user and system
 * CPU microseconds since the start) into PROF_DIR. With PROF_SAMPLER=0 only the CPU times are
 * kept, so the figures carry no sampling overhead. A same-thread inspector session answers
 * synchronously, so the 'exit' handler can still write.
 */
const PRELOAD = `'use strict';
const inspector = require('node:inspector');
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const dir = process.env.PROF_DIR;
const sampler = process.env.PROF_SAMPLER !== '0';
const session = new inspector.Session();
session.connect();
if (sampler) session.post('Profiler.enable');
let from;
const begin = () => {
  if (from !== undefined) return;
  from = process.cpuUsage();
  if (sampler) session.post('Profiler.start');
};
process.on('SIGUSR2', begin);
if (process.env.PROF_NOW === '1') begin();
process.on('exit', () => {
  if (from === undefined) return;
  const used = process.cpuUsage(from);
  writeFileSync(join(dir, process.pid + '.cpu.json'), JSON.stringify({ userUs: used.user, systemUs: used.system }));
  if (sampler) session.post('Profiler.stop', (err, res) => { if (!err) writeFileSync(join(dir, process.pid + '.cpuprofile'), JSON.stringify(res.profile)); });
});
`;

const ROOT = resolve(__dirname, '..', '..');

/** The environment that makes a Node process account for its CPU (see PRELOAD); `now`: from its start. */
export function profilerEnv(dir: string, opts: { sampler: boolean; now?: boolean }): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  const preload = join(dir, 'profiler.cjs');
  writeFileSync(preload, PRELOAD);
  return { NODE_OPTIONS: `--require ${preload}`, PROF_DIR: dir, PROF_SAMPLER: opts.sampler ? '1' : '0', ...(opts.now === true ? { PROF_NOW: '1' } : {}) };
}

export interface CpuTime {
  userMs: number;
  systemMs: number;
}

/** What a process wrote at exit, or undefined when it wrote nothing (it never started, or was killed). */
export function readCpuTime(dir: string, pid: number | undefined): CpuTime | undefined {
  const file = join(dir, `${pid}.cpu.json`);
  if (pid === undefined || !existsSync(file)) return undefined;
  const t = JSON.parse(readFileSync(file, 'utf8')) as { userUs: number; systemUs: number };
  return { userMs: t.userUs / 1000, systemMs: t.systemUs / 1000 };
}

/** User and system CPU of a live process of any kind (redis-server), from /proc (Linux). */
export function procCpuTime(pid: number): CpuTime | undefined {
  try {
    const t = statCpuTimes(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    const msPerTick = 1000 / ticksPerSec();
    return { userMs: t.userTicks * msPerTick, systemMs: t.systemTicks * msPerTick };
  } catch {
    return undefined;
  }
}

export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  samples: number[];
  timeDeltas: number[];
}

export function readProfile(dir: string, pid: number | undefined): CpuProfile | undefined {
  const file = join(dir, `${pid}.cpuprofile`);
  return pid === undefined || !existsSync(file) ? undefined : (JSON.parse(readFileSync(file, 'utf8')) as CpuProfile);
}

export interface ProfileSummary {
  busyMs: number;
  /** Self time by library or part of the runtime, largest first, as shares of busy time. */
  areas: Array<{ area: string; share: number }>;
  /** The functions with the most self time (summed over call sites), largest first. */
  top: Array<{ fn: string; ms: number; share: number }>;
  /**
   * Busy time by the innermost shardkv file on the stack (what called into the libraries and
   * the runtime), e.g. an LMDB put counts for lmdb-store: the cost of each of our layers.
   */
  files: Array<{ file: string; share: number }>;
}

export function summarizeProfile(p: CpuProfile, topN = 12): ProfileSummary {
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
  const share = (us: number) => (busyUs === 0 ? 0 : us / busyUs);
  const byFile = new Map<string, number>();
  const ownerOf = owners(p);
  p.samples.forEach((id, i) => {
    const owner = ownerOf.get(id);
    if (owner !== 'idle') add(byFile, owner ?? 'runtime (no shardkv frame: event loop, sockets)', p.timeDeltas[i + 1] ?? 0);
  });
  return {
    files: [...byFile].sort((a, b) => b[1] - a[1]).map(([file, us]) => ({ file, share: share(us) })),
    busyMs: busyUs / 1000,
    areas: [...byArea].filter(([k]) => k !== 'idle').sort((a, b) => b[1] - a[1]).map(([k, us]) => ({ area: k, share: share(us) })),
    top: [...byFunction].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, topN).map(([fn, us]) => ({ fn, ms: us / 1000, share: share(us) })),
  };
}

export function formatSummary(name: string, s: ProfileSummary): string {
  const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
  const lines = [
    `${name}: ${s.busyMs.toFixed(0)} ms busy under the sampler`,
    `  by area: ${s.areas.filter((a) => a.share >= 0.005).map((a) => `${a.area} ${pct(a.share)}`).join(', ')}`,
    `  by shardkv file (innermost on the stack): ${s.files.filter((f) => f.share >= 0.005).map((f) => `${f.file} ${pct(f.share)}`).join(', ')}`,
  ];
  for (const t of s.top) lines.push(`  ${(100 * t.share).toFixed(1).padStart(5)}%  ${t.ms.toFixed(0).padStart(6)} ms  ${t.fn}`);
  return lines.join('\n');
}

/** For each profile node: the innermost shardkv source file on its stack, 'gc', 'idle', or undefined. */
function owners(p: CpuProfile): Map<number, string | undefined> {
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const memo = new Map<number, string | undefined>();
  const ownerOf = (id: number): string | undefined => {
    if (memo.has(id)) return memo.get(id);
    const f = byId.get(id)!.callFrame;
    let owner: string | undefined;
    if (f.functionName === '(idle)') owner = 'idle';
    else if (f.functionName === '(garbage collector)') owner = 'gc';
    else if (f.functionName === '(program)') owner = 'v8 (program)';
    else {
      const m = /\/(services|packages)\/([^/]+)\/dist\/(.+)\.js$/.exec(f.url);
      const up = parent.get(id);
      owner = m !== null ? `${m[2]}/${m[3]}` : up === undefined ? undefined : ownerOf(up);
    }
    memo.set(id, owner);
    return owner;
  };
  for (const n of p.nodes) ownerOf(n.id);
  return memo;
}

/** Which library (or part of the runtime) a sampled frame belongs to. */
function area(fn: string, url: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'gc';
  if (url === '') return fn === '(program)' ? 'v8 (program)' : 'native (writev, fsync, ...)';
  if (url.startsWith('wasm://')) return 'llhttp wasm (undici)';
  if (url.startsWith('node:')) return 'node core';
  const pkg = /^(@[^/]+\/[^/]+|[^/]+)/.exec(url)?.[1] ?? url;
  if (['services', 'packages', 'tools'].includes(pkg)) return 'shardkv code';
  if (/^(koa|@koa|koa-compose|delegates|path-to-regexp|http-errors|statuses|cookies|accepts|type-is|mime|content-type|on-finished|encodeurl|vary)/.test(pkg)) return 'koa & deps';
  return pkg;
}
