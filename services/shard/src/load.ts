import { failedEntry, KvError, LineScanner, type ChunkAnswer, type ChunkFailure } from '@shardkv/common';
import type { ShardNode } from './node';

/**
 * `POST /internal/load`: one chunk of a bulk load, `<key> <value>` lines for this shard (the
 * router has validated and split them; they are checked again here, with the same rules, so
 * nothing unchecked reaches the log). The chunk's entries are written as one batch
 * (`node.writeBatch`): sequenced together in order (a later duplicate wins), sent to the follower
 * in as few replication messages as its limits allow, committed in as few transactions, one
 * waiter for all. So they succeed or fail together: definitely (nothing sequenced: not the leader,
 * no replica, queue full) or indeterminately (a timeout). Loaded means durable on both nodes,
 * exactly as for /mput.
 */
export async function loadChunk(node: ShardNode, body: Buffer): Promise<ChunkAnswer> {
  const ops: Array<{ op: 'put'; key: string; value: string }> = [];
  const indexes: number[] = [];
  const failures = new Map<number, unknown>();
  let index = 0;
  const scanner = new LineScanner({
    entry(buf, start, keyEnd, valueEnd) {
      const key = buf.toString('utf8', start, keyEnd);
      // A slot moved away or frozen for its cutover: this entry alone fails, definitely.
      const refusal = node.ownership?.refusal(key, 'write');
      if (refusal !== undefined) {
        failures.set(index++, refusal);
        return;
      }
      indexes.push(index++);
      ops.push({ op: 'put', key, value: buf.toString('utf8', keyEnd + 1, valueEnd) });
    },
    // The router sends no line it would refuse; one refused here (a router of another build) is
    // still an entry of the chunk, so that the indexes of the answer match the router's.
    malformed(_lineNo, reason) {
      failures.set(index++, new KvError('invalid_line', reason));
    },
  });
  scanner.push(body);
  scanner.end();
  if (ops.length > 0) {
    try {
      await node.writeBatch(ops);
    } catch (err) {
      for (const i of indexes) failures.set(i, err);
    }
  }
  return { entries: index, loaded: index - failures.size, failed: runs(failures) };
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
