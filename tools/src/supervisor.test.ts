import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_CONFIG, Supervised } from './supervisor';

const dir = mkdtempSync(join(tmpdir(), 'shardkv-sup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const policy = { backoffMinMs: 20, backoffMaxMs: 50, stableAfterMs: 10_000 };

function script(name: string, code: number): string {
  const file = join(dir, `${name}.js`);
  writeFileSync(file, `process.exit(${code});\n`);
  return file;
}

test('a crashing child is restarted with backoff', async () => {
  const lines: string[] = [];
  const p = new Supervised({ name: 'crash', script: script('crash', 1), env: {} }, (_n, l) => lines.push(l), policy);
  p.start();
  await sleep(1000);
  await p.stop();
  expect(p.restarts).toBeGreaterThanOrEqual(3);
  expect(p.gaveUp).toBeUndefined();
});

test('a child that exits with the configuration-error status is not restarted, and says why', async () => {
  const lines: string[] = [];
  const p = new Supervised({ name: 'badconf', script: script('badconf', EXIT_CONFIG), env: {} }, (_n, l) => lines.push(l), policy);
  p.start();
  await sleep(600);
  expect(p.restarts).toBe(0);
  expect(p.gaveUp).toMatch(/not restarting/);
  expect(lines.join('\n')).toMatch(/badconf cannot start with its configuration/);
  await p.stop();
});
