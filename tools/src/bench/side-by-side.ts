import { medianRun, type Run } from './config';
import { runLoops, type ClientOp, type LoopClient } from './client-loops';
import { machineLine } from './report';

/**
 * Two clients of one cluster measured in the same run: GET and PUT, `concurrency` closed loops
 * each, `rounds` alternating runs per side (the order flips each round, so drift in the
 * machine's load hits both alike), then the medians and the ratios candidate/baseline.
 * `npm run bench:client` (router vs direct) and `npm run bench:grpc` (HTTP vs gRPC) use it.
 */
export interface SideBySide {
  baseline: { name: string; client: LoopClient };
  candidate: { name: string; client: LoopClient };
  keys: readonly string[];
  valueBytes: number;
  concurrency: number;
  rounds: number;
  runMs: number;
  /**
   * Processes whose CPU time (ms so far) is read before and after every run, reported per 1,000
   * operations per side: a figure that holds when other work on the machine moves throughput.
   */
  cpu?: Array<{ name: string; ms: () => number | undefined }>;
}

const OPS: readonly ClientOp[] = ['GET', 'PUT'];
/** Each side's warm-up: connections opened, maps fetched, JIT warm. */
const WARMUP_MS = 500;

export type SideResults = Record<ClientOp, { baseline: Run[]; candidate: Run[] }> & {
  /** CPU ms per process, summed over each op and side's runs, with the operations answered. */
  cpu: Record<ClientOp, Record<'baseline' | 'candidate', { ops: number; ms: number[] }>>;
};

export async function measureSides(spec: SideBySide): Promise<SideResults> {
  const value = 'w'.repeat(spec.valueBytes);
  const loops = (client: LoopClient, op: ClientOp, durationMs: number) => runLoops({ client, op, keys: spec.keys, value, concurrency: spec.concurrency, durationMs });
  const cpuNow = () => (spec.cpu ?? []).map((p) => p.ms() ?? NaN);
  const noCpu = () => ({ ops: 0, ms: (spec.cpu ?? []).map(() => 0) });
  const results: SideResults = { GET: { baseline: [], candidate: [] }, PUT: { baseline: [], candidate: [] }, cpu: { GET: { baseline: noCpu(), candidate: noCpu() }, PUT: { baseline: noCpu(), candidate: noCpu() } } };
  for (const side of ['baseline', 'candidate'] as const) await loops(spec[side].client, 'GET', WARMUP_MS);
  for (const op of OPS) {
    for (let round = 1; round <= spec.rounds; round += 1) {
      const order = round % 2 === 1 ? (['baseline', 'candidate'] as const) : (['candidate', 'baseline'] as const);
      for (const side of order) {
        const cpuBefore = cpuNow();
        const run = await loops(spec[side].client, op, spec.runMs);
        const cpuAfter = cpuNow();
        results[op][side].push(run);
        const acc = results.cpu[op][side];
        acc.ops += run.requests - run.errors;
        acc.ms = acc.ms.map((m, i) => m + cpuAfter[i]! - cpuBefore[i]!);
        console.log(`  ${op} ${spec[side].name.padEnd(6)} round ${round}: ${fmtOps(run)}`);
      }
    }
  }
  return results;
}

export function reportSides(spec: SideBySide, results: SideResults, command: string): void {
  const [b, c] = [spec.baseline.name, spec.candidate.name];
  console.log(`\n${machineLine()}`);
  console.log(`medians            ${b.padEnd(31)} ${c.padEnd(31)} ${c}/${b}`);
  for (const op of OPS) {
    const base = medianRun(results[op].baseline);
    const cand = medianRun(results[op].candidate);
    const ratios = `throughput ${(cand.rps / base.rps).toFixed(2)}x, p50 ${(cand.p50Ms / base.p50Ms).toFixed(2)}x, p99 ${(cand.p99Ms / base.p99Ms).toFixed(2)}x`;
    console.log(`${op.padEnd(18)} ${fmtOps(base).padEnd(31)} ${fmtOps(cand).padEnd(31)} ${ratios}`);
  }
  if ((spec.cpu ?? []).length > 0) {
    console.log(`CPU per 1,000 ops (all rounds)   ${b.padEnd(31)} ${c.padEnd(31)} ${c}/${b}`);
    for (const op of OPS) {
      spec.cpu!.forEach((p, i) => {
        const per = (side: 'baseline' | 'candidate') => (results.cpu[op][side].ms[i]! * 1000) / results.cpu[op][side].ops;
        const [pb, pc] = [per('baseline'), per('candidate')];
        console.log(`${`${op} ${p.name}`.padEnd(33)} ${`${pb.toFixed(1)} ms`.padEnd(31)} ${`${pc.toFixed(1)} ms`.padEnd(31)} ${(pc / pb).toFixed(2)}x`);
      });
    }
  }
  console.log(`command: ${command}`);
}

export function fmtOps(r: Run): string {
  return `${r.rps.toFixed(0)} ops/s p50 ${r.p50Ms.toFixed(2)} p99 ${r.p99Ms.toFixed(2)} ms${r.errors > 0 ? ` ${r.errors} err` : ''}`;
}
