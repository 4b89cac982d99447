import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports';
import { NO_RESTART, Supervised, type LineSink, type RestartPolicy } from './supervisor';

const execFileAsync = promisify(execFile);

/** etcd's own advice: 3, 5 or 7 members; more only slows every write down. */
export const ETCD_MEMBERS_MAX = 7;
/** Log lines kept per member for the error a failed start throws. */
const LOG_TAIL_LINES = 20;
const HEALTH_POLL_MS = 100;
const HEALTH_REQUEST_TIMEOUT_MS = 1000;
const STOP_GRACE_MS = 5000;
/** A member that cannot say whether it leads within this is treated as not leading. */
const STATUS_TIMEOUT_MS = 500;
/** apt-get can take minutes on a cold machine, but not forever. */
const APT_TIMEOUT_MS = 10 * 60_000;
/** The flags below (--logger zap, --log-level) need 3.4. */
const ETCD_VERSION_MIN: [number, number] = [3, 4];
const INSTALL_HINT = 'install it with `sudo apt-get install etcd-server` (Debian/Ubuntu), or put an etcd 3.4+ binary on PATH';

let etcdPath: Promise<string> | undefined;

/**
 * The path of an etcd 3.4+ binary: the one on PATH, else (as root) Debian's etcd-server installed
 * with apt-get. Memoised per process; a failure is not, so a later call can try again.
 */
export async function ensureEtcd(): Promise<string> {
  etcdPath ??= findOrInstallEtcd().catch((err: unknown) => {
    etcdPath = undefined;
    throw err;
  });
  return etcdPath;
}

async function findOrInstallEtcd(): Promise<string> {
  const found = onPath('etcd') ?? (await installEtcd());
  await checkVersion(found);
  return found;
}

function onPath(binary: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, binary);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

async function installEtcd(): Promise<string> {
  if (process.getuid?.() !== 0) throw new Error(`etcd is not on PATH: ${INSTALL_HINT}`);
  process.stderr.write('[etcd] etcd not on PATH: running apt-get install -y etcd-server\n');
  const apt = (args: string[]) =>
    execFileAsync('apt-get', args, { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: APT_TIMEOUT_MS, maxBuffer: 16 << 20 });
  try {
    await apt(['install', '-y', 'etcd-server']);
  } catch (err) {
    // A machine whose package lists were never fetched knows no etcd-server: fetch them once.
    if (!/Unable to locate package|no installation candidate/.test(String((err as { stderr?: string }).stderr))) throw aptError(err);
    await apt(['update']).catch((e: unknown) => Promise.reject(aptError(e)));
    await apt(['install', '-y', 'etcd-server']).catch((e: unknown) => Promise.reject(aptError(e)));
  }
  const installed = onPath('etcd') ?? (existsSync('/usr/bin/etcd') ? '/usr/bin/etcd' : undefined);
  if (installed === undefined) throw new Error(`apt-get installed etcd-server but no etcd binary is on PATH: ${INSTALL_HINT}`);
  return installed;
}

function aptError(err: unknown): Error {
  const e = err as { stderr?: string; message?: string };
  const last = (e.stderr || e.message || String(err)).trim().split('\n').pop();
  return new Error(`could not install etcd-server (apt-get: ${last}); ${INSTALL_HINT}`);
}

async function checkVersion(binary: string): Promise<void> {
  const { stdout } = await execFileAsync(binary, ['--version'], { timeout: 10_000 });
  const m = /etcd Version: (\d+)\.(\d+)/.exec(stdout);
  const [major, minor] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
  const [majorMin, minorMin] = ETCD_VERSION_MIN;
  if (major < majorMin || (major === majorMin && minor < minorMin)) {
    throw new Error(`${binary} is ${m ? `etcd ${major}.${minor}` : 'not a recognisable etcd'}, need 3.4+: ${INSTALL_HINT}`);
  }
}

export interface EtcdClusterOptions {
  /** 1 for a control plane without fault tolerance, 3 to survive one member's loss. */
  members: number;
  /** The address each member listens on and advertises (so not 0.0.0.0); default 127.0.0.1. */
  hosts?: string[];
  /**
   * More addresses each member also listens on, at the same client port: `aliases[k]` is one
   * address per member. The fault harness gives each router its own alias, so that iptables can
   * cut one router from etcd (the etcd client cannot choose its source address).
   */
  aliases?: string[][];
  /** Default: free ports from freePort(). */
  clientPorts?: number[];
  peerPorts?: number[];
  /** Kept by stop() when given (its layout is saved there and reused); default a temp dir stop() removes. */
  dataRoot?: string;
  sink?: LineSink;
  /** Members are named `${namePrefix}0`..; default 'etcd'. */
  namePrefix?: string;
  /** Fast failover for tests: etcd's defaults are 100 and 1000. */
  heartbeatIntervalMs?: number;
  electionTimeoutMs?: number;
  /** etcd refuses writes (NOSPACE alarm) beyond this; default 256 MiB, etcd's default is 2 GiB. */
  quotaBackendBytes?: number;
  /** Skips fsync: faster, but a machine crash can lose acknowledged writes. Default false. */
  unsafeNoFsync?: boolean;
  /** Default NO_RESTART: tests kill members on purpose and restart them explicitly. */
  restart?: RestartPolicy | typeof NO_RESTART;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

interface MemberLayout {
  name: string;
  host: string;
  clientPort: number;
  peerPort: number;
}

/** What a kept dataRoot remembers: its members' data only works with the peer URLs it was created with. */
interface ClusterLayout {
  token: string;
  members: MemberLayout[];
}

interface Member extends MemberLayout {
  proc: Supervised;
  tail: string[];
}

const LAYOUT_FILE = 'cluster.json';

/**
 * A real etcd cluster of local processes, for tests and `npm run start:ha`. Members are named
 * etcd0..N-1, each with its own data directory under dataRoot.
 */
export class EtcdCluster {
  private stopped: Promise<void> | undefined;

  private constructor(
    private readonly members: Member[],
    readonly dataRoot: string,
    private readonly ownsDataRoot: boolean,
    /** With a restart policy a member that is down now may be up in a moment: waits do not give up early. */
    private readonly restartsItself: boolean,
  ) {}

  static async create(opts: EtcdClusterOptions): Promise<EtcdCluster> {
    const binary = await ensureEtcd();
    const ownsDataRoot = opts.dataRoot === undefined;
    const dataRoot = opts.dataRoot ?? mkdtempSync(join(tmpdir(), 'shardkv-etcd-'));
    mkdirSync(dataRoot, { recursive: true });
    const layout = await layoutFor(opts, dataRoot).catch((err: unknown) => {
      if (ownsDataRoot) rmSync(dataRoot, { recursive: true, force: true }); // no cluster object will remove it
      throw err;
    });
    const sink = opts.sink ?? (() => undefined);
    const tails = new Map(layout.members.map((m) => [m.name, [] as string[]]));
    // Each member's last lines, and the supervisor's about it, go into the error a failed start throws.
    const record: LineSink = (name, line) => {
      sink(name, line);
      const tail = tails.get(name) ?? (name === 'supervisor' ? [...tails].find(([n]) => line.startsWith(n))?.[1] : undefined);
      tail?.push(line);
      if (tail !== undefined && tail.length > LOG_TAIL_LINES) tail.shift();
    };
    const initialCluster = layout.members.map((m) => `${m.name}=${peerUrl(m)}`).join(',');
    const policy = opts.restart ?? NO_RESTART;
    const members = layout.members.map((m, i): Member => {
      const args = memberArgs(m, i, join(dataRoot, m.name), initialCluster, layout.token, opts);
      return { ...m, tail: tails.get(m.name)!, proc: new Supervised({ name: m.name, command: binary, args, env: {} }, record, policy) };
    });
    const cluster = new EtcdCluster(members, dataRoot, ownsDataRoot, policy !== NO_RESTART);
    cluster.aliasEndpoints = (opts.aliases ?? []).map((hosts) => members.map((m, i) => `http://${hosts[i]}:${m.clientPort}`));
    return cluster;
  }

  /** Per alias (see EtcdClusterOptions.aliases): the client URLs through it, in member order. */
  aliasEndpoints: string[][] = [];

  /** Client URLs, `http://host:port`, in member order. */
  get endpoints(): string[] {
    return this.members.map(clientUrl);
  }

  get names(): string[] {
    return this.members.map((m) => m.name);
  }

  pid(i: number): number | undefined {
    return this.member(i).proc.pid;
  }

  /** Starts every member and waits until each answers GET /health with {"health":"true"}. */
  async start(timeoutMs = 20_000): Promise<void> {
    if (this.stopped) throw new Error('etcd cluster was stopped; create a new one');
    for (const m of this.members) m.proc.start();
    try {
      await this.waitHealthy(this.members, timeoutMs);
    } catch (err) {
      // Nobody may call stop() after a failed start (a throwing beforeAll): leave nothing running.
      await this.stopAll(STOP_GRACE_MS);
      throw err;
    }
  }

  /** SIGKILL: a crash. The member stays down (unless the restart policy says otherwise). */
  kill(i: number): void {
    this.member(i).proc.signal('SIGKILL');
  }

  /** SIGSTOP: the member holds its connections but answers nothing, like a hung machine. */
  pause(i: number): void {
    this.member(i).proc.signal('SIGSTOP');
  }

  resume(i: number): void {
    this.member(i).proc.signal('SIGCONT');
  }

  /**
   * Stops member i if it still runs, starts it again on the same data directory (etcd ignores the
   * --initial-cluster flags when its data directory holds a member) and waits until it is
   * healthy. Healthy needs a leader, so when quorum is lost restart the members together:
   * `await Promise.all([c.restart(0), c.restart(1)])`.
   */
  async restart(i: number, timeoutMs = 20_000): Promise<void> {
    if (this.stopped) throw new Error('etcd cluster was stopped; create a new one');
    const m = this.member(i);
    await m.proc.stop(STOP_GRACE_MS);
    m.proc.start();
    await this.waitHealthy([m], timeoutMs);
  }

  /** SIGTERM (SIGKILL after graceMs), waiting for the exit. */
  async stopMember(i: number, graceMs = STOP_GRACE_MS): Promise<void> {
    await this.member(i).proc.stop(graceMs);
  }

  /** Stops every member, waits for their exits and removes the temp dataRoot. Idempotent. */
  stop(graceMs = STOP_GRACE_MS): Promise<void> {
    this.stopped ??= (async () => {
      await this.stopAll(graceMs);
      if (this.ownsDataRoot) rmSync(this.dataRoot, { recursive: true, force: true });
    })();
    return this.stopped;
  }

  /**
   * Followers first, then the leader with SIGKILL. A 3.4 leader told to stop first hands its
   * leadership to the peer it has been connected to longest, and when that peer has just exited
   * (its loss not yet noticed, ~100 ms) or is exiting too, it waits out its request timeout (seen:
   * 5 s, then our SIGKILL). A follower stops in milliseconds, and a leader left without quorum can
   * commit nothing, so a graceful stop would finish nothing that etcd's crash recovery does not.
   */
  private async stopAll(graceMs: number): Promise<void> {
    const leader = this.members.length > 1 ? await this.leader() : undefined;
    await Promise.all(this.members.filter((m) => m !== leader).map((m) => m.proc.stop(graceMs)));
    if (leader !== undefined) await leader.proc.stop(0);
  }

  /** The member that says it leads, asked through POST /v3/maintenance/status; undefined if none answers. */
  private async leader(): Promise<Member | undefined> {
    const says = await Promise.all(
      this.members.map(async (m) => {
        if (m.proc.pid === undefined) return false;
        try {
          const res = await fetch(`${clientUrl(m)}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
          const status = (await res.json()) as { header?: { member_id?: string }; leader?: string };
          return status.leader !== undefined && status.header?.member_id === status.leader;
        } catch {
          return false; // paused, dead or not yet serving: not a leader we need to order around
        }
      }),
    );
    return this.members.find((_, i) => says[i]);
  }

  private member(i: number): Member {
    const m = this.members[i];
    if (m === undefined) throw new Error(`no etcd member ${i}: the cluster has ${this.members.length}`);
    return m;
  }

  private async waitHealthy(members: Member[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const failures = await Promise.all(members.map((m) => waitMemberHealthy(m, deadline, this.restartsItself)));
    const failed = members.flatMap((m, i) => (failures[i] === undefined ? [] : [`${m.name} (${clientUrl(m)}): ${failures[i]}\n  ${m.tail.join('\n  ') || '(no log lines)'}`]));
    if (failed.length > 0) throw new Error(`etcd not healthy after ${timeoutMs} ms:\n${failed.join('\n')}`);
  }
}

/** Undefined once the member is healthy, else the last answer or error before the deadline. */
async function waitMemberHealthy(m: Member, deadline: number, restartsItself: boolean): Promise<string | undefined> {
  let last = 'no answer yet';
  for (;;) {
    // A member that exited (a taken port, a bad data dir) stays down: say so now, not at the deadline.
    if (m.proc.pid === undefined && !restartsItself) return `exited (${last})`;
    try {
      const res = await fetch(`${clientUrl(m)}/health`, { signal: AbortSignal.timeout(HEALTH_REQUEST_TIMEOUT_MS) });
      const text = await res.text();
      if (res.ok && (JSON.parse(text) as { health?: string }).health === 'true') return undefined;
      last = `GET /health answered ${res.status} ${text.trim()}`;
    } catch (err) {
      last = `GET /health failed: ${(err as Error).message}`;
    }
    if (Date.now() + HEALTH_POLL_MS > deadline) return last;
    await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
  }
}

/** The members' names, hosts and ports: from the options, or as saved in a kept dataRoot. */
async function layoutFor(opts: EtcdClusterOptions, dataRoot: string): Promise<ClusterLayout> {
  const n = opts.members;
  if (!Number.isInteger(n) || n < 1 || n > ETCD_MEMBERS_MAX) throw new Error(`members must be 1..${ETCD_MEMBERS_MAX}, got ${n}`);
  for (const [key, list] of Object.entries({ hosts: opts.hosts, clientPorts: opts.clientPorts, peerPorts: opts.peerPorts })) {
    if (list !== undefined && list.length !== n) throw new Error(`${key} has ${list.length} entries for ${n} members`);
  }
  const file = join(dataRoot, LAYOUT_FILE);
  if (existsSync(file)) return savedLayout(opts, JSON.parse(readFileSync(file, 'utf8')) as ClusterLayout, file);
  const prefix = opts.namePrefix ?? 'etcd';
  const members: MemberLayout[] = [];
  for (let i = 0; i < n; i += 1) {
    const clientPort = opts.clientPorts?.[i] ?? (await freePort());
    const peerPort = opts.peerPorts?.[i] ?? (await freePort());
    members.push({ name: `${prefix}${i}`, host: opts.hosts?.[i] ?? '127.0.0.1', clientPort, peerPort });
  }
  // A token per cluster: two test clusters that somehow reach each other's ports refuse to merge.
  const layout = { token: `${prefix}-${randomUUID()}`, members };
  if (opts.dataRoot !== undefined) writeFileSync(file, `${JSON.stringify(layout, null, 2)}\n`);
  return layout;
}

/** A kept dataRoot's members only know their saved peer URLs: options that contradict them are refused. */
function savedLayout(opts: EtcdClusterOptions, saved: ClusterLayout, file: string): ClusterLayout {
  const wanted = (i: number, m: MemberLayout) => ({
    name: `${opts.namePrefix ?? 'etcd'}${i}`,
    host: opts.hosts?.[i] ?? '127.0.0.1',
    clientPort: opts.clientPorts?.[i] ?? m.clientPort,
    peerPort: opts.peerPorts?.[i] ?? m.peerPort,
  });
  const same = saved.members.length === opts.members && saved.members.every((m, i) => JSON.stringify(wanted(i, m)) === JSON.stringify(m));
  if (!same) throw new Error(`${file} describes another etcd cluster (${JSON.stringify(saved.members)}); remove the directory or pass matching options`);
  return saved;
}

function memberArgs(m: MemberLayout, index: number, dataDir: string, initialCluster: string, token: string, opts: EtcdClusterOptions): string[] {
  const args = [
    ['--name', m.name],
    ['--data-dir', dataDir],
    ['--listen-client-urls', [clientUrl(m), ...(opts.aliases ?? []).map((hosts) => `http://${hosts[index]}:${m.clientPort}`)].join(',')],
    ['--advertise-client-urls', clientUrl(m)],
    ['--listen-peer-urls', peerUrl(m)],
    ['--initial-advertise-peer-urls', peerUrl(m)],
    ['--initial-cluster', initialCluster],
    ['--initial-cluster-state', 'new'],
    ['--initial-cluster-token', token],
    ['--heartbeat-interval', String(opts.heartbeatIntervalMs ?? 50)],
    ['--election-timeout', String(opts.electionTimeoutMs ?? 500)],
    // zap at warn: structured lines, and only the ones worth reading (3.4's default is capnslog at info).
    ['--logger', 'zap'],
    ['--log-level', opts.logLevel ?? 'warn'],
    ['--snapshot-count', '10000'],
    ['--quota-backend-bytes', String(opts.quotaBackendBytes ?? 256 * 1024 * 1024)],
  ].flat();
  if (opts.unsafeNoFsync === true) args.push('--unsafe-no-fsync');
  return args;
}

function clientUrl(m: MemberLayout): string {
  return `http://${m.host}:${m.clientPort}`;
}

function peerUrl(m: MemberLayout): string {
  return `http://${m.host}:${m.peerPort}`;
}
