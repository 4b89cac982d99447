import { aptInstall, findExecutable } from './debian';

/** Debian's package installs the browser here; puppeteer-core needs a path, it brings no browser of its own. */
const CHROMIUM_PATHS = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
const INSTALL_HINT = 'install it with `sudo apt-get install chromium` (Debian/Ubuntu), or run the tests as root, which installs it';

let chromiumPath: Promise<string> | undefined;

/**
 * The path of a chromium binary for the web console's browser test: the one installed, else (as
 * root) Debian's chromium installed with apt-get. Memoised per process; a failure is not, so a
 * later call can try again.
 */
export function ensureChromium(): Promise<string> {
  chromiumPath ??= findOrInstall().catch((err: unknown) => {
    chromiumPath = undefined;
    throw err;
  });
  return chromiumPath;
}

async function findOrInstall(): Promise<string> {
  const found = findChromium();
  if (found !== undefined) return found;
  await aptInstall('chromium', INSTALL_HINT);
  const installed = findChromium();
  if (installed === undefined) throw new Error(`apt-get installed chromium but no chromium binary is at ${CHROMIUM_PATHS.join(' or ')} or on PATH: ${INSTALL_HINT}`);
  return installed;
}

function findChromium(): string | undefined {
  return findExecutable('chromium', CHROMIUM_PATHS);
}

/**
 * Flags for chromium in a container: as root it refuses to start without --no-sandbox, and a
 * small /dev/shm crashes its renderer unless it keeps shared memory in /tmp. (Headless is
 * puppeteer's `headless: true`, which passes `--headless=new`.)
 */
export function chromiumArgs(): string[] {
  const args = ['--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', '--no-default-browser-check'];
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  return args;
}
