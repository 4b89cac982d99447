import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CHAOS_ENV, DEFAULT_CHAOS, DEFAULT_NEMESIS, formatReport, runChaos, startChaosCluster, type ChaosReport, type ScenarioContext, type Workload } from './chaos';
import { reshardLoop } from './reshard-faults';
import { formatLine } from './format';
import { HA_FAULTS, haNemesis, startHaEnv, type HaFaultKind } from './ha-faults';

/**
 * `npm run chaos -- --duration 300`: starts a cluster on free ports with its data in a temp
 * directory, runs concurrent clients against it while a nemesis kills and pauses one shard node
 * at a time, checks the recorded history for linearizability and prints the report; the JSON
 * goes to bench-results/chaos-<timestamp>.json. Exits 1 on any anomaly, unexpected error or
 * nemesis error. Ctrl-C ends the run early (the history so far is still checked); a second
 * Ctrl-C exits at once. The temp directory is removed either way.
 */
const USAGE = `usage: npm run chaos -- [--workload register|rmw] [--ha [--ha-faults <kind,...>] [--max-faults <n>]] [--reshard] [--duration <s>] [--clients <n>] [--keys <n>] [--seed <n>] [--settle <s>] [--keep-history] [--quiet]
  --workload      register (default): a get/put/delete mix, checked against a register per key;
                  rmw: counters (incr by 1, 2 or 5, and gets) on even key slots and compare-and-sets
                  (read, then put at the version read, put if absent, delete at the version read, plain
                  puts, deletes and gets) on odd ones, writes resent with their Idempotency-Key while
                  indeterminate; checked by the read-modify-write checker (linearizability-rmw.ts)
  --ha            two routers on a 3-member etcd, every process on its own loopback address; the
                  nemesis kills and pauses routers (the coordinator too), etcd members and leaders,
                  takes etcd's quorum away and cuts links with iptables (needs root)
  --ha-faults     only these HA faults (default all): ${Object.keys(HA_FAULTS).join(', ')}
  --max-faults    HA: after this many faults the run ends (after the quiet time), whatever --duration says
  --duration      seconds of client traffic (default ${DEFAULT_CHAOS.durationMs / 1000})
  --clients       concurrent clients (default ${DEFAULT_CHAOS.clients})
  --keys          contended keys in use at any time (default ${DEFAULT_CHAOS.keys})
  --seed          seed for operations, keys and faults (default: random, printed)
  --settle        quiet seconds after each fault (default ${DEFAULT_NEMESIS.settleMs / 1000})
  --no-faults     no nemesis: a baseline run
  --reshard       also add a shard online and remove it again, over and over, beside the other faults
  --keep-history  put every operation in the JSON (large), not only those of failing keys
  --quiet         do not print faults as they happen`;

const ROOT = resolve(__dirname, '..', '..');
const RESULTS_DIR = join(ROOT, 'bench-results');
const LOG_TAIL_LINES = 400;

const OPTIONS = {
  workload: { type: 'string' },
  duration: { type: 'string' },
  clients: { type: 'string' },
  keys: { type: 'string' },
  seed: { type: 'string' },
  settle: { type: 'string' },
  'no-faults': { type: 'boolean', default: false },
  ha: { type: 'boolean', default: false },
  'ha-faults': { type: 'string' },
  'max-faults': { type: 'string' },
  reshard: { type: 'boolean', default: false },
  'keep-history': { type: 'boolean', default: false },
  quiet: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function parse() {
  let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; strict: true }>>['values'];
  try {
    ({ values } = parseArgs({ options: OPTIONS, strict: true }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (name: string, v: string | undefined, fallback: number, integer = true): number => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) throw new UsageError(`--${name} must be a ${integer ? 'non-negative integer' : 'non-negative number'} (got "${v}")`);
    return n;
  };
  if (values.workload !== undefined && values.workload !== 'register' && values.workload !== 'rmw') throw new UsageError(`--workload must be register or rmw (got "${values.workload}")`);
  return {
    workload: (values.workload ?? DEFAULT_CHAOS.workload) as Workload,
    durationMs: Math.round(num('duration', values.duration, DEFAULT_CHAOS.durationMs / 1000, false) * 1000),
    clients: num('clients', values.clients, DEFAULT_CHAOS.clients),
    keys: num('keys', values.keys, DEFAULT_CHAOS.keys),
    seed: values.seed === undefined ? undefined : num('seed', values.seed, 0),
    settleMs: Math.round(num('settle', values.settle, DEFAULT_NEMESIS.settleMs / 1000, false) * 1000),
    faults: !values['no-faults'],
    ha: values.ha,
    haFaults: haKinds(values['ha-faults']),
    reshard: values.reshard,
    maxFaults: values['max-faults'] === undefined ? undefined : num('max-faults', values['max-faults'], 0),
    keepHistory: values['keep-history'],
    quiet: values.quiet,
  };
}

class UsageError extends Error {}

function haKinds(list: string | undefined): HaFaultKind[] {
  if (list === undefined) return Object.keys(HA_FAULTS) as HaFaultKind[];
  const kinds = list.split(',').map((k) => k.trim()).filter((k) => k !== '');
  const bad = kinds.filter((k) => !(k in HA_FAULTS));
  if (kinds.length === 0 || bad.length > 0) throw new UsageError(`--ha-faults: unknown ${bad.join(', ') || '(empty)'}; known: ${Object.keys(HA_FAULTS).join(', ')}`);
  return kinds as HaFaultKind[];
}

/** Median and max of each numeric figure, per fault kind: e.g. the coordinator takeover time over 10 kills. */
function figureSummary(report: ChaosReport): string[] {
  const byKind = new Map<string, Map<string, number[]>>();
  for (const f of report.scenarioFaults) {
    const figures = byKind.get(f.kind ?? f.name) ?? new Map<string, number[]>();
    byKind.set(f.kind ?? f.name, figures);
    const all = { ...f.figures, ...(f.outageMs === undefined ? {} : { writeOutageMs: f.outageMs }) };
    for (const [k, v] of Object.entries(all)) if (typeof v === 'number' && /Ms$/.test(k)) figures.set(k, [...(figures.get(k) ?? []), v]);
  }
  const lines: string[] = [];
  for (const [kind, figures] of byKind) {
    for (const [k, values] of figures) {
      const sorted = [...values].sort((a, b) => a - b);
      lines.push(`  ${kind} ${k}: median ${Math.round(sorted[Math.floor(sorted.length / 2)]!)} ms, max ${Math.round(sorted[sorted.length - 1]!)} ms over ${sorted.length}`);
    }
  }
  return lines;
}

async function main(): Promise<number> {
  const args = parse();
  const logTail: string[] = [];
  const warnTail: string[] = [];
  const keep = (buf: string[], line: string) => {
    buf.push(line);
    if (buf.length > LOG_TAIL_LINES) buf.shift();
  };
  const sink = (name: string, line: string) => {
    const formatted = formatLine(name, line);
    keep(logTail, formatted);
    if (/"level":[456]0/.test(line) || name === 'supervisor') keep(warnTail, formatted);
  };

  const abort = new AbortController();
  let dataRoot: string | undefined;
  let interrupts = 0;
  const onSignal = (sig: string) => {
    interrupts += 1;
    if (interrupts === 1) {
      console.error(`\n${sig}: ending the run early (the history so far is still checked); again to exit at once`);
      abort.abort();
      return;
    }
    // The nodes exit with us (they watch their stdin pipe); only the temp data is left to remove.
    if (dataRoot !== undefined) rmSync(dataRoot, { recursive: true, force: true });
    process.exit(130);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const own = args.ha ? await startHa(sink) : await startPlain(sink);
  dataRoot = own.dataRoot;
  let report: ChaosReport;
  try {
    console.log(`cluster up (routers ${own.cluster.routers.map((r) => r.url).join(', ')}); running the ${args.workload} workload for ${args.durationMs / 1000} s with ${args.clients} clients over ${args.keys} keys\n`);
    report = await runChaos({
      cluster: own.cluster,
      durationMs: args.durationMs,
      clients: args.clients,
      keys: args.keys,
      workload: args.workload,
      ...(args.seed === undefined ? {} : { seed: args.seed }),
      nemesis: { enabled: args.faults, settleMs: args.settleMs },
      ...(args.ha && args.faults ? { scenario: haNemesis(own.env!, { kinds: args.haFaults, seed: args.seed ?? Date.now(), settleMs: args.settleMs, holdMs: 2000, pauseMs: 4000, shard: 0, lastStartMs: args.durationMs - 15_000, maxFaults: args.maxFaults }) } : {}),
      ...(args.reshard ? { beside: (ctx: ScenarioContext) => reshardLoop(own.cluster, ctx, args.settleMs) } : {}),
      keepHistory: args.keepHistory,
      signal: abort.signal,
      log: args.quiet ? () => {} : (line) => console.log(`  [nemesis] ${line}`),
    });
  } finally {
    await own.stop();
    dataRoot = undefined;
  }

  if (args.ha) console.log(`\nfigures:\n${figureSummary(report).join('\n')}`);
  console.log(`\n${formatReport(report)}\n`);
  const failed = report.check.anomalies.length > 0 || report.unexpected.length > 0 || report.nemesisErrors.length > 0;
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = report.startedAt.replace(/[:.]/g, '-');
  const file = join(RESULTS_DIR, `chaos-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(failed ? { ...report, logTail, warnTail } : report, null, 1)}\n`);
  console.log(`report written to ${relative(process.cwd(), file) || file}`);
  if (report.check.undecided.length > 0) console.log(`WARNING: ${report.check.undecided.length} key(s) could not be decided by the checker within its budget`);
  if (failed) {
    console.log(`\nFAILED: ${report.check.anomalies.length} anomalies, ${report.unexpected.length} unexpected errors, ${report.nemesisErrors.length} nemesis errors`);
    console.log(`last node warnings/errors (more, and the full tail, in the JSON):\n${warnTail.slice(-40).join('\n')}`);
    return 1;
  }
  if (report.aborted) {
    console.log('ABORTED: no anomalies or unexpected errors in the part that ran');
    return 130;
  }
  console.log('PASSED: no anomalies, no unexpected errors');
  return 0;
}

/** A 3-shard cluster with one router (embedded control plane) on free ports, data in a temp dir. */
async function startPlain(sink: (name: string, line: string) => void) {
  console.log('starting a 3-shard cluster on free ports (temp data dir)...');
  const own = await startChaosCluster({ ...DEFAULT_CHAOS.clusterOptions, env: CHAOS_ENV, sink });
  return { ...own, env: undefined };
}

/** Two routers on a 3-member etcd, every process on its own loopback address, data in a temp dir. */
async function startHa(sink: (name: string, line: string) => void) {
  console.log('starting 3 etcd members, 2 routers and a 3-shard cluster on free ports and their own loopback addresses (temp data dir)...');
  const env = await startHaEnv({ env: { ...CHAOS_ENV, COORDINATOR_LEASE_TTL_S: '2' }, sink, restart: DEFAULT_CHAOS.clusterOptions.restart });
  return { cluster: env.cluster, dataRoot: env.dataRoot, env, stop: env.stop };
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n${USAGE}`);
      process.exit(2);
    }
    console.error(err);
    process.exit(1);
  },
);
