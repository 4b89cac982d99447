#!/usr/bin/env node
import { KvClient, KvClientError } from '@shardkv/client';
import { LOAD_MALFORMED_LISTED_MAX } from '@shardkv/common';
import { SingleBar, Presets } from 'cli-progress';
import { Command, InvalidArgumentError } from 'commander';
import { writeFileSync } from 'node:fs';
import { generate } from './gen';
import { addShardCommands } from './shard';
import { loadFile, REQUEST_BYTES_DEFAULT, validateFile, type LoadProgress, type LoadSummary } from './load';

/**
 * `kv`: the command line for a shardkv cluster (through its router). Wiring only: commands parse
 * their arguments and call the client, the loader or the generator.
 */
const program = new Command();
program
  .name('kv')
  .description('command line client for a shardkv cluster')
  .option('--url <urls>', 'the router, or several comma-separated (a router that refuses connections is skipped)', process.env.KV_URL ?? 'http://127.0.0.1:5000')
  .option('--timeout-ms <ms>', 'deadline of each request', int, 10_000)
  .addHelpText('after', '\nEnvironment: KV_URL (as --url), KV_TOKEN (a bearer token that names this client for the routers\' rate limits), KV_ADMIN_TOKEN (for shard add/remove).');

const client = () => new KvClient(program.opts<{ url: string }>().url, { timeoutMs: program.opts<{ timeoutMs: number }>().timeoutMs, adminToken: process.env.KV_ADMIN_TOKEN, token: emptyAsUnset(process.env.KV_TOKEN) });

program
  .command('get <key>')
  .description('print the value (exit 1 if the key does not exist)')
  .option('--stale', 'read the follower (may be behind)')
  .action(async (key: string, o: { stale?: boolean }) => {
    const value = await withClient((c) => c.get(key, { stale: o.stale === true }));
    if (value === undefined) fail(`${key}: not found`, 1);
    process.stdout.write(`${value}\n`);
  });

program
  .command('put <key> <value>')
  .description('set a key (the value is one argument: quote it); a failed condition exits 3')
  .option('--ttl-ms <ms>', 'the key expires this long after the write', int)
  .option('--if-version <n>', 'write only if the key is at this version (compare-and-set)', version)
  .option('--if-absent', 'write only if the key does not exist')
  .action(async (key: string, value: string, o: { ttlMs?: number; ifVersion?: number; ifAbsent?: boolean }) => {
    const opts = { ...(o.ttlMs === undefined ? {} : { ttlMs: o.ttlMs }), ...(o.ifVersion === undefined ? {} : { ifVersion: o.ifVersion }), ...(o.ifAbsent === true ? { ifAbsent: true } : {}) };
    const { seq } = await withClient((c) => c.put(key, value, opts));
    process.stdout.write(`OK seq=${seq} version=${seq}\n`);
  });

program
  .command('incr <key> [by]')
  .description('add BY (default 1, may be negative) to the key\'s integer value and print the new value')
  .action(async (key: string, by: string | undefined) => {
    const { value } = await withClient((c) => c.incr(key, by === undefined ? 1 : intArg(by)));
    process.stdout.write(`${value}\n`);
  });

program
  .command('version <key>')
  .description('print the key\'s version (and ttl) as JSON with its value (exit 1 if the key does not exist)')
  .action(async (key: string) => {
    const entry = await withClient((c) => c.getEntry(key));
    if (entry === undefined) fail(`${key}: not found`, 1);
    process.stdout.write(`${JSON.stringify(entry)}\n`);
  });

program
  .command('del <key>')
  .description('delete a key; a failed condition exits 3')
  .option('--if-version <n>', 'delete only if the key is at this version', version)
  .action(async (key: string, o: { ifVersion?: number }) => {
    const existed = await withClient((c) => c.delete(key, o.ifVersion === undefined ? {} : { ifVersion: o.ifVersion }));
    process.stdout.write(existed ? 'deleted\n' : 'not found (nothing to delete)\n');
  });

program
  .command('status')
  .description("each shard's epoch, leader, in-sync flag and lag")
  .option('--json', 'print the router\'s whole /status')
  .action(async (o: { json?: boolean }) => {
    const status = (await withClient((c) => c.status())) as { shards: ShardStatus[] };
    if (o.json === true) return void process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
    for (const s of status.shards) {
      process.stdout.write(`${s.id}  epoch ${s.epoch}  leader ${s.leader.url} (${s.leader.state ?? 'down'}, seq ${s.leader.seq ?? '?'})  follower ${s.follower.url} (${s.follower.state ?? 'down'})  in sync: ${s.inSync}  lag: ${s.replicationLagEntries ?? '?'}\n`);
    }
  });

program
  .command('load <file>')
  .description('bulk-load a file of "<key> <value>" lines through POST /load (a later duplicate key wins)')
  .option('--strict', 'a malformed line is fatal: check the whole file first and load nothing if any')
  .option('--request-mib <n>', 'MiB of the file per /load request', int, REQUEST_BYTES_DEFAULT / 2 ** 20)
  .option('--batch <n>', 'at most this many lines per /load request', int)
  .option('--concurrency <n>', '/load requests in flight (more than one: a key repeated across them waits for the earlier)', int, 1)
  .option('--from-line <n>', 'skip the lines before this one (to resume a load that stopped)', int)
  .option('--failed-lines <out>', 'write the number, code and outcome of every line not loaded to this file')
  .option('--no-progress', 'no progress bar')
  .action(async (file: string, o: { strict?: boolean; requestMib: number; batch?: number; concurrency: number; fromLine?: number; failedLines?: string; progress: boolean }) => {
    const report = (lineNo: number, reason: string) => process.stderr.write(`${file}:${lineNo}: malformed line skipped: ${reason}\n`);
    if (o.strict === true) {
      const bad = await validateFile(file, (n, r) => process.stderr.write(`${file}:${n}: malformed line: ${r}\n`));
      if (bad > 0) fail(`--strict: ${bad} malformed line(s); nothing was loaded`, 1);
    }
    const bar = o.progress && process.stderr.isTTY ? progressBar() : undefined;
    // The router reads a body only as fast as it loads: a chunk may wait out a leader's deadline
    // (5 s) and then its retries (5 s) meanwhile. Unless --timeout-ms says otherwise, allow more.
    const idleTimeoutMs = program.getOptionValueSource('timeoutMs') === 'default' ? LOAD_IDLE_TIMEOUT_MS : program.opts<{ timeoutMs: number }>().timeoutMs;
    const options = { requestBytes: o.requestMib * 2 ** 20, batchLines: o.batch, concurrency: o.concurrency, fromLine: o.fromLine, idleTimeoutMs, onMalformed: report, onProgress: bar?.update };
    const summary = await withClient((c) => loadFile(c, file, options));
    bar?.stop();
    const rate = Math.round(summary.loaded / Math.max(summary.seconds, 0.001));
    process.stdout.write(`loaded ${summary.loaded} keys, skipped ${summary.skipped} malformed line(s), failed ${summary.failed}, in ${summary.seconds.toFixed(1)} s (${rate} keys/s)\n`);
    reportFailures(file, summary);
    if (o.failedLines !== undefined) writeFileSync(o.failedLines, summary.failures.flatMap((f) => f.lines.map((l) => `${l} ${f.code} ${f.outcome}\n`)).join(''));
    if (summary.failed > 0) process.exitCode = 1;
  });

/** `kv load`: how long the routers may take none of a request's body before it counts as failed (indeterminate). */
const LOAD_IDLE_TIMEOUT_MS = 30_000;

/** Per code: how many, whether they may have been applied, and the first line numbers. */
function reportFailures(file: string, s: LoadSummary): void {
  const shownMax = 20;
  for (const f of s.failures) {
    const shown = f.lines.slice(0, shownMax).join(', ');
    const more = f.lines.length > shownMax ? `, ... (${f.lines.length - shownMax} more; --failed-lines FILE lists them all)` : '';
    const what = f.outcome === 'indeterminate' ? 'outcome unknown, may or may not have been applied' : 'not applied';
    process.stderr.write(`${file}: ${f.lines.length} line(s) failed with ${f.code} (${what}): ${f.message}\n  lines ${shown}${more}\n`);
  }
  if (s.malformedUnlisted > 0) process.stderr.write(`${file}: ${s.malformedUnlisted} more malformed line(s) skipped without their numbers (a router lists ${LOAD_MALFORMED_LISTED_MAX} per request; --strict lists them all)\n`);
  if (s.stoppedAt !== undefined) process.stderr.write(`kv load stopped at line ${s.stoppedAt.line} (${s.stoppedAt.why}); resume with --from-line ${s.stoppedAt.line}\n`);
}

addShardCommands(program, { withClient, fail, int });

program
  .command('gen')
  .description('write a sample bulk-load file to stdout')
  .option('--keys <n>', 'number of keys', int, 1_000_000)
  .option('--value-bytes <n>', 'about this many bytes per value', int, 40)
  .action(async (o: { keys: number; valueBytes: number }) => {
    await generate(process.stdout, o.keys, o.valueBytes);
  });

interface ShardStatus {
  id: string;
  epoch: number;
  inSync: boolean;
  replicationLagEntries: number | null;
  leader: { url: string; state?: string; seq?: number };
  follower: { url: string; state?: string };
}

function progressBar() {
  const bar = new SingleBar({ format: 'loading [{bar}] {percentage}% | {loaded} keys | {rate} keys/s | ETA {eta_formatted}', hideCursor: true, stream: process.stderr }, Presets.shades_classic);
  const started = Date.now();
  let total = 0;
  return {
    update: (p: LoadProgress) => {
      if (total === 0) bar.start((total = Math.max(1, p.bytesTotal)), 0, { loaded: 0, rate: 0 });
      const rate = Math.round(p.loaded / Math.max((Date.now() - started) / 1000, 0.001));
      bar.update(p.bytesRead, { loaded: p.loaded, rate });
    },
    stop: () => bar.stop(),
  };
}

async function withClient<T>(fn: (c: KvClient) => Promise<T>): Promise<T> {
  const c = client();
  try {
    return await fn(c);
  } catch (err) {
    // A condition that did not hold is an answer, not a failure of the tool: its own exit status.
    if (err instanceof KvClientError && err.code === 'version_mismatch') fail(`${err.code}: ${err.message} (current version: ${String(err.details['version'])})`, 3);
    if (err instanceof KvClientError) fail(`${err.code}: ${err.message}${err.outcome === 'indeterminate' ? ' (it may or may not have been applied)' : ''}`, 2);
    throw err;
  } finally {
    await c.close();
  }
}

function emptyAsUnset(s: string | undefined): string | undefined {
  return s === '' ? undefined : s;
}

function int(raw: string): number {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** A version: 0 or more (0: a value written before versions existed). */
function version(raw: string): number {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be a version (an integer, 0 or more)');
  return n;
}

/** An increment: any safe integer. */
function intArg(raw: string): number {
  const n = Number(raw);
  if (!/^-?[0-9]+$/.test(raw) || !Number.isSafeInteger(n)) fail(`by must be an integer, got ${JSON.stringify(raw)}`, 2);
  return n;
}

function fail(message: string, code: number): never {
  process.stderr.write(`kv: ${message}\n`);
  process.exit(code);
}

program.parseAsync().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err), 2));
