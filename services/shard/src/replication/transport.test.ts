import { createServer, type Server } from 'node:http';
import { MemoryStore } from '../store';
import { installTransfer } from './transfer';
import { HttpPeer } from './transport';
import { PeerNotReadyError, replicateRequestSchema } from './messages';
import { encodeStored, valueOf } from '../stored';

/** The HTTP edge of replication, against a plain local server standing in for the peer. */
let server: Server;
let url: string;
let respond: (res: import('node:http').ServerResponse) => void;

beforeAll(async () => {
  server = createServer((_req, res) => respond(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const WINDOW = { entriesMax: 100, bytesMax: 1 << 20 };
const record = (seq: number, key: string, value: string) => {
  const entry = { seq, op: 'put' as const, key, value };
  return { entry, json: JSON.stringify(entry), bytes: 0 };
};

async function trailerFor(pairs: Array<[string, string]>): Promise<string> {
  const s = new MemoryStore(WINDOW);
  await s.apply(pairs.map(([k, v], i) => record(i + 1, k, v)));
  return JSON.stringify({ end: true, seq: pairs.length, digest: s.digest() });
}

test('a transfer whose stream goes on after the trailer does not crash the process', async () => {
  // The receiver stops at the trailer and destroys the body; undici then emits an abort error
  // that once went unhandled and killed the follower after every state transfer.
  const trailer = await trailerFor([['a', 'b']]);
  respond = (res) => {
    res.write(`{"shard":"s","kind":"full","seq":1,"keys":1}\n${JSON.stringify(['a', encodeStored('b', 1, undefined)])}\n${trailer}\n`);
    setTimeout(() => res.end(), 30);
  };
  const peer = new HttpPeer(url, undefined, 2000);
  for (let i = 0; i < 20; i += 1) {
    const store = new MemoryStore(WINDOW);
    await installTransfer(await peer.transfer(1, false), store, 's');
    expect(valueOf(store.get('a'))).toBe('b');
  }
  await peer.close();
});

test('a 503 from the peer is reported as PeerNotReadyError, other failures as plain errors', async () => {
  const peer = new HttpPeer(url, undefined, 2000);
  respond = (res) => res.writeHead(503).end('{"error":{"code":"not_ready"}}');
  await expect(peer.transfer(1, false)).rejects.toBeInstanceOf(PeerNotReadyError);
  respond = (res) => res.writeHead(401).end('{}');
  await expect(peer.transfer(1, false)).rejects.not.toBeInstanceOf(PeerNotReadyError);
  await peer.close();
});

test('a stream cut before its trailer is refused and leaves the store as it was', async () => {
  respond = (res) => res.end('{"shard":"s","kind":"full","seq":9,"keys":2}\n["a","b"]\n');
  const peer = new HttpPeer(url, undefined, 2000);
  const store = new MemoryStore(WINDOW);
  await store.apply([record(1, 'old', 'v')]);
  await expect(installTransfer(await peer.transfer(2, false), store, 's')).rejects.toThrow(/without a trailer/);
  expect(valueOf(store.get('old'))).toBe('v');
  expect(store.seq).toBe(1);
  await peer.close();
});

test('a peer whose digest has another form is named as another shardkv version, not taken for a diverged state', async () => {
  // A build before XXH3-128 sends 64-digit SHA-256 sums: comparing them would look like divergence forever.
  const oldDigest = 'ab'.repeat(32);
  const peer = new HttpPeer(url, undefined, 2000);
  respond = (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ seq: 0, catchingUp: false, gap: false, digest: oldDigest }));
  await expect(peer.replicate('{}')).rejects.toThrow(/another shardkv version/);
  // The follower's side: a message whose term starts at an old digest is refused (400) before anything is checked against it.
  const request = { shard: 's', epoch: 0, term: 't', termStartSeq: 0, termStartDigest: oldDigest, logStartSeq: 1, lastSeq: 0, entries: [] };
  expect(replicateRequestSchema.safeParse(request).error?.issues[0]?.message).toMatch(/another shardkv version/);
  expect(replicateRequestSchema.safeParse({ ...request, termStartDigest: new MemoryStore(WINDOW).digest() }).success).toBe(true);
  respond = (res) => res.end(`{"shard":"s","kind":"full","seq":1,"keys":1}\n["a","b"]\n{"end":true,"seq":1,"digest":"${oldDigest}"}\n`);
  const store = new MemoryStore(WINDOW);
  await store.apply([record(1, 'old', 'v')]);
  await expect(installTransfer(await peer.transfer(1, true), store, 's', { full: true })).rejects.toThrow(/another shardkv version/);
  expect({ seq: store.seq, old: valueOf(store.get('old')), a: valueOf(store.get('a')) }).toEqual({ seq: 1, old: 'v', a: undefined });
  await peer.close();
});
