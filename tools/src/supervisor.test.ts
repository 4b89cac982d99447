import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_CONFIG, NO_RESTART, Supervised } from './supervisor';

const dir = mkdtempSync(join(tmpdir(), 'shardkv-sup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const policy = { backoffMinMs: 20, backoffMaxMs: 50, stableAfterMs: 10_000 };
/** Waits for a condition, not a fixed time: a loaded machine starts a Node child in well over 300 ms. */
async function until(what: string, ok: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function script(name: string, code: number): string {
  const file = join(dir, `${name}.js`);
  writeFileSync(file, `process.exit(${code});\n`);
  return file;
}

test('a crashing child is restarted with backoff', async () => {
  const lines: string[] = [];
  const p = new Supervised({ name: 'crash', script: script('crash', 1), env: {} }, (_n, l) => lines.push(l), policy);
  p.start();
  await until('3 restarts', () => p.restarts >= 3);
  await p.stop();
  expect(p.restarts).toBeGreaterThanOrEqual(3);
  expect(p.gaveUp).toBeUndefined();
});

test('a child that exits with the configuration-error status is not restarted, and says why', async () => {
  const lines: string[] = [];
  const p = new Supervised({ name: 'badconf', script: script('badconf', EXIT_CONFIG), env: {} }, (_n, l) => lines.push(l), policy);
  p.start();
  await until('the supervisor to give up', () => p.gaveUp !== undefined);
  // Time for a restart, had one been scheduled (the backoff is at most 50 ms).
  await sleep(300);
  expect(p.restarts).toBe(0);
  expect(p.gaveUp).toMatch(/not restarting/);
  expect(lines.join('\n')).toMatch(/badconf cannot start with its configuration/);
  await p.stop();
});

test('a binary under the "no" restart policy stays down after a crash until started again', async () => {
  // Proves: command specs run a non-Node binary, and NO_RESTART leaves a killed child down.
  const lines: string[] = [];
  const p = new Supervised({ name: 'sleeper', command: 'sleep', args: ['30'], env: {} }, (_n, l) => lines.push(l), NO_RESTART);
  p.start();
  const pid = p.pid!;
  p.signal('SIGKILL');
  await p.whenExited();
  await sleep(300);
  expect({ pid: p.pid, restarts: p.restarts }).toEqual({ pid: undefined, restarts: 0 });
  expect(lines.join('\n')).toMatch(/sleeper exited \(SIGKILL\); restart policy "no", left down/);
  p.start();
  expect(p.pid).not.toBe(pid);
  await p.stop();
});

test('a binary that does not exist is reported as an exit, not thrown', async () => {
  // Proves: a spawn failure (ENOENT emits no 'exit') still ends whenExited and reaches the sink.
  const lines: string[] = [];
  const p = new Supervised({ name: 'ghost', command: join(dir, 'no-such-binary'), env: {} }, (_n, l) => lines.push(l), NO_RESTART);
  p.start();
  await p.whenExited();
  expect(p.pid).toBeUndefined();
  expect(lines.join('\n')).toMatch(/ghost: spawn .*ENOENT/);
});
