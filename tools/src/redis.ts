import { spawnSync } from 'node:child_process';

/**
 * Undefined when redis-server is on PATH (installing it if need be), else why it is not. The
 * benchmarks' Redis baselines need it and redis-cli, which Debian's redis-server brings along.
 */
export function ensureRedis(): string | undefined {
  if (spawnSync('redis-server', ['--version']).status === 0) return undefined;
  console.log('\nredis-server not on PATH: apt-get install -y redis-server');
  const apt = (args: string[]) => spawnSync('apt-get', args, { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  // A machine whose package lists were never fetched cannot install anything: fetch them once, then retry.
  let res = apt(['install', '-y', 'redis-server']);
  if (res.status !== 0) res = apt(['update']).status === 0 ? apt(['install', '-y', 'redis-server']) : res;
  if (res.status === 0 && spawnSync('redis-server', ['--version']).status === 0) return undefined;
  return `could not install redis-server (apt-get: ${(res.stderr || res.error?.message || `exit ${res.status}`).trim().split('\n').pop()})`;
}
