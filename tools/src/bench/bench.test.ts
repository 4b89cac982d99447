import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { medianRun, readConfig, type Run } from './config';
import { statCpuTicks } from './cpu';
import { wrkScript } from './wrk-scripts';
import { allowedCpus, tailRate } from './tail';

// The benchmark's pure parts: what it reads from /proc, how it picks the tail rate, its config.

const run = (rps: number, p99Ms: number, errors = 0): Run => ({ rps, p50Ms: p99Ms / 2, p99Ms, errors, requests: rps, durationMs: 1000 });

describe('CPU accounting', () => {
  it('reads utime + stime from a /proc/<pid>/stat line, even with spaces and parentheses in the name', () => {
    // Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    const stat = '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 11 0 5000 1000000 5000';
    expect(statCpuTicks(stat)).toBe(1234 + 567);
  });

  it('refuses a line it cannot read instead of counting garbage', () => {
    expect(() => statCpuTicks('garbage')).toThrow(/unexpected/);
  });
});

describe('tail placement and rate', () => {
  it('expands Cpus_allowed_list ranges and lists', () => {
    expect(allowedCpus('Name:\tnode\nCpus_allowed_list:\t0-1\n')).toEqual([0, 1]);
    expect(allowedCpus('Cpus_allowed_list:\t0,2-4,7\n')).toEqual([0, 2, 3, 4, 7]);
    expect(allowedCpus('no such line')).toBeUndefined();
  });

  it('offers half our peak when the skeleton sustains it, else half the lower peak', () => {
    expect(tailRate(1000, 3000)).toEqual({ ratePerSec: 500, rateBasis: 'half our peak' });
    expect(tailRate(3000, 1000).ratePerSec).toBe(500);
    expect(tailRate(3000, 1000).rateBasis).toMatch(/skeleton/);
  });
});

describe('medians', () => {
  it('takes each figure median over runs and sums the errors', () => {
    const m = medianRun([run(100, 9, 1), run(300, 1), run(200, 5, 2)]);
    expect(m.rps).toBe(200);
    expect(m.p99Ms).toBe(5);
    expect(m.errors).toBe(3);
  });
});

describe('config', () => {
  it('reads the defaults, and refuses values it would misread', () => {
    const c = readConfig({});
    expect(c).toMatchObject({ seconds: 5, rounds: 3, connections: 64, etcd: true, etcdMember: 'leader', pin: true, tailRuns: 5 });
    expect(() => readConfig({ BENCH_ETCD_MEMBER: 'any' })).toThrow(/BENCH_ETCD_MEMBER/);
    expect(() => readConfig({ BENCH_ROUNDS: '1.5' })).toThrow(/BENCH_ROUNDS/);
  });
});

describe('wrk scripts', () => {
  it('drive etcd through the gateway with linearizable ranges (never serializable)', () => {
    const lua = wrkScript('etcd', 'MIX', readConfig({}));
    expect(lua).toContain('/v3/kv/range');
    expect(lua).toContain('/v3/kv/put');
    expect(lua).not.toMatch(/serializable/i);
  });
});

describe('the etcd wrk script against a real server', () => {
  const hasWrk = spawnSync('wrk', ['-v']).error === undefined;
  (hasWrk ? it : it.skip)('sends base64 keys and values that decode to the seeded ones', async () => {
    const bodies: string[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (bodies.length < 2000) bodies.push(body);
        res.end('{}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const dir = mkdtempSync(join(tmpdir(), 'bench-lua-'));
    try {
      const cfg = readConfig({ BENCH_KEYS: '20' });
      const script = join(dir, 'mix.lua');
      writeFileSync(script, wrkScript('etcd', 'MIX', cfg));
      const { port } = server.address() as AddressInfo;
      const out = await new Promise<string>((resolve, reject) =>
        execFile('wrk', ['-t1', '-c1', '-d1s', '-s', script, `http://127.0.0.1:${port}`], { timeout: 20_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
      );
      expect(out).toMatch(/WRK_JSON \{"requests":\d+/);
      const decoded = bodies.map((b) => JSON.parse(b) as { key: string; value?: string });
      expect(decoded.length).toBeGreaterThan(10);
      const keys = new Set(Array.from({ length: 20 }, (_, i) => `bench-${i}`));
      for (const d of decoded) expect(keys.has(Buffer.from(d.key, 'base64').toString())).toBe(true);
      const values = decoded.filter((d) => d.value !== undefined).map((d) => Buffer.from(d.value!, 'base64').toString());
      expect(values.length).toBeGreaterThan(0);
      for (const v of values) expect(v).toBe('v'.repeat(cfg.valueBytes));
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
