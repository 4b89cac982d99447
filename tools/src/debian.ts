import { execFile, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** apt-get can take minutes on a cold machine (chromium pulls in ~100 MB), but not forever. */
const APT_TIMEOUT_MS = 10 * 60_000;

/** The first executable of that name on PATH, or in the given extra places (Debian's /usr/bin when PATH is thin). */
export function findExecutable(binary: string, extra: string[] = []): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const candidate of [...dirs.map((d) => join(d, binary)), ...extra]) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface AptOptions {
  /** Install the package's Recommends too (apt's default). Prometheus recommends node-exporter, one more daemon. */
  recommends?: boolean;
  /**
   * Let the package's maintainer scripts start its service (default true). False holds them with
   * a policy-rc.d that refuses every start for the length of the install: Debian's prometheus
   * would otherwise start a system-wide server on :9090 that nobody asked for.
   */
  startServices?: boolean;
}

/**
 * Installs a Debian package with apt-get, as etcd.ts and partition.ts do for theirs: `install`
 * first (the package lists are usually fresh enough), `update` and `install` again only when the
 * package is unknown, because a machine whose lists were never fetched knows no package at all.
 * Throws with apt-get's last line of complaint and `hint` (how to get it by hand).
 */
export async function aptInstall(pkg: string, hint: string, opts: AptOptions = {}): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error(`${pkg} is not installed and this process is not root: ${hint}`);
  const args = ['install', '-y', ...(opts.recommends === false ? ['--no-install-recommends'] : []), pkg];
  process.stderr.write(`[apt] running apt-get ${args.join(' ')}\n`);
  const apt = (a: string[]) => execFileAsync('apt-get', a, { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: APT_TIMEOUT_MS, maxBuffer: 64 << 20 });
  const fail = (err: unknown) => {
    const e = err as { stderr?: string; message?: string };
    const last = (e.stderr || e.message || String(err)).trim().split('\n').pop();
    return new Error(`could not install ${pkg} (apt-get: ${last}): ${hint}`);
  };
  const release = opts.startServices === false ? holdServiceStarts(pkg) : () => undefined;
  try {
    await apt(args);
  } catch (err) {
    if (!/Unable to locate package|no installation candidate/.test(String((err as { stderr?: string }).stderr))) throw fail(err);
    await apt(['update']).catch((e: unknown) => Promise.reject(fail(e)));
    await apt(args).catch((e: unknown) => Promise.reject(fail(e)));
  } finally {
    release();
  }
}

/** Where invoke-rc.d and deb-systemd-invoke ask whether a maintainer script may start a service. */
export const POLICY_RC_D = '/usr/sbin/policy-rc.d';
/** policy-rc.d's answer for "action forbidden" (invoke-rc.d(8)). */
const POLICY_FORBIDDEN = 101;

/**
 * Until the returned function is called, maintainer scripts may start no service: a policy-rc.d
 * that exits 101 is put at `path`. One already there that refuses `service`'s start (Docker images
 * ship one that refuses everything) is the machine's own and is left alone; one that would allow
 * it is moved aside and put back afterwards.
 */
export function holdServiceStarts(service: string, path = POLICY_RC_D): () => void {
  const aside = `${path}.shardkv-held`;
  if (existsSync(path)) {
    if (spawnSync(path, [service, 'start']).status === POLICY_FORBIDDEN) return () => undefined;
    renameSync(path, aside);
  }
  writeFileSync(path, `#!/bin/sh\n# Written by shardkv's aptInstall for the length of one install: no service starts.\nexit ${POLICY_FORBIDDEN}\n`, { mode: 0o755 });
  return () => {
    rmSync(path, { force: true });
    if (existsSync(aside)) renameSync(aside, path);
  };
}
