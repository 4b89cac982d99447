import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
// The shard's own digest modules, from its build output: what a node runs, not a copy.
import { DigestSum, pairHash } from '../../services/shard/dist/digest';
import { DigestSum as Sha256DigestSum, pairHash as sha256PairHash } from '../../services/shard/dist/digest-sha256';

/**
 * `npm run bench:digest`: what the state digest costs per write, the old algorithm (SHA-256 per
 * pair, 256-bit BigInt sum) against the current one (XXH3-128 through @node-rs/xxhash, 128-bit
 * sum), in one process and interleaved rounds, so that both meet the same machine load.
 *   - per pair: one `add` (hash + sum), and its two parts measured apart;
 *   - per batch of BATCH_WRITES writes, as a store's `apply` does it: copy the sum, for each write
 *     subtract the key's old pair and add the new one (or only add, for a new key), then hex once.
 * Pairs are ~50 bytes (16-byte keys, 34-byte values), like `bench:durability` and `bench:load`.
 * Figures, not a test.
 */
const PAIRS = Number(process.env.BENCH_PAIRS ?? 100_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const BATCH_WRITES = 1000;
const KEY_BYTES = 16;
const VALUE_BYTES = 34;
const OUT_DIR = resolve(__dirname, '..', '..', 'bench-results');

interface Sum {
  value: bigint;
  add(key: string, value: string): void;
  remove(key: string, value: string): void;
  hex(): string;
}

interface Algorithm {
  name: string;
  make(value?: bigint): Sum;
  pairHash(key: string, value: string): bigint;
  /** The sum step alone, on a hash computed beforehand. */
  addHash(sum: bigint, hash: bigint): bigint;
}

const SHA256_MOD = 1n << 256n;
const ALGORITHMS: Algorithm[] = [
  { name: 'sha256 + 256-bit sum (old)', make: (v) => new Sha256DigestSum(v), pairHash: sha256PairHash, addHash: (s, h) => (s + h) % SHA256_MOD },
  { name: 'xxh3-128 + 128-bit sum (new)', make: (v) => new DigestSum(v), pairHash, addHash: (s, h) => BigInt.asUintN(128, s + h) },
];

type Pair = [string, string];
/** Results land here, so that no loop computes something nobody reads (the JIT could drop it). */
let sink: unknown;

/** Deterministic ~50-byte pairs, so runs compare. */
function makePairs(n: number, salt: string): Pair[] {
  return Array.from({ length: n }, (_, i) => [`k${String(i).padStart(KEY_BYTES - 1, '0')}`, `${salt}${String(i).padStart(VALUE_BYTES - salt.length, '0')}`]);
}

/** The cases of one round, each returning nanoseconds per unit (pair or batch). */
function cases(algo: Algorithm, olds: Pair[], news: Pair[]): Record<string, () => number> {
  const hashes = olds.map(([k, v]) => algo.pairHash(k, v));
  return {
    'ns per pair: add (hash + sum)': () => nsPer(olds.length, () => {
      const sum = algo.make();
      for (const [k, v] of olds) sum.add(k, v);
      sink = sum.value;
    }),
    'ns per pair: hash only': () => nsPer(olds.length, () => {
      for (const [k, v] of olds) sink = algo.pairHash(k, v);
    }),
    'ns per pair: sum only': () => nsPer(hashes.length, () => {
      let sum = 0n;
      for (const h of hashes) sum = algo.addHash(sum, h);
      sink = sum;
    }),
    [`us per ${BATCH_WRITES}-write batch, new keys`]: () => nsPer(olds.length / BATCH_WRITES, () => batches(algo, news, undefined)) / 1000,
    [`us per ${BATCH_WRITES}-write batch, overwrites`]: () => nsPer(olds.length / BATCH_WRITES, () => batches(algo, news, olds)) / 1000,
  };
}

/** What `apply` does to the digest, batch after batch: each overwrite removes the key's old pair first. */
function batches(algo: Algorithm, news: Pair[], olds: Pair[] | undefined): void {
  let live = algo.make();
  for (let start = 0; start < news.length; start += BATCH_WRITES) {
    const next = algo.make(live.value);
    for (let i = start; i < start + BATCH_WRITES; i += 1) {
      const [k, v] = news[i]!;
      if (olds !== undefined) next.remove(k, olds[i]![1]);
      next.add(k, v);
    }
    sink = next.hex();
    live = next;
  }
}

function nsPer(units: number, run: () => void): number {
  const t0 = performance.now();
  run();
  return ((performance.now() - t0) * 1e6) / units;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function main(): void {
  const olds = makePairs(PAIRS, 'v');
  const news = makePairs(PAIRS, 'w');
  const all = ALGORITHMS.map((algo) => ({ algo, cases: cases(algo, olds, news) }));
  for (const { cases: c } of all) for (const run of Object.values(c)) run(); // warm-up: JIT and caches
  const samples = new Map<string, number[]>();
  const loadBefore = loadavg()[0]!;
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const { algo, cases: c } of all) {
      for (const [name, run] of Object.entries(c)) {
        const key = `${name}\t${algo.name}`;
        samples.set(key, [...(samples.get(key) ?? []), run()]);
      }
    }
  }
  report(all.map((a) => a.algo.name), Object.keys(all[0]!.cases), samples, loadBefore);
  void sink;
}

function report(algos: string[], names: string[], samples: Map<string, number[]>, loadBefore: number): void {
  const machine = `${cpus()[0]?.model ?? '?'} x${cpus().length}, Node ${process.version}, load ${loadBefore.toFixed(2)} -> ${loadavg()[0]!.toFixed(2)}`;
  console.log(`digest cost, ${PAIRS} pairs of ${KEY_BYTES + VALUE_BYTES} bytes, ${ROUNDS} interleaved rounds (median, min); ${machine}\n`);
  console.log(['', ...algos, 'old / new'].map((s, i) => (i === 0 ? s.padEnd(36) : s.padStart(30))).join(''));
  const rows: Record<string, Record<string, { median: number; min: number }>> = {};
  for (const name of names) {
    const cells = algos.map((a) => {
      const xs = samples.get(`${name}\t${a}`)!;
      return { median: median(xs), min: Math.min(...xs) };
    });
    rows[name] = Object.fromEntries(algos.map((a, i) => [a, cells[i]!]));
    const ratio = cells[0]!.median / cells[1]!.median;
    console.log([name.padEnd(36), ...cells.map((c) => `${fmt(c.median)} (${fmt(c.min)})`.padStart(30)), `${ratio.toFixed(1)}x`.padStart(30)].join(''));
  }
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, 'digest.json'), `${JSON.stringify({ date: new Date().toISOString(), machine, pairs: PAIRS, rounds: ROUNDS, rows }, null, 2)}\n`);
  console.log(`\ncommand: npm run bench:digest (BENCH_PAIRS=${PAIRS} BENCH_ROUNDS=${ROUNDS}); written to bench-results/digest.json`);
}

function fmt(x: number): string {
  return x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1);
}

main();
