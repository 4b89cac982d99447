import HashRing from 'hashring';

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
}
