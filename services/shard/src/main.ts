import { createLogger, listen, stopOnSignals } from '@shardkv/common';
import { createShardApp, type NodeRole } from './app';
import { loadConfig, type ShardConfig } from './config';
import { LmdbStore, StorageConfigError } from './lmdb-store';
import { Follower } from './replication/follower';
import { Leader } from './replication/leader';
import { HttpPeer } from './replication/transport';
import { MemoryStore, type KvStore } from './store';

/** Exit status for a configuration the node cannot run with: supervisors do not restart it. */
const EXIT_CONFIG = 78;

/** Wiring only: config -> store -> replication role -> HTTP server -> signals. */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.nodeName);
  const store = await openStore(config);
  const peer = new HttpPeer(config.peerUrl, config.clusterToken, config.replicationTimeoutMs);
  const role: NodeRole =
    config.role === 'leader'
      ? { kind: 'leader', leader: new Leader(store, peer, config, log.child({ component: 'leader' })) }
      : { kind: 'follower', follower: new Follower(store, peer, config, log.child({ component: 'follower' })) };

  const server = await listen(createShardApp({ config, store, role, log }), config.port, config.host);
  log.info({ host: config.host, port: config.port, role: config.role, peer: config.peerUrl, storage: config.storage, dataDir: config.storage === 'lmdb' ? config.dataDir : null, seq: store.seq, keys: store.size }, 'listening');
  if (role.kind === 'leader') {
    role.leader.start().catch((err) => {
      log.fatal({ err }, 'replication loop failed');
      process.exit(1);
    });
  }

  stopOnSignals(server, log, async () => {
    if (role.kind === 'leader') await role.leader.stop();
    else await role.follower.stop();
    await peer.close();
    await store.close();
  });
}

function openStore(config: ShardConfig): Promise<KvStore> {
  if (config.storage === 'memory') return Promise.resolve(new MemoryStore(config.logWindow));
  return LmdbStore.open(config.dataDir, { cluster: config.clusterId, shard: config.shardId, node: config.nodeName }, config.logWindow);
}

main().catch((err) => {
  process.stderr.write(`shard: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof StorageConfigError ? EXIT_CONFIG : 1);
});
