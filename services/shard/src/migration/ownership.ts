import { KvError, ownersOf, SlotSet, slotOf, type SlotConfig } from '@shardkv/common';

export type Access = 'read' | 'write';

/**
 * Which keys this node's shard serves, as the coordinator last configured it (see DESIGN.md,
 * "Resharding"). The node is the final fence of placement, as it is of epochs: a request routed
 * by an older map than the node's (a router or smart client that has not seen a cutover) is
 * refused with `wrong_shard`, naming the owner; a key whose slot is frozen for its cutover gets
 * `migrating`. Both are definite: nothing was done, the caller re-reads the map and retries.
 *
 * Checked in the same synchronous run that sequences the write, so once a freeze is applied no
 * write to a frozen slot can be sequenced after it (see ShardNode.configure's frozenAtSeq).
 */
export class Ownership {
  readonly mapVersion: number;
  /** Slots this shard serves (frozen ones included). */
  readonly ownedCount: number;
  private readonly owners: string[];
  private readonly frozen: SlotSet;
  private readonly incoming: SlotSet;

  constructor(
    private readonly shardId: string,
    readonly config: SlotConfig,
  ) {
    this.mapVersion = config.mapVersion;
    this.owners = ownersOf(config.owners);
    this.ownedCount = this.owners.filter((o) => o === shardId).length;
    this.frozen = new SlotSet(config.frozen);
    this.incoming = new SlotSet(config.incoming);
  }

  /** The reason this shard may not serve `key` now, or undefined when it may. */
  refusal(key: string, access: Access): KvError | undefined {
    const slot = slotOf(key);
    const owner = this.owners[slot]!;
    if (owner !== this.shardId) return new KvError('wrong_shard', `key's slot ${slot} belongs to ${owner} (map version ${this.mapVersion}); re-read the map`, { slot, owner, mapVersion: this.mapVersion });
    if (this.frozen.has(slot)) return new KvError('migrating', `key's slot ${slot} is moving to another shard (${access}s pause for its cutover); retry shortly`, { slot, mapVersion: this.mapVersion });
    return undefined;
  }

  /** Whether the migration copy may write `key`: its slot is one this shard is importing. */
  importable(key: string): boolean {
    return this.incoming.has(slotOf(key));
  }

  /** Whether `slot` holds no data this shard serves: keys there are leftovers (moved away) or a partial import. */
  purgeable(slot: number): boolean {
    return this.owners[slot] !== this.shardId;
  }

  /** Slots of this shard frozen now. */
  get frozenCount(): number {
    return this.frozen.count;
  }
}
