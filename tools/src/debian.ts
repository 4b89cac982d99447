import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
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

/**
 * Installs a Debian package with apt-get, as etcd.ts and partition.ts do for theirs: `install`
 * first (the package lists are usually fresh enough), `update` and `install` again only when the
 * package is unknown, because a machine whose lists were never fetched knows no package at all.
 * Throws with apt-get's last line of complaint and `hint` (how to get it by hand).
 */
export async function aptInstall(pkg: string, hint: string): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error(`${pkg} is not installed and this process is not root: ${hint}`);
  process.stderr.write(`[apt] running apt-get install -y ${pkg}\n`);
  const apt = (args: string[]) => execFileAsync('apt-get', args, { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: APT_TIMEOUT_MS, maxBuffer: 64 << 20 });
  const fail = (err: unknown) => {
    const e = err as { stderr?: string; message?: string };
    const last = (e.stderr || e.message || String(err)).trim().split('\n').pop();
    return new Error(`could not install ${pkg} (apt-get: ${last}): ${hint}`);
  };
  try {
    await apt(['install', '-y', pkg]);
  } catch (err) {
    if (!/Unable to locate package|no installation candidate/.test(String((err as { stderr?: string }).stderr))) throw fail(err);
    await apt(['update']).catch((e: unknown) => Promise.reject(fail(e)));
    await apt(['install', '-y', pkg]).catch((e: unknown) => Promise.reject(fail(e)));
  }
}
