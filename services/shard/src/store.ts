import { createHash } from 'node:crypto';
import type { Entry } from './replication/log';

/**
 * The storage engine behind a node. A store holds the node's applied state and the sequence
 * number of the last entry it applied; `apply` is the only way state changes during normal
 * operation, so state and `seq` cannot disagree.
 */
export interface KvStore {
  /** Sequence number of the last applied entry (0 for an empty store). */
  readonly seq: number;
  readonly size: number;
  get(key: string): string | undefined;
  /** Applies the next entry; `entry.seq` must be `seq + 1`. Returns whether the key existed. */
  apply(entry: Entry): boolean;
  /** A hash of the whole key/value state: equal on two stores exactly when their states are equal. */
  digest(): string;
  /** Every key/value pair, for state transfer. */
  scan(): IterableIterator<[string, string]>;
  /** Starts replacing the whole state (state transfer); the old state serves until `commit`. */
  restore(): StoreRestore;
}

export interface StoreRestore {
  put(key: string, value: string): void;
  /** The digest of what has been put so far, to verify a transfer before it is committed. */
  digest(): string;
  /** Swaps the restored state in, as of `seq`. */
  commit(seq: number): void;
}

const DIGEST_MOD = 1n << 256n;

/**
 * The digest is a sum (mod 2^256) of SHA-256 over each (key, value) pair. A sum is independent of
 * insertion order and can be updated per write in O(1), so `/status` never rescans the store.
 * The key is length-prefixed so that ("ab","c") and ("a","bc") hash differently.
 */
export function pairHash(key: string, value: string): bigint {
  const h = createHash('sha256');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(Buffer.byteLength(key));
  h.update(len).update(key).update(value);
  return BigInt(`0x${h.digest('hex')}`);
}

class DigestSum {
  value = 0n;
  add(key: string, val: string): void {
    this.value = (this.value + pairHash(key, val)) % DIGEST_MOD;
  }
  remove(key: string, val: string): void {
    this.value = (this.value - pairHash(key, val) + DIGEST_MOD) % DIGEST_MOD;
  }
  hex(): string {
    return this.value.toString(16).padStart(64, '0');
  }
}

/** `STORAGE=memory`: a Map. Nothing survives a restart; a node recovers from its peer. */
export class MemoryStore implements KvStore {
  private map = new Map<string, string>();
  private sum = new DigestSum();
  private lastSeq = 0;

  get seq(): number {
    return this.lastSeq;
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string): string | undefined {
    return this.map.get(key);
  }

  apply(entry: Entry): boolean {
    if (entry.seq !== this.lastSeq + 1) {
      throw new Error(`store invariant: applying seq ${entry.seq} after ${this.lastSeq}`);
    }
    const old = this.map.get(entry.key);
    if (old !== undefined) this.sum.remove(entry.key, old);
    if (entry.op === 'put') {
      this.map.set(entry.key, entry.value);
      this.sum.add(entry.key, entry.value);
    } else {
      this.map.delete(entry.key);
    }
    this.lastSeq = entry.seq;
    return old !== undefined;
  }

  digest(): string {
    return this.sum.hex();
  }

  scan(): IterableIterator<[string, string]> {
    return this.map.entries();
  }

  restore(): StoreRestore {
    const map = new Map<string, string>();
    const sum = new DigestSum();
    return {
      put: (key, value) => {
        const old = map.get(key);
        if (old !== undefined) sum.remove(key, old);
        map.set(key, value);
        sum.add(key, value);
      },
      digest: () => sum.hex(),
      commit: (seq) => {
        this.map = map;
        this.sum = sum;
        this.lastSeq = seq;
      },
    };
  }
}
