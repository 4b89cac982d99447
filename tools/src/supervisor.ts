import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ProcessSpec {
  name: string;
  /** The compiled entry point, run with this Node. */
  script: string;
  env: Record<string, string>;
}

export interface RestartPolicy {
  backoffMinMs: number;
  backoffMaxMs: number;
  /** A process that ran this long before exiting restarts at the minimum backoff again. */
  stableAfterMs: number;
}

export const DEFAULT_RESTART: RestartPolicy = { backoffMinMs: 250, backoffMaxMs: 5000, stableAfterMs: 10_000 };

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
 * cannot start does not spin.
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
    private readonly policy: RestartPolicy = DEFAULT_RESTART,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    this.stopping = false;
    this.gaveUp = undefined;
    this.startedAt = Date.now();
    const child = spawn(process.execPath, [this.spec.script], {
      // The child watches this stdin pipe and exits when it closes: if the supervisor itself is
      // killed (kill -9, a crashed test runner), no node is left running.
      env: { ...process.env, ...this.spec.env, EXIT_WITH_PARENT: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => this.sink(this.spec.name, line));
    }
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = undefined;
    if (this.stopping) return;
    if (code === EXIT_CONFIG) {
      this.gaveUp = `${this.spec.name} cannot start with its configuration (exit ${code}); not restarting it: see its last log line`;
      this.sink('supervisor', this.gaveUp);
      return;
    }
    this.failures = Date.now() - this.startedAt >= this.policy.stableAfterMs ? 0 : this.failures + 1;
    const delayMs = Math.min(this.policy.backoffMaxMs, this.policy.backoffMinMs * 2 ** Math.max(0, this.failures - 1));
    this.sink('supervisor', `${this.spec.name} exited (${signal ?? `code ${code}`}); restarting in ${delayMs} ms`);
    this.restartTimer = setTimeout(() => {
      this.restarts += 1;
      this.start();
    }, delayMs);
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
