import { failedEntry, KvError, LineScanner, type ChunkAnswer, type ChunkFailure } from '@shardkv/common';
import type { ShardNode } from './node';

/**
 * `POST /internal/load`: one chunk of a bulk load, `<key> <value>` lines for this shard (the
 * router has validated and split them; they are checked again here, with the same rules, so
 * nothing unchecked reaches the log). Every entry is written through `node.write`, all in one
 * synchronous loop, so the leader sequences the chunk in one event-loop turn: it travels to the
 * follower in as few replication batches as its limits allow and commits in as few transactions.
 * The answer comes once every entry has settled: loaded means durable on both nodes, exactly as
 * for /mput; failures come in runs of consecutive entries that failed alike.
 */
export function loadChunk(node: ShardNode, body: Buffer): Promise<ChunkAnswer> {
  const settled: Array<Promise<unknown>> = [];
  const failures = new Map<number, unknown>();
  let index = 0;
  const scanner = new LineScanner({
    entry(buf, start, keyEnd, valueEnd) {
      const i = index++;
      const op = { op: 'put' as const, key: buf.toString('utf8', start, keyEnd), value: buf.toString('utf8', keyEnd + 1, valueEnd) };
      try {
        settled.push(node.write(op).then(undefined, (err: unknown) => void failures.set(i, err)));
      } catch (err) {
        failures.set(i, err); // refused before it was sequenced (not the leader any more)
      }
    },
    // The router sends no line it would refuse; one refused here (a router of another build) is
    // still an entry of the chunk, so that the indexes of the answer match the router's.
    malformed(_lineNo, reason) {
      failures.set(index++, new KvError('invalid_line', reason));
    },
  });
  scanner.push(body);
  scanner.end();
  const entries = index;
  return Promise.all(settled).then(() => ({ entries, loaded: entries - failures.size, failed: runs(failures) }));
}

/** Failures by index, as runs of consecutive indexes with the same code (the message is the run's first: a timeout's names its seq). */
function runs(failures: Map<number, unknown>): ChunkFailure[] {
  const out: ChunkFailure[] = [];
  for (const i of [...failures.keys()].sort((a, b) => a - b)) {
    const f = failedEntry('', failures.get(i));
    const last = out[out.length - 1];
    if (last !== undefined && last.first + last.count === i && last.code === f.error.code) last.count += 1;
    else out.push({ first: i, count: 1, code: f.error.code, message: f.error.message, outcome: f.outcome });
  }
  return out;
}
