// holdServiceStarts keeps a package's maintainer scripts from starting its service for the length
// of an install, and leaves the machine's own policy-rc.d as it found it. Run against a policy
// file in a temp directory: the real /usr/sbin/policy-rc.d is never touched here.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { holdServiceStarts } from './debian';

let dir: string;
let policy: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'shardkv-policy-'));
  policy = join(dir, 'policy-rc.d');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const answer = (path: string) => spawnSync(path, ['prometheus', 'start']).status;

describe('holdServiceStarts', () => {
  test('with no policy-rc.d, writes one that forbids every start (101) and removes it on release', () => {
    const release = holdServiceStarts('prometheus', policy);
    expect(answer(policy)).toBe(101);
    release();
    expect(readdirSync(dir)).toEqual([]);
  });

  test('leaves a policy-rc.d that already forbids the start as it is, before and after', () => {
    const own = '#!/bin/sh\nexit 101\n';
    writeFileSync(policy, own, { mode: 0o755 });
    const release = holdServiceStarts('prometheus', policy);
    expect(readFileSync(policy, 'utf8')).toBe(own);
    release();
    expect(readFileSync(policy, 'utf8')).toBe(own);
    expect(readdirSync(dir)).toEqual(['policy-rc.d']);
  });

  test('moves a policy-rc.d that would allow the start aside for the install and puts it back', () => {
    const permissive = '#!/bin/sh\nexit 0\n';
    writeFileSync(policy, permissive, { mode: 0o755 });
    const release = holdServiceStarts('prometheus', policy);
    expect(answer(policy)).toBe(101);
    release();
    expect(readFileSync(policy, 'utf8')).toBe(permissive);
    expect(answer(policy)).toBe(0);
    expect(existsSync(`${policy}.shardkv-held`)).toBe(false);
  });
});
