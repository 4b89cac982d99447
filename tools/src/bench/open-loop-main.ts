import { performance } from 'node:perf_hooks';
import { loadAtRate, pct, Pools } from '../load';
import { benchKeys, benchValue, type Op, type Run } from './config';
import { nodeTarget, shuffled } from './drivers';

/**
 * The open-loop load generator of the tail phase, as its own process so that it can run alone on
 * its core (tail.ts starts it under `taskset`) with nothing else on its event loop. One run: a
 * short unmeasured warm-up at the same rate (connections open, JIT warm), then the measured part,
 * latency counted from each request's due time (load.ts `loadAtRate`). It prints one line,
 * `OPEN_LOOP_JSON {...}` (a Run), and exits. Bounded: the run ends after its requests are sent and
 * answered, and it exits when its parent goes away (stdin closes).
 */
export interface OpenLoopSpec {
  url: string;
  op: Extract<Op, 'GET' | 'PUT'>;
  ratePerSec: number;
  durationMs: number;
  warmupMs: number;
  connections: number;
  keyCount: number;
  valueBytes: number;
  inFlightMax: number;
}

export const OPEN_LOOP_PREFIX = 'OPEN_LOOP_JSON ';

async function runOpenLoop(spec: OpenLoopSpec): Promise<Run> {
  const pools = new Pools(spec.connections);
  const keys = shuffled(benchKeys(spec.keyCount));
  const target = nodeTarget(pools.get(spec.url), 'kv', spec.op, benchValue(spec.valueBytes));
  try {
    await loadAtRate(target, keys, { durationMs: spec.warmupMs, ratePerSec: spec.ratePerSec, inFlightMax: spec.inFlightMax });
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const s = await loadAtRate(target, keys, { durationMs: spec.durationMs, ratePerSec: spec.ratePerSec, inFlightMax: spec.inFlightMax });
    // Elapsed, not the nominal duration: a system that falls behind stretches the run, and its
    // achieved rate must show it.
    const elapsedMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    const lat = s.latenciesMs.sort((a, b) => a - b);
    return { rps: (s.ok * 1000) / elapsedMs, p50Ms: pct(lat, 50), p99Ms: pct(lat, 99), errors: s.errors, requests: s.ok + s.errors, durationMs: elapsedMs, generatorCpuMs: (cpu.user + cpu.system) / 1000 };
  } finally {
    await pools.close();
  }
}

if (require.main === module) {
  process.stdin.on('end', () => process.exit(1)).resume();
  runOpenLoop(JSON.parse(process.argv[2] ?? '') as OpenLoopSpec).then(
    (run) => {
      process.stdout.write(`${OPEN_LOOP_PREFIX}${JSON.stringify(run)}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
