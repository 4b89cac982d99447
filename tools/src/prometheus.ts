import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aptInstall, findExecutable } from './debian';
import { freePort } from './ports';
import { NO_RESTART, Supervised, type LineSink } from './supervisor';

/** Debian's package (2.42 on bookworm) installs both here. */
const PROMETHEUS_PATHS = ['/usr/bin/prometheus'];
const PROMTOOL_PATHS = ['/usr/bin/promtool'];
const INSTALL_HINT = 'install it with `sudo apt-get install --no-install-recommends prometheus` (Debian/Ubuntu), or run the tests as root, which installs it';
const READY_POLL_MS = 100;
const READY_REQUEST_TIMEOUT_MS = 1000;
const STOP_GRACE_MS = 5000;
/** Log lines kept for the error a failed start throws. */
const LOG_TAIL_LINES = 30;

export interface PrometheusBinaries {
  prometheus: string;
  promtool: string;
}

let binaries: Promise<PrometheusBinaries> | undefined;

/**
 * The paths of prometheus and promtool: the ones installed, else (as root) Debian's prometheus
 * installed with apt-get, without its Recommends (node-exporter) and without letting its
 * maintainer scripts start the system-wide service: tests run their own server on a free port.
 * Memoised per process; a failure is not, so a later call can try again.
 */
export function ensurePrometheus(): Promise<PrometheusBinaries> {
  binaries ??= findOrInstall().catch((err: unknown) => {
    binaries = undefined;
    throw err;
  });
  return binaries;
}

async function findOrInstall(): Promise<PrometheusBinaries> {
  const found = findBinaries();
  if (found !== undefined) return found;
  const before = new Set(prometheusPids());
  try {
    await aptInstall('prometheus', INSTALL_HINT, { recommends: false, startServices: false });
  } finally {
    // Belt and braces: the service start is held, but a package whose scripts start the daemon
    // some other way would leave a server on :9090 behind us. Stop only what appeared meanwhile.
    const started = prometheusPids().filter((p) => !before.has(p));
    if (started.length > 0) {
      process.stderr.write(`[prometheus] the package install left prometheus running (pid ${started.join(', ')}): stopping it\n`);
      await stopPids(started);
    }
  }
  const installed = findBinaries();
  if (installed === undefined) throw new Error(`apt-get installed prometheus but no prometheus and promtool are at ${[...PROMETHEUS_PATHS, ...PROMTOOL_PATHS].join(', ')} or on PATH: ${INSTALL_HINT}`);
  return installed;
}

/** SIGTERM to each pid, SIGKILL to those still there after STOP_GRACE_MS. */
async function stopPids(pids: number[]): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false; // gone
    }
  };
  let alive = pids.filter((pid) => signal(pid, 'SIGTERM'));
  for (const deadline = Date.now() + STOP_GRACE_MS; alive.length > 0 && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, READY_POLL_MS));
    alive = alive.filter((pid) => signal(pid, 0 as unknown as NodeJS.Signals));
  }
  for (const pid of alive) signal(pid, 'SIGKILL');
}

function findBinaries(): PrometheusBinaries | undefined {
  const prometheus = findExecutable('prometheus', PROMETHEUS_PATHS);
  const promtool = findExecutable('promtool', PROMTOOL_PATHS);
  return prometheus === undefined || promtool === undefined ? undefined : { prometheus, promtool };
}

/** Processes running a binary named prometheus (Linux: read from /proc; elsewhere none are found). */
export function prometheusPids(): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  return entries.filter((e) => /^\d+$/.test(e)).map(Number).filter((pid) => {
    try {
      return /\/prometheus( \(deleted\))?$/.test(readlinkSync(`/proc/${pid}/exe`));
    } catch {
      return false; // gone, or not ours to read
    }
  });
}

/** `promtool <args>`: its exit status and what it printed (promtool reports problems on either stream). */
export async function promtool(args: string[], input?: string): Promise<{ code: number; output: string }> {
  const { promtool: bin } = await ensurePrometheus();
  return new Promise((resolve) => {
    const child = execFile(bin, args, { timeout: 30_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      resolve({ code, output: `${stdout}${stderr}`.trim() });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

export interface PrometheusServerOptions {
  /** The configuration file to run with. */
  configFile: string;
  /** Default: a free port on 127.0.0.1. */
  port?: number;
  sink?: LineSink;
}

/**
 * A real Prometheus server for tests: its own process on a free port with its TSDB in a temp
 * directory, never the system's service. `stop()` stops it by its pid (SIGTERM, SIGKILL after a
 * grace period) and removes the directory; a test runner that dies leaves no server behind
 * (the supervisor's watchdog kills it).
 */
export class PrometheusServer {
  private stopped: Promise<void> | undefined;

  private constructor(
    private readonly proc: Supervised,
    readonly url: string,
    readonly storageDir: string,
    private readonly tail: string[],
  ) {}

  static async start(opts: PrometheusServerOptions, timeoutMs = 20_000): Promise<PrometheusServer> {
    const { prometheus: binary } = await ensurePrometheus();
    const port = opts.port ?? (await freePort());
    const storageDir = mkdtempSync(join(tmpdir(), 'shardkv-prometheus-'));
    const tail: string[] = [];
    const record: LineSink = (name, line) => {
      opts.sink?.(name, line);
      tail.push(line);
      if (tail.length > LOG_TAIL_LINES) tail.shift();
    };
    const args = [
      `--config.file=${opts.configFile}`,
      `--storage.tsdb.path=${storageDir}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ];
    const server = new PrometheusServer(new Supervised({ name: 'prometheus', command: binary, args, env: {} }, record, NO_RESTART), `http://127.0.0.1:${port}`, storageDir, tail);
    server.proc.start();
    try {
      await server.waitReady(timeoutMs);
    } catch (err) {
      await server.stop(); // nobody may call stop() after a failed start
      throw err;
    }
    return server;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** GET <path> on the server's HTTP API, parsed as JSON (whatever the status: the API explains its refusals). */
  async api<T = unknown>(path: string, params: Record<string, string> = {}): Promise<T> {
    const query = new URLSearchParams(params).toString();
    const res = await fetch(`${this.url}${path}${query === '' ? '' : `?${query}`}`, { signal: AbortSignal.timeout(10_000) });
    return (await res.json()) as T;
  }

  /** Stops the server by its pid and removes its TSDB. Idempotent. */
  stop(graceMs = STOP_GRACE_MS): Promise<void> {
    this.stopped ??= (async () => {
      try {
        await this.proc.stop(graceMs);
      } finally {
        rmSync(this.storageDir, { recursive: true, force: true });
      }
    })();
    return this.stopped;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    for (;;) {
      if (this.proc.pid === undefined) throw new Error(`prometheus exited before it was ready (${last}):\n  ${this.tail.join('\n  ') || '(no log lines)'}`);
      try {
        const res = await fetch(`${this.url}/-/ready`, { signal: AbortSignal.timeout(READY_REQUEST_TIMEOUT_MS) });
        if (res.ok) return;
        last = `GET /-/ready answered ${res.status}`;
      } catch (err) {
        last = `GET /-/ready failed: ${(err as Error).message}`;
      }
      if (Date.now() + READY_POLL_MS > deadline) throw new Error(`prometheus not ready after ${timeoutMs} ms (${last}):\n  ${this.tail.join('\n  ') || '(no log lines)'}`);
      await new Promise((r) => setTimeout(r, READY_POLL_MS));
    }
  }
}
