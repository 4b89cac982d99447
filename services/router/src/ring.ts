import { pointOf } from '@shardkv/common';
import HashRing from 'hashring';

/** What `hashring` keeps of its continuum (not in its typings): the sorted points and its lookup. */
interface Continuum {
  ring: Array<{ server: string }>;
  find(hashValue: number): number;
}

/**
 * Consistent hashing (ketama, via `hashring`) over shard *ids*, never addresses: moving a shard
 * to another host changes its URL but not its id, so no key moves. Adding a shard moves only
 * about 1/N of the keys, all of them to the new shard.
 */
export class ShardRing {
  private readonly ring: HashRing;

  constructor(readonly shardIds: readonly string[]) {
    if (shardIds.length === 0) throw new Error('ring needs at least one shard');
    if (new Set(shardIds).size !== shardIds.length) throw new Error('shard ids must be unique');
    this.ring = new HashRing([...shardIds], 'md5', { 'max cache size': 10_000 });
  }

  shardFor(key: string): string {
    return this.ring.get(key);
  }

  /**
   * The shard of a key given as its UTF-8 bytes, for bulk loads: the same point on the same
   * continuum as `shardFor` (hashring's md5 of the key, first 4 bytes little-endian), without
   * decoding the key and without hashring's LRU cache, which a load of distinct keys only churns.
   * The unit test holds the two equal.
   */
  shardForBytes(key: Uint8Array): string {
    return this.shardAt(pointOf(key));
  }

  /** The shard that owns a point of the continuum. */
  shardAt(point: number): string {
    const c = this.ring as unknown as Continuum;
    return c.ring[c.find(point)]!.server;
  }
}
