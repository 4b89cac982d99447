import { z } from 'zod';
import { slotRangesSchema, slotRunsSchema } from './slots';

/**
 * The coordinator's messages to and from shard nodes (one router at a time is the coordinator).
 *
 * Every coordinator probe of a node's `/status` carries `x-shardkv-coordinator: <generation>`.
 *
 * `POST /internal/config` (coordinator -> node): the node's role in its shard as of `epoch`. A
 * node refuses a configuration older than the newest it has accepted (409 stale_epoch), so a
 * delayed push can never undo a later decision.
 */
export const nodeConfigSchema = z.object({
  shard: z.string(),
  epoch: z.number().int().positive(),
  role: z.enum(['leader', 'follower']),
  /** The other node of the shard: a leader's follower, a follower's leader. */
  peerUrl: z.string().url(),
  /** Whether the follower counts as in sync (a leader then commits only with its acknowledgement). */
  inSync: z.boolean(),
  /** 2: a leader without an in-sync follower refuses writes instead of committing alone. */
  minInsync: z.number().int().min(1).max(2),
  /**
   * The generation of the coordinator that sent it (0: the node's own start-up configuration).
   * A node refuses a configuration from an older coordinator than one it has obeyed.
   */
  coordinator: z.number().int().nonnegative(),
  /** Where that coordinator takes shard events (a node reports there first). */
  coordinatorUrl: z.string().url().optional(),
  /** Which hash slots the node's shard serves, as of a map version (absent: a map without slots; every key is served). */
  slots: z
    .object({
      mapVersion: z.number().int().positive(),
      /** The committed assignment of every slot: the node serves its shard's, and names the owner of the others. */
      owners: slotRunsSchema,
      /** Of its own slots, those frozen for their cutover to another shard: refused with 503 migrating. */
      frozen: slotRangesSchema,
      /** Slots this shard is importing (not served yet): only the migration's copy may write them. */
      incoming: slotRangesSchema,
    })
    .optional(),
});
export type SlotConfig = NonNullable<NodeConfig['slots']>;
export type NodeConfig = z.infer<typeof nodeConfigSchema>;

/**
 * `POST /internal/shard-event` (leader -> coordinator): what a leader asks for. The coordinator
 * acts only if `epoch` is the shard's current one, and answers with the leader's new configuration.
 */
export const shardEventSchema = z.object({
  shard: z.string(),
  epoch: z.number().int().nonnegative(),
  event: z.enum(['follower_lost', 'follower_caught_up', 'fenced']),
  /** The reporter's peer as configured: tells the coordinator which of the shard's two nodes is asking. */
  peer: z.string().optional(),
});
export type ShardEvent = z.infer<typeof shardEventSchema>;

/** The header that carries the coordinator's generation on its health probes. */
export const COORDINATOR_HEADER = 'x-shardkv-coordinator';

/** The header that carries the shard epoch a router routed a request by; a node at a newer epoch refuses it. */
export const EPOCH_HEADER = 'x-shardkv-epoch';
