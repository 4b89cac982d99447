import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** What to run: a compiled Node entry point (`script`), or any binary (`command` and `args`). */
export interface ProcessSpec {
  name: string;
  /** The compiled entry point, run with this Node; it exits when its stdin closes (EXIT_WITH_PARENT). */
  script?: string;
  /** A binary run instead of `script` (etcd). It cannot watch stdin, so the watchdog kills it if we die. */
  command?: string;
  args?: string[];
  env: Record<string, string>;
}

export interface RestartPolicy {
  backoffMinMs: number;
  backoffMaxMs: number;
  /** A process that ran this long before exiting restarts at the minimum backoff again. */
  stableAfterMs: number;
}

export const DEFAULT_RESTART: RestartPolicy = { backoffMinMs: 250, backoffMaxMs: 5000, stableAfterMs: 10_000 };

/** Like compose's `restart: "no"`: a child that exits stays down until `start` is called again. */
export const NO_RESTART = 'no';

export type LineSink = (name: string, line: string) => void;

/**
 * A node exits with this status (EX_CONFIG) when it cannot run as configured: a data directory
 * that is unwritable or belongs to another node. Restarting cannot fix that, so it is not
 * restarted: a crash loop would only bury the message.
 */
export const EXIT_CONFIG = 78;

/**
 * One supervised child process. Like compose's `restart: unless-stopped`, it restarts the child
 * whenever it exits (crash, kill -9) until `stop`, with exponential backoff so a process that
 * cannot start does not spin; with NO_RESTART it leaves it down (tests that crash on purpose).
 */
export class Supervised {
  private child: ChildProcess | undefined;
  private stopping = false;
  private failures = 0;
  private startedAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  restarts = 0;
  /** Set when the child exited with EXIT_CONFIG: it stays down until started again by hand. */
  gaveUp: string | undefined;

  constructor(
    readonly spec: ProcessSpec,
    private readonly sink: LineSink,
    private readonly policy: RestartPolicy | typeof NO_RESTART = DEFAULT_RESTART,
  ) {
    if ((spec.script === undefined) === (spec.command === undefined)) throw new Error(`${spec.name}: give exactly one of script and command`);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    this.stopping = false;
    this.gaveUp = undefined;
    this.startedAt = Date.now();
    const child = this.spawnChild();
    this.child = child;
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => this.sink(this.spec.name, line));
    }
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
    // A binary that cannot be started emits 'error' and never 'exit': report it as its exit.
    child.once('error', (err) => {
      this.sink('supervisor', `${this.spec.name}: ${err.message}`);
      if (child.pid === undefined) this.onExit(child, child.exitCode, null);
    });
  }

  private spawnChild(): ChildProcess {
    const env = { ...process.env, ...this.spec.env, EXIT_WITH_PARENT: '1' };
    const { script, command, args = [] } = this.spec;
    if (script !== undefined) {
      // The child watches this stdin pipe and exits when it closes: if the supervisor itself is
      // killed (kill -9, a crashed test runner), no node is left running.
      return spawn(process.execPath, [script], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    }
    const child = spawn(command!, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid !== undefined) {
      const pid = child.pid;
      watchdog.watch(pid);
      child.once('exit', () => watchdog.forget(pid));
    }
    return child;
  }

  /** Resolves once no child is running, so a restart does not race the old process for its ports. */
  whenExited(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', () => child.pid === undefined && resolve());
    });
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = undefined;
    if (this.stopping) return;
    if (this.policy === NO_RESTART) {
      this.sink('supervisor', `${this.spec.name} exited (${signal ?? `code ${code}`}); restart policy "no", left down`);
      return;
    }
    if (code === EXIT_CONFIG) {
      this.gaveUp = `${this.spec.name} cannot start with its configuration (exit ${code}); not restarting it: see its last log line`;
      this.sink('supervisor', this.gaveUp);
      return;
    }
    const policy = this.policy;
    this.failures = Date.now() - this.startedAt >= policy.stableAfterMs ? 0 : this.failures + 1;
    const delayMs = Math.min(policy.backoffMaxMs, policy.backoffMinMs * 2 ** Math.max(0, this.failures - 1));
    this.sink('supervisor', `${this.spec.name} exited (${signal ?? `code ${code}`}); restarting in ${delayMs} ms`);
    this.restartTimer = setTimeout(() => {
      this.restarts += 1;
      this.start();
    }, delayMs);
  }

  /** Changes the child's environment from its next start (a restart after a crash included); the running child keeps its own. */
  setEnv(env: Record<string, string>): void {
    Object.assign(this.spec.env, env);
  }

  /** Sends a signal to the current child (SIGKILL to crash it, SIGSTOP/SIGCONT to pause it). */
  signal(sig: NodeJS.Signals): void {
    if (this.child?.pid === undefined) throw new Error(`${this.spec.name} is not running`);
    this.child.kill(sig);
  }

  /** Stops the child for good: SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGCONT'); // a paused child cannot handle SIGTERM
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Kills the binaries we spawned (`command` specs) if this process dies without stopping them. A
 * Node child exits by itself when its stdin pipe from us closes (EXIT_WITH_PARENT), but a binary
 * such as etcd ignores stdin, and "die with my parent" needs prctl(PR_SET_PDEATHSIG), which Node
 * cannot call. So one small Node watchdog per supervising process holds a stdin pipe from us and
 * is told each such pid as it starts (`+pid`) and exits (`-pid`); when the pipe closes (we exited,
 * crashed or were SIGKILLed) it SIGKILLs the pids still listed and exits. It ignores SIGINT so a
 * Ctrl-C to the terminal's process group leaves the supervisor to stop its children in order.
 * The one gap: a child that exits in the instant before we write `-pid` and whose pid is reused
 * before we die; pids are not reused that fast in practice.
 */
const WATCHDOG_SOURCE = `
const pids = new Set();
process.on('SIGINT', () => {});
require('node:readline').createInterface({ input: process.stdin })
  .on('line', (l) => (l[0] === '+' ? pids.add(Number(l.slice(1))) : pids.delete(Number(l.slice(1)))))
  .on('close', () => {
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch {} }
    process.exit(0);
  });
`;

class Watchdog {
  private child: ChildProcess | undefined;
  /** The pids it must kill; re-sent if the watchdog itself died and is started again. */
  private readonly pids = new Set<number>();

  watch(pid: number): void {
    this.pids.add(pid);
    if (this.child === undefined) this.child = this.spawnWatchdog();
    else this.child.stdin!.write(`+${pid}\n`);
  }

  forget(pid: number): void {
    this.pids.delete(pid);
    this.child?.stdin!.write(`-${pid}\n`);
  }

  private spawnWatchdog(): ChildProcess {
    const child = spawn(process.execPath, ['-e', WATCHDOG_SOURCE], { stdio: ['pipe', 'ignore', 'inherit'] });
    // Neither the watchdog nor its pipe may keep the supervising process (a test runner) alive.
    child.unref();
    const stdin = child.stdin! as NodeJS.WritableStream & { unref?: () => void };
    stdin.unref?.();
    child.stdin!.on('error', () => undefined); // it died: its exit handler below starts over
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    for (const pid of this.pids) child.stdin!.write(`+${pid}\n`);
    return child;
  }
}

const watchdog = new Watchdog();
