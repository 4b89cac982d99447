import { KvError, LOAD_CHUNK_ENTRIES_MAX, type ChunkAnswer } from '@shardkv/common';
import { BulkLoad, ShardGates, type ChunkSend, type LoadLimits, type LoadPlacement } from './load';

const LIMITS: LoadLimits = { requestInFlightMax: 1, shardInFlightMax: 4, queuedMax: 1, retryWindowMs: 1000, retryBackoffMinMs: 1, retryBackoffMaxMs: 2 };

/** Keys starting with "a" live on shard-a, any other on shard-b: the point keeps the first letter in its lowest bit. */
function lettered(): LoadPlacement {
  const hash = (key: Uint8Array) => key.reduce((h, b) => (h * 31 + b) >>> 0, 7);
  return {
    pointOf: (key) => ((hash(key) << 1) | (key[0] === 0x61 ? 1 : 0)) >>> 0,
    shardAt: (point) => ((point & 1) === 1 ? 'shard-a' : 'shard-b'),
  };
}

interface Sent {
  shard: string;
  lines: string[];
  answer: (a?: Partial<ChunkAnswer>) => void;
  fail: (err: unknown) => void;
}

/** A send whose chunks are recorded and answered by hand (all loaded unless told otherwise). */
function manualSend() {
  const sent: Sent[] = [];
  const send: ChunkSend = (shard, chunk, entries) =>
    new Promise<ChunkAnswer>((resolve, reject) => {
      const lines = chunk.toString().split('\n').slice(0, -1);
      expect(lines).toHaveLength(entries);
      sent.push({ shard, lines, answer: (a = {}) => resolve({ entries, loaded: entries, failed: [], ...a }), fail: reject });
    });
  return { sent, send };
}

const turn = () => new Promise((r) => setImmediate(r));
const settle = async () => {
  for (let i = 0; i < 20; i += 1) await turn();
};

function run(text: string, send: ChunkSend, limits: LoadLimits = LIMITS, gates = new ShardGates(limits.shardInFlightMax), firstLine = 1) {
  const load = new BulkLoad(lettered(), send, gates, limits, firstLine);
  const pushed = load.push(Buffer.from(text));
  return { load, pushed, finished: load.finish() };
}

describe('BulkLoad', () => {
  test('splits lines by shard in file order, copies them as they were (no CR), and numbers every report by line', async () => {
    const { sent, send } = manualSend();
    const { finished } = run('a1 one\nb1 two words\r\n\nbroken\na2\tthree\n', send, LIMITS, undefined, 10);
    await settle();
    expect(sent.map((s) => [s.shard, s.lines])).toEqual([
      ['shard-a', ['a1 one', 'a2\tthree']],
      ['shard-b', ['b1 two words']],
    ]);
    sent.forEach((s) => s.answer());
    const answer = await finished;
    expect(answer).toMatchObject({ lines: 5, entries: 3, loaded: 3, failed: 0, malformed: 1, malformedLines: [{ line: 13, code: 'invalid_line' }] });
    expect(answer.chunks.map((c) => [c.shard, c.firstLine, c.lastLine, c.entries, c.loaded])).toEqual([
      ['shard-a', 10, 14, 2, 2],
      ['shard-b', 11, 11, 1, 1],
    ]);
  });

  test('a shard has one chunk in flight per request by default; the next leaves when it returns, the other shard is not held up', async () => {
    const { sent, send } = manualSend();
    const lines = Array.from({ length: LOAD_CHUNK_ENTRIES_MAX * 2 + 1 }, (_, i) => `a${i} v`).concat(['b0 v']);
    const { finished } = run(`${lines.join('\n')}\n`, send);
    await settle();
    expect(sent.map((s) => [s.shard, s.lines.length])).toEqual([
      ['shard-a', LOAD_CHUNK_ENTRIES_MAX],
      ['shard-b', 1],
    ]);
    sent[0]!.answer();
    await settle();
    expect(sent.map((s) => s.lines.length)).toEqual([LOAD_CHUNK_ENTRIES_MAX, 1, LOAD_CHUNK_ENTRIES_MAX]);
    sent[1]!.answer();
    sent[2]!.answer();
    await settle();
    sent[3]!.answer();
    expect((await finished).loaded).toBe(lines.length);
  });

  test('with two chunks allowed in flight, one that repeats a key still in flight waits for it (a later duplicate wins)', async () => {
    const { sent, send } = manualSend();
    const first = Array.from({ length: LOAD_CHUNK_ENTRIES_MAX }, (_, i) => `a${i} first`);
    const disjoint = Array.from({ length: LOAD_CHUNK_ENTRIES_MAX }, (_, i) => `a-other${i} second`);
    const repeats = ['a7 third'];
    const { finished } = run(`${[...first, ...disjoint, ...repeats].join('\n')}\n`, send, { ...LIMITS, requestInFlightMax: 2, queuedMax: 5 });
    await settle();
    // The first two share no key: both leave. The third repeats a7 of the first: it waits.
    expect(sent.map((s) => s.lines[0])).toEqual(['a0 first', 'a-other0 second']);
    sent[1]!.answer();
    await settle();
    expect(sent).toHaveLength(2);
    sent[0]!.answer();
    await settle();
    expect(sent[2]!.lines).toEqual(['a7 third']);
    sent[2]!.answer();
    expect((await finished).loaded).toBe(first.length + disjoint.length + 1);
  });

  test('the shard gate bounds chunks in flight across requests, first come first served', async () => {
    const { sent, send } = manualSend();
    const gates = new ShardGates(1);
    const one = run('a1 x\n', send, LIMITS, gates);
    const two = run('a2 y\n', send, LIMITS, gates);
    await settle();
    expect(sent.map((s) => s.lines)).toEqual([['a1 x']]);
    sent[0]!.answer();
    await settle();
    expect(sent.map((s) => s.lines)).toEqual([['a1 x'], ['a2 y']]);
    sent[1]!.answer();
    await expect(Promise.all([one.finished, two.finished])).resolves.toMatchObject([{ loaded: 1 }, { loaded: 1 }]);
  });

  test('past queuedMax waiting chunks, push asks the reader to wait until a chunk returns', async () => {
    const { sent, send } = manualSend();
    const load = new BulkLoad(lettered(), send, new ShardGates(4), { ...LIMITS, queuedMax: 0 }, 1);
    const chunkOfA = (tag: string) => Buffer.from(Array.from({ length: LOAD_CHUNK_ENTRIES_MAX }, (_, i) => `a${tag}${i} v\n`).join(''));
    expect(load.push(chunkOfA('x'))).toBeUndefined(); // leaves at once
    const wait = load.push(chunkOfA('y')); // queued behind it: too many waiting
    expect(wait).toBeInstanceOf(Promise);
    let resumed = false;
    void wait!.then(() => (resumed = true));
    await settle();
    expect(resumed).toBe(false);
    sent[0]!.answer();
    await settle();
    expect(resumed).toBe(true);
    const finished = load.finish();
    await settle();
    sent[1]!.answer();
    expect((await finished).loaded).toBe(2 * LOAD_CHUNK_ENTRIES_MAX);
  });

  test('definite transient failures of a chunk are sent again, only those entries; indeterminate ones are reported, never sent again', async () => {
    const { sent, send } = manualSend();
    const { finished } = run('a1 v1\na2 v2\na3 v3\na4 v4\n', send);
    await settle();
    // a2 timed out (may have been applied); a3 and a4 found the queue full (a tail, nothing applied).
    sent[0]!.answer({
      loaded: 1,
      failed: [
        { first: 1, count: 1, code: 'replication_timeout', message: 'timeout', outcome: 'indeterminate' },
        { first: 2, count: 2, code: 'replication_queue_full', message: 'full', outcome: 'definite' },
      ],
    });
    while (sent.length < 2) await new Promise((r) => setTimeout(r, 5)); // after the backoff
    expect(sent[1]!.lines).toEqual(['a3 v3', 'a4 v4']);
    sent[1]!.answer();
    const answer = await finished;
    expect(answer).toMatchObject({ entries: 4, loaded: 3, failed: 1, indeterminate: 1 });
    expect(answer.chunks[0]).toMatchObject({ attempts: 2, loaded: 3, failures: [{ code: 'replication_timeout', outcome: 'indeterminate', lines: [2] }] });
  });

  test('a retryable failure followed by a loaded entry is not sent again (it would overwrite the later write)', async () => {
    const { sent, send } = manualSend();
    const { finished } = run('a1 v1\na1 v2\n', send);
    await settle();
    sent[0]!.answer({ loaded: 1, failed: [{ first: 0, count: 1, code: 'replication_queue_full', message: 'full', outcome: 'definite' }] });
    const answer = await finished;
    expect(sent).toHaveLength(1);
    expect(answer.chunks[0]!.failures).toEqual([{ code: 'replication_queue_full', message: 'full', outcome: 'definite', lines: [1] }]);
  });

  test('a chunk refused whole is sent again until the retry window ends, then reported with every line; an indeterminate error is not sent again', async () => {
    const refused: string[] = [];
    const send: ChunkSend = async (shard) => {
      refused.push(shard);
      if (shard === 'shard-a') throw new KvError('shard_unavailable', 'no leader');
      throw new KvError('upstream_timeout', 'no answer');
    };
    const { finished } = run('a1 v\nb1 v\na2 v\n', send, { ...LIMITS, retryWindowMs: 30 });
    const answer = await finished;
    expect(refused.filter((s) => s === 'shard-a').length).toBeGreaterThan(2);
    expect(refused.filter((s) => s === 'shard-b')).toHaveLength(1);
    expect(answer).toMatchObject({ entries: 3, loaded: 0, failed: 3, indeterminate: 1 });
    expect(answer.chunks.map((c) => c.failures)).toEqual([
      [{ code: 'shard_unavailable', message: 'no leader', outcome: 'definite', lines: [1, 3] }],
      [{ code: 'upstream_timeout', message: 'no answer', outcome: 'indeterminate', lines: [2] }],
    ]);
  });

  test('an abandoned request drops the chunks not sent yet and waits for those in flight', async () => {
    const { sent, send } = manualSend();
    const load = new BulkLoad(lettered(), send, new ShardGates(4), LIMITS, 1);
    load.push(Buffer.from(Array.from({ length: LOAD_CHUNK_ENTRIES_MAX * 2 }, (_, i) => `a${i} v\n`).join('')));
    let done = false;
    const abandoned = load.abandon().then(() => (done = true));
    await settle();
    expect({ sent: sent.length, done }).toEqual({ sent: 1, done: false });
    sent[0]!.answer();
    await abandoned;
    expect(sent).toHaveLength(1);
  });
});
