import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Cluster } from './cluster';
import { freePort } from './ports';
import { ensureRedis } from './redis';

/**
 * `npm run bench:load`: bulk load of a generated file, as a user would run it, against the same
 * data piped into Redis in the same run (the baseline):
 *   1. `kv gen --keys N` writes the file (N = BENCH_KEYS, default 1,000,000; ~50-byte lines);
 *   2. a 3-shard cluster on free ports (durable, replicated); `kv load FILE` is timed end to end;
 *   3. redis-server (installed from Debian if missing; no persistence) gets the same SETs with
 *      `redis-cli --pipe`, timed the same way.
 * Prints keys/s for both and the ratio (the target: >= 0.5x Redis).
 */
const KEYS = Number(process.env.BENCH_KEYS ?? 1_000_000);
const KV = resolve(__dirname, '..', '..', 'packages', 'cli', 'dist', 'kv.js');

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'shardkv-loadbench-'));
  const file = join(tmp, 'data.txt');
  let cluster: Cluster | undefined;
  try {
    await run(process.execPath, [KV, 'gen', '--keys', String(KEYS), '--value-bytes', '34'], { stdout: file });
    console.log(`generated ${KEYS} keys, ${(statSync(file).size / 1e6).toFixed(1)} MB`);
    cluster = await Cluster.create({ ports: 'free', dataRoot: join(tmp, 'cluster'), clusterId: 'loadbench' });
    await cluster.start();
    const ours = await timed(() => run(process.execPath, [KV, '--url', cluster!.router.url, 'load', file, '--no-progress']));
    await cluster.stop();
    cluster = undefined;
    const redis = await redisPipe(file, tmp);
    const oursRate = KEYS / ours;
    console.log('');
    console.log(`kv load (3 shards, replicated, fsync'd)  ${ours.toFixed(1)} s  ${Math.round(oursRate)} keys/s`);
    if (typeof redis === 'string') console.log(`redis-cli --pipe: skipped (${redis})`);
    else console.log(`redis-cli --pipe (one redis-server)   ${redis.toFixed(1)} s  ${Math.round(KEYS / redis)} keys/s\nratio (target >= 0.5x)                  ${(oursRate / (KEYS / redis)).toFixed(2)}x`);
    console.log(`command: npm run bench:load (BENCH_KEYS=${KEYS})`);
  } finally {
    await cluster?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Seconds for the whole redis-cli --pipe of the file's SETs into a fresh redis-server, or why it was skipped. */
async function redisPipe(file: string, tmp: string): Promise<number | string> {
  const missing = ensureRedis();
  if (missing !== undefined) return missing;
  const resp = join(tmp, 'data.resp');
  await toResp(file, resp);
  const port = await freePort();
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100 && spawnSync('redis-cli', ['-p', String(port), 'PING']).stdout?.toString().trim() !== 'PONG'; i += 1) await new Promise((r) => setTimeout(r, 50));
    return await timed(() => run('redis-cli', ['-p', String(port), '--pipe'], { stdin: resp }));
  } finally {
    server.kill('SIGTERM');
  }
}

/** The same lines as RESP `SET key value` commands (the value is the rest of the line, as `kv load` reads it). */
async function toResp(file: string, out: string): Promise<void> {
  const w = createWriteStream(out);
  const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    const sp = line.indexOf(' ');
    if (sp <= 0) continue;
    if (!w.write(`*3\r\n$3\r\nSET\r\n${bulk(line.slice(0, sp))}${bulk(line.slice(sp + 1))}`)) await new Promise<void>((r) => w.once('drain', () => r()));
  }
  await new Promise<void>((r) => w.end(r));
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

function run(cmd: string, args: string[], io: { stdout?: string; stdin?: string } = {}): Promise<void> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: [io.stdin === undefined ? 'ignore' : 'pipe', io.stdout === undefined ? 'inherit' : 'pipe', 'inherit'] });
    const out = io.stdout === undefined ? undefined : createWriteStream(io.stdout);
    if (out !== undefined) child.stdout!.pipe(out);
    if (io.stdin !== undefined) createReadStream(io.stdin).pipe(child.stdin!);
    child.on('error', rej);
    // 'close' comes after the child's streams end; the file is complete once its stream finished.
    child.on('close', (code) => {
      if (code !== 0) return rej(new Error(`${cmd} ${args.slice(0, 2).join(' ')} exited ${code}`));
      if (out === undefined || out.writableFinished) return res();
      out.once('finish', () => res());
    });
  });
}

main().catch((err) => {
  console.error(`bench:load: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
