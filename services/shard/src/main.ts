import { collectProcessMetrics, createLogger, listen, stopOnSignals, type Logger } from '@shardkv/common';
import { createShardApp } from './app';
import { loadConfig, type ShardConfig } from './config';
import { HttpCoordinator } from './coordinator-client';
import { LmdbStore, StorageConfigError } from './lmdb-store';
import { registry, watchNode } from './metrics';
import { ShardNode } from './node';
import { HttpPeer } from './replication/transport';
import { MemoryStore, type KvStore } from './store';

/** Exit status for a configuration the node cannot run with: supervisors do not restart it. */
const EXIT_CONFIG = 78;

/** Wiring only: config -> store -> node (role, coordinator) -> metrics -> HTTP server -> signals. */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.nodeName);
  const store = await openStore(config, log);
  const coordinator = config.coordinatorUrls.length === 0 ? undefined : new HttpCoordinator(config.coordinatorUrls, config.clusterToken, config.replicationTimeoutMs, config.sourceAddress);
  const transport = (url: string) => new HttpPeer(url, config.clusterToken, config.replicationTimeoutMs, config.sourceAddress, config.inFlightMessagesMax);
  const node = new ShardNode(store, { shardId: config.shardId, nodeName: config.nodeName, leader: config, follower: config, reportRetryMs: config.reportRetryMs, readLeaseMs: config.readLeaseMs }, transport, coordinator, log);

  collectProcessMetrics(registry);
  watchNode(node, store);
  const server = await listen(createShardApp({ config, store, node, log }), config.port, config.host);
  log.info({ host: config.host, port: config.port, role: config.role, peer: config.peerUrl, coordinators: config.coordinatorUrls, storage: config.storage, dataDir: config.storage === 'lmdb' ? config.dataDir : null, seq: store.seq, keys: store.size, epoch: store.epoch }, 'listening');
  await node.start({ role: config.role, peerUrl: config.peerUrl });

  stopOnSignals(server, log, async () => {
    await node.stop();
    await coordinator?.close();
    await store.close();
  });
}

function openStore(config: ShardConfig, log: Logger): Promise<KvStore> {
  if (config.storage === 'memory') return Promise.resolve(new MemoryStore(config.logWindow));
  return LmdbStore.open(config.dataDir, { cluster: config.clusterId, shard: config.shardId, node: config.nodeName }, config.logWindow, log);
}

main().catch((err) => {
  process.stderr.write(`shard: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof StorageConfigError ? EXIT_CONFIG : 1);
});
