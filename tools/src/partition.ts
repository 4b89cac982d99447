import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { delimiter, join } from 'node:path';
import { pidAlive } from '@shardkv/common';

/*
 * Network partitions between local processes, for the fault harness (Linux, root, iptables).
 *
 * Every process listens on its own loopback address (`loopbackAddress(i)`) and binds the local
 * address of its outgoing connections to it too, so a packet's source and destination addresses
 * name the two processes of one link, and a rule matching both cuts exactly that link. A process
 * that does not bind its outgoing sockets sends from 127.0.0.1 (the `src` of the kernel's local
 * route) and is not matched by any cut.
 *
 * Each Partitioner owns one chain, `SKV-<pid>-<n>`, hooked into OUTPUT with `-o lo`. A packet to
 * a loopback address passes OUTPUT once (then POSTROUTING, the lo device, PREROUTING, INPUT), so
 * dropping it in OUTPUT is enough and INPUT is not touched. Cuts use DROP, not REJECT: the peer
 * sees silence and runs into its own timeouts, as in a real partition, instead of a quick refusal.
 * TCP retransmits what the drop swallowed, so a connect hangs and an established connection
 * stalls. A UDP sender, though, gets EPERM from sendmsg for a datagram dropped in OUTPUT (a
 * drop in INPUT would be silent); shardkv speaks only TCP, so OUTPUT is enough for it.
 */

/** Bounds one iptables call; above the lock wait so a held xtables lock fails as a timeout of ours. */
const IPTABLES_TIMEOUT_MS = 10_000;
/** Seconds `-w` waits for the xtables lock another iptables user may hold. */
const XTABLES_LOCK_WAIT_S = '5';
/** apt-get may download; a slow mirror gets this long before we give up. */
const APT_TIMEOUT_MS = 300_000;
/** iptables refuses longer chain names (XT_EXTENSION_MAXNAMELEN - 1). */
const CHAIN_NAME_CHARS_MAX = 28;
const CHAIN_PREFIX = 'SKV-';
/** A leftover chain's hook may in theory appear several times; never loop on it unboundedly. */
const HOOKS_PER_CHAIN_MAX = 16;

const LOOPBACK_FIRST_OCTET = 10;
/** Indexes 0..244 give 127.0.0.10..127.0.0.254. */
export const LOOPBACK_INDEX_MAX = 244;

/**
 * The loopback address of process `index`: 127.0.0.10 + index, so 127.0.0.10..127.0.0.254.
 * On Linux all of 127.0.0.0/8 is local on `lo`, so these can be listened on and used as the
 * local address of outgoing sockets without `ip addr add`. 127.0.0.1 is avoided because every
 * other program on the machine uses it (a cut on it would hit them), and .2-.9 are left for
 * ad hoc use such as a test's bystander client.
 */
export function loopbackAddress(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > LOOPBACK_INDEX_MAX) {
    throw new RangeError(`loopback index ${index} is outside 0..${LOOPBACK_INDEX_MAX}`);
  }
  return `127.0.0.${LOOPBACK_FIRST_OCTET + index}`;
}

export type IptablesErrorCode = 'iptables_missing' | 'iptables_unusable' | 'iptables_failed';

/** Every failure here carries a stable code, so the harness can tell "cannot run" from a bug. */
export class IptablesError extends Error {
  constructor(
    readonly code: IptablesErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'IptablesError';
  }
}

const FIX_HINT = 'run as root (in a container: --cap-add=NET_ADMIN) with iptables installed (`apt-get install iptables`)';

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** PATH first, then the sbin directories a non-login root shell or a plain user may lack in PATH. */
function findIptables(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'];
  return dirs.filter((dir) => dir !== '').map((dir) => join(dir, 'iptables')).find((path) => existsSync(path));
}

function exec(file: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', env }, (err, stdout, stderr) => {
      if (err === null) return resolve(stdout);
      const detail = String(stderr).trim() || err.message;
      reject(new IptablesError('iptables_failed', `${file} ${args.join(' ')}: ${detail}`));
    });
  });
}

function iptables(bin: string, args: string[]): Promise<string> {
  return exec(bin, ['-w', XTABLES_LOCK_WAIT_S, ...args], IPTABLES_TIMEOUT_MS);
}

/** The synchronous twin, for 'exit' handlers and diagnostics, where nothing async can run. */
function iptablesSync(bin: string, args: string[]): string {
  return execFileSync(bin, ['-w', XTABLES_LOCK_WAIT_S, ...args], {
    timeout: IPTABLES_TIMEOUT_MS,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

let ready: Promise<string> | undefined;

/**
 * Makes sure iptables is installed and usable, installing it with apt-get when we are root, or
 * throws an IptablesError saying what is missing and how to fix it.
 */
export async function ensureIptables(): Promise<void> {
  await iptablesBinary();
}

function iptablesBinary(): Promise<string> {
  // A failure is not cached: the caller may fix the machine and try again in the same process.
  ready ??= prepareIptables().catch((err: unknown) => {
    ready = undefined;
    throw err;
  });
  return ready;
}

async function prepareIptables(): Promise<string> {
  const bin = findIptables() ?? (await installIptables());
  try {
    await iptables(bin, ['-S']);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new IptablesError('iptables_unusable', `iptables cannot read the filter table (${detail}); ${FIX_HINT}`);
  }
  return bin;
}

async function installIptables(): Promise<string> {
  if (!isRoot()) {
    throw new IptablesError('iptables_missing', `iptables is not installed and this process is not root; ${FIX_HINT}`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args: string[]) => exec('apt-get', args, APT_TIMEOUT_MS, env);
  try {
    // The package index is usually fresh enough; `update` costs a download, so only on failure.
    await apt(['install', '-y', 'iptables']).catch(async () => {
      await apt(['update']);
      await apt(['install', '-y', 'iptables']);
    });
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new IptablesError('iptables_missing', `iptables is not installed and apt-get could not install it (${detail}); ${FIX_HINT}`);
  }
  const bin = findIptables();
  if (bin === undefined) throw new IptablesError('iptables_missing', `apt-get installed iptables but it is not on PATH; ${FIX_HINT}`);
  return bin;
}

/** Chains of live Partitioners in this process: same pid as ours, but not leftovers. */
const liveChains = new Set<string>();
let chainsCreated = 0;

function claimChainName(): string {
  const chain = `${CHAIN_PREFIX}${process.pid}-${chainsCreated}`;
  chainsCreated += 1;
  if (chain.length > CHAIN_NAME_CHARS_MAX) {
    throw new IptablesError('iptables_failed', `chain name ${chain} exceeds ${CHAIN_NAME_CHARS_MAX} characters`);
  }
  liveChains.add(chain);
  return chain;
}

/**
 * Our chains in an `iptables -S` listing whose process is gone. A chain carrying our own pid but
 * not created by this process was left by an earlier process that had the same pid (pid reuse,
 * common in containers). Limitation: pids are checked in our pid namespace, so a process in
 * another pid namespace sharing this network namespace would look dead.
 */
function leftoverChains(listing: string): string[] {
  const chains: string[] = [];
  for (const line of listing.split('\n')) {
    const match = /^-N (SKV-(\d+)-\d+)$/.exec(line.trim());
    if (match === null) continue;
    const [, chain, pidText] = match as unknown as [string, string, string];
    const pid = Number(pidText);
    const dead = pid === process.pid ? !liveChains.has(chain) : !pidAlive(pid);
    if (dead) chains.push(chain);
  }
  return chains;
}

async function removeLeftoverChains(bin: string): Promise<void> {
  const listing = await iptables(bin, ['-S']);
  for (const chain of leftoverChains(listing)) {
    // Another process may be removing the same leftover right now; its failure is not ours.
    await removeChain(bin, chain, listing).catch(() => undefined);
  }
}

async function removeChain(bin: string, chain: string, listing: string): Promise<void> {
  const hooks = listing.split('\n').filter((l) => l.startsWith('-A OUTPUT ') && l.trim().endsWith(`-j ${chain}`));
  for (let i = 0; i < Math.min(hooks.length, HOOKS_PER_CHAIN_MAX); i += 1) {
    await iptables(bin, ['-D', 'OUTPUT', ...hookSpec(chain)]);
  }
  await iptables(bin, ['-F', chain]);
  await iptables(bin, ['-X', chain]);
}

function hookSpec(chain: string): string[] {
  return ['-o', 'lo', '-j', chain];
}

export interface CutOptions {
  /** Drop only a -> b; b -> a still passes. */
  oneWay?: boolean;
  /** Only packets to this port on b (TCP and UDP), and for b -> a those from it. */
  port?: number;
}

function assertLoopback(address: string): void {
  if (!isIPv4(address) || !address.startsWith('127.')) {
    throw new RangeError(`${address} is not an IPv4 loopback address: cuts act on lo only`);
  }
}

function assertPort(port: number | undefined): void {
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new RangeError(`bad port ${port}`);
}

/** The match part of the rules for one direction; a port needs a protocol, so TCP and UDP each. */
function directionMatches(src: string, dst: string, portFlag: '--dport' | '--sport', port?: number): string[][] {
  const addresses = ['-s', src, '-d', dst];
  if (port === undefined) return [addresses];
  return ['tcp', 'udp'].map((proto) => [...addresses, '-p', proto, portFlag, String(port)]);
}

/** Every rule of one cut, tagged with a comment so `rules()` says which cut a rule belongs to. */
function cutRuleSpecs(a: string, b: string, opts: CutOptions, comment: string): string[][] {
  const forward = directionMatches(a, b, '--dport', opts.port);
  const reverse = opts.oneWay === true ? [] : directionMatches(b, a, '--sport', opts.port);
  return [...forward, ...reverse].map((match) => [...match, '-m', 'comment', '--comment', comment, '-j', 'DROP']);
}

function commentLabel(label: string | undefined): string {
  // Kept to characters iptables prints without quoting, and short, as it is repeated per rule.
  return (label ?? 'skv').replace(/[^\w.-]/g, '_').slice(0, 64);
}

/**
 * Cuts links between loopback addresses with an iptables chain of its own. All its iptables
 * calls run one at a time, in call order, so a heal never overtakes the cut it undoes.
 */
export class Partitioner {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly cuts = new Map<string, string[][]>();
  private cutsMade = 0;
  private closing: Promise<void> | undefined;
  private chainRemoved = false;
  private readonly onExit = (): void => this.removeChainSync();
  private readonly onSignal = (signal: NodeJS.Signals): void => this.handleSignal(signal);

  private constructor(
    readonly chain: string,
    readonly label: string | undefined,
    private readonly bin: string,
  ) {}

  /** Removes chains of dead runs, then creates and hooks this Partitioner's chain. */
  static async create(label?: string): Promise<Partitioner> {
    const bin = await iptablesBinary();
    const p = new Partitioner(claimChainName(), label, bin);
    // Handlers first: a process killed between `-N` and the hook still removes what exists.
    p.registerCleanup();
    try {
      await p.serial(async () => {
        await removeLeftoverChains(bin);
        await iptables(bin, ['-N', p.chain]);
        // Inserted first in OUTPUT, so an ACCEPT rule someone else appended cannot bypass it.
        await iptables(bin, ['-I', 'OUTPUT', '1', ...hookSpec(p.chain)]);
      });
    } catch (err) {
      await p.close().catch(() => undefined);
      throw err;
    }
    return p;
  }

  /** Drops packets from a to b, and b to a unless oneWay. Returns the id `healLink` takes. */
  async cut(a: string, b: string, opts: CutOptions = {}): Promise<string> {
    assertLoopback(a);
    assertLoopback(b);
    assertPort(opts.port);
    this.cutsMade += 1;
    const id = `cut-${this.cutsMade}`;
    const specs = cutRuleSpecs(a, b, opts, `${commentLabel(this.label)}:${id}`);
    await this.serial(() => this.appendAll(specs));
    this.cuts.set(id, specs);
    return id;
  }

  /** Cuts a from each of others, both ways; returns one id per cut. */
  async isolate(a: string, others: string[]): Promise<string[]> {
    const ids: string[] = [];
    for (const other of others) ids.push(await this.cut(a, other));
    return ids;
  }

  /** Removes one cut. An id that is already healed (also by `heal()`) is a no-op. */
  async healLink(id: string): Promise<void> {
    await this.serial(async () => {
      const specs = this.cuts.get(id);
      if (specs === undefined) return;
      for (const spec of specs) await iptables(this.bin, ['-D', this.chain, ...spec]);
      this.cuts.delete(id);
    });
  }

  /** Removes every cut at once. */
  async heal(): Promise<void> {
    await this.serial(async () => {
      await iptables(this.bin, ['-F', this.chain]);
      this.cuts.clear();
    });
  }

  /** Unhooks and deletes the chain. Idempotent; later calls return the first call's outcome. */
  close(): Promise<void> {
    this.closing ??= this.queue.then(() => this.removeChain());
    return this.closing;
  }

  /**
   * The chain's rules as `iptables -S` prints them (`-A SKV-... -j DROP`, one per line), for
   * diagnostics. Synchronous, so it shows what has been applied so far, not queued calls.
   */
  rules(): string[] {
    if (this.chainRemoved) return [];
    return iptablesSync(this.bin, ['-S', this.chain])
      .split('\n')
      .filter((line) => line.startsWith('-A '));
  }

  private async removeChain(): Promise<void> {
    if (!this.chainRemoved) {
      const listing = await iptables(this.bin, ['-S']);
      // The chain may never have been created when create() failed half-way.
      if (listing.split('\n').includes(`-N ${this.chain}`)) await removeChain(this.bin, this.chain, listing);
      this.chainRemoved = true;
      liveChains.delete(this.chain);
    }
    // Only now: if removal failed, the exit handler still gets a chance at it.
    this.unregisterCleanup();
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    if (this.closing !== undefined) return Promise.reject(new Error(`partitioner ${this.chain} is closed`));
    const result = this.queue.then(op);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** All rules of a cut or none: a failure half-way removes what was added before rethrowing. */
  private async appendAll(specs: string[][]): Promise<void> {
    const added: string[][] = [];
    try {
      for (const spec of specs) {
        await iptables(this.bin, ['-A', this.chain, ...spec]);
        added.push(spec);
      }
    } catch (err) {
      for (const spec of added) await iptables(this.bin, ['-D', this.chain, ...spec]).catch(() => undefined);
      throw err;
    }
  }

  private registerCleanup(): void {
    process.on('exit', this.onExit);
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  private unregisterCleanup(): void {
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }

  private handleSignal(signal: NodeJS.Signals): void {
    this.removeChainSync();
    this.unregisterCleanup();
    // Our listener replaced the default action of the signal (exit). When nobody else listens,
    // raise it again so the process still dies of it, with the status its parent expects.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  }

  /** Best effort at process end: every step is tried even if an earlier one failed. */
  private removeChainSync(): void {
    if (this.chainRemoved) return;
    this.chainRemoved = true;
    liveChains.delete(this.chain);
    const steps = [['-D', 'OUTPUT', ...hookSpec(this.chain)], ['-F', this.chain], ['-X', this.chain]];
    for (const args of steps) {
      try {
        iptablesSync(this.bin, args);
      } catch {
        // Nothing more can be done while exiting; the next create() removes what is left.
      }
    }
  }
}
