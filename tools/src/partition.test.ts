import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ensureIptables, loopbackAddress, Partitioner } from './partition';

// Real iptables rules need root (or CAP_NET_ADMIN): without them ensureIptables fails the suite
// with a message saying how to get them. Nothing is skipped.
const describeRoot = describe;
beforeAll(() => ensureIptables(), 120_000);

/** Long enough for any loopback connect or echo, short enough to keep the suite fast. */
const SILENCE_MS = 300;
const x = loopbackAddress(0);
const y = loopbackAddress(1);
const z = loopbackAddress(2);
const DIST = join(__dirname, '..', 'dist', 'partition.js');

const partitioners: Partitioner[] = [];
const servers: Server[] = [];
const sockets: (Socket | UdpSocket)[] = [];
const children: ChildProcess[] = [];
const strayChains: string[] = [];

function iptablesS(chain?: string): string {
  return execFileSync('iptables', ['-w', '-S', ...(chain === undefined ? [] : [chain])], { encoding: 'utf8' });
}

function dropChain(chain: string): void {
  for (const args of [['-D', 'OUTPUT', '-o', 'lo', '-j', chain], ['-F', chain], ['-X', chain]]) {
    try {
      execFileSync('iptables', ['-w', ...args], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
  }
}

async function partitioner(label: string): Promise<Partitioner> {
  const p = await Partitioner.create(label);
  partitioners.push(p);
  return p;
}

/** An echo server on host; also records the address each client connected from. */
async function echoServer(host: string): Promise<{ port: number; peers: string[] }> {
  const peers: string[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    peers.push(s.remoteAddress ?? '');
    s.pipe(s);
  });
  servers.push(server);
  server.listen(0, host);
  await once(server, 'listening');
  return { port: (server.address() as { port: number }).port, peers };
}

/** A connection from local to host:port, or undefined when it does not complete in time. */
function connectFrom(local: string, host: string, port: number): Promise<Socket | undefined> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, localAddress: local });
    sockets.push(s);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(undefined);
    }, SILENCE_MS);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** True when what is written comes back within SILENCE_MS. */
function echoes(s: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      s.off('data', onData);
      resolve(false);
    }, SILENCE_MS);
    const onData = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    s.once('data', onData);
    s.write('ping');
  });
}

async function udpSocket(host: string): Promise<UdpSocket> {
  const s = createSocket('udp4');
  sockets.push(s);
  s.bind(0, host);
  await once(s, 'listening');
  return s;
}

/** True when a datagram from one socket reaches the other within SILENCE_MS. */
function datagramArrives(from: UdpSocket, to: UdpSocket): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), SILENCE_MS);
    to.once('message', () => {
      clearTimeout(timer);
      resolve(true);
    });
    const { address, port } = to.address();
    // A drop in OUTPUT makes the sender's sendmsg fail with EPERM; silence is what we check.
    from.send('ping', port, address, () => undefined);
  });
}

/** A child process that creates a Partitioner with one cut, and has told us its chain name. */
async function childWithChain(afterCreate: string): Promise<{ child: ChildProcess; chain: string }> {
  const code = `require(${JSON.stringify(DIST)}).Partitioner.create('child').then(async (p) => {
    await p.cut('${x}', '${y}'); console.log(p.chain); ${afterCreate} });`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const [chain] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  return { child, chain };
}

describeRoot('Partitioner', () => {
  beforeAll(async () => {
    await ensureIptables();
  });

  // Each test's cuts end with it, so the next test starts from an open network.
  afterEach(async () => {
    for (const p of partitioners.splice(0)) await p.close();
  });

  afterAll(async () => {
    for (const p of partitioners) await p.close().catch(() => undefined);
    for (const s of sockets) 'destroy' in s ? s.destroy() : s.close();
    for (const server of servers) server.close();
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const chain of strayChains) dropChain(chain);
  });

  test('listening on and connecting from 127.0.0.x needs no `ip addr add`, and the server sees the client address', async () => {
    // This is the premise of every cut: a packet's source address names the sending process.
    const { port, peers } = await echoServer(x);
    const s = await connectFrom(y, x, port);
    expect(s).toBeDefined();
    expect(await echoes(s!)).toBe(true);
    expect(peers).toEqual([y]);
  });

  test('a cut stops new and established connections between two addresses, and only those', async () => {
    // A DROP in OUTPUT alone is enough on lo: INPUT is not hooked, yet nothing passes.
    const { port } = await echoServer(x);
    const established = await connectFrom(y, x, port);
    const p = await partitioner('cut');
    await p.cut(x, y);
    expect(await connectFrom(y, x, port)).toBeUndefined();
    expect(await connectFrom(z, x, port)).toBeDefined();
    expect(await echoes(established!)).toBe(false);
    expect(p.rules()).toHaveLength(2);
    expect(iptablesS('INPUT')).not.toMatch(/SKV-/);
  });

  test('healLink removes just its cut, heal removes all of them', async () => {
    // Cuts are independent: undoing one leaves the others in force.
    const { port } = await echoServer(x);
    const p = await partitioner('heal');
    const toY = await p.cut(x, y);
    await p.cut(x, z);
    await p.healLink(toY);
    expect(await connectFrom(y, x, port)).toBeDefined();
    expect(await connectFrom(z, x, port)).toBeUndefined();
    await p.heal();
    expect(p.rules()).toEqual([]);
    expect(await connectFrom(z, x, port)).toBeDefined();
  });

  test('a one-way cut drops a -> b only (UDP, as a TCP handshake fails whichever way is cut)', async () => {
    // TCP needs both directions for SYN / SYN-ACK, so one-way is only observable per datagram.
    const [onX, onY] = [await udpSocket(x), await udpSocket(y)];
    expect(await datagramArrives(onY, onX)).toBe(true);
    const p = await partitioner('oneway');
    await p.cut(y, x, { oneWay: true });
    expect(p.rules()).toHaveLength(1);
    expect(await datagramArrives(onY, onX)).toBe(false);
    expect(await datagramArrives(onX, onY)).toBe(true);
  });

  test('a cut with a port drops only connections to that port', async () => {
    // Four rules, TCP and UDP each way: to the port on b, and from that port back to a.
    const [cutServer, openServer] = [await echoServer(x), await echoServer(x)];
    const p = await partitioner('port');
    await p.cut(y, x, { port: cutServer.port });
    expect(p.rules()).toHaveLength(4);
    expect(await connectFrom(y, x, cutServer.port)).toBeUndefined();
    expect(await connectFrom(y, x, openServer.port)).toBeDefined();
  });

  test('isolate cuts one address from each of the others', async () => {
    // Two peers, two directions each: four rules, and neither peer gets through.
    const { port } = await echoServer(x);
    const p = await partitioner('isolate');
    expect(await p.isolate(x, [y, z])).toHaveLength(2);
    expect(p.rules()).toHaveLength(4);
    expect(await connectFrom(y, x, port)).toBeUndefined();
    expect(await connectFrom(z, x, port)).toBeUndefined();
  });

  test('close removes the chain and its OUTPUT hook, and may be called twice', async () => {
    // After close no trace is left in the filter table, and traffic flows again.
    const { port } = await echoServer(x);
    const p = await partitioner('close');
    await p.cut(x, y);
    await p.close();
    await p.close();
    expect(iptablesS()).not.toContain(p.chain);
    expect(p.rules()).toEqual([]);
    expect(await connectFrom(y, x, port)).toBeDefined();
    await expect(p.cut(x, y)).rejects.toThrow(/closed/);
  });

  test('a process that exits without close, or dies of SIGTERM, removes its chain', async () => {
    // The 'exit' and signal handlers clean up when the harness itself fails.
    const exiting = await childWithChain('process.exit(3);');
    const [exitCode] = (await once(exiting.child, 'exit')) as [number | null];
    expect(exitCode).toBe(3);
    const terminated = await childWithChain('setInterval(() => undefined, 1000);');
    terminated.child.kill('SIGTERM');
    const [, signal] = (await once(terminated.child, 'exit')) as [number | null, string | null];
    expect(signal).toBe('SIGTERM');
    expect(iptablesS()).not.toMatch(new RegExp(`${exiting.chain}\\b|${terminated.chain}\\b`));
  });

  test("create removes a dead process's leftover chain and hook, never a live process's", async () => {
    // SIGKILL runs no handler, so the chain stays until the next create() sees its pid is gone.
    const killed = await childWithChain('setInterval(() => undefined, 1000);');
    strayChains.push(killed.chain);
    killed.child.kill('SIGKILL');
    await once(killed.child, 'exit');
    const alive = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(alive);
    const aliveChain = `SKV-${alive.pid}-0`;
    strayChains.push(aliveChain);
    execFileSync('iptables', ['-w', '-N', aliveChain]);
    expect(iptablesS()).toContain(`-j ${killed.chain}`);
    await partitioner('leftover');
    const listing = iptablesS();
    expect(listing).not.toMatch(new RegExp(`${killed.chain}\\b`));
    expect(listing).toContain(`-N ${aliveChain}`);
  });
});
