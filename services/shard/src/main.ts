import { createLogger, listen, stopOnSignals } from '@shardkv/common';
import { createShardApp, type NodeRole } from './app';
import { loadConfig } from './config';
import { Follower } from './replication/follower';
import { Leader } from './replication/leader';
import { HttpPeer } from './replication/transport';
import { MemoryStore } from './store';

/** Wiring only: config -> store -> replication role -> HTTP server -> signals. */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.nodeName);
  const store = new MemoryStore();
  const peer = new HttpPeer(config.peerUrl, config.clusterToken, config.replicationTimeoutMs);
  const role: NodeRole =
    config.role === 'leader'
      ? { kind: 'leader', leader: new Leader(store, peer, config, log.child({ component: 'leader' })) }
      : { kind: 'follower', follower: new Follower(store, peer, config, log.child({ component: 'follower' })) };

  const server = await listen(createShardApp({ config, store, role, log }), config.port, config.host);
  log.info({ host: config.host, port: config.port, role: config.role, peer: config.peerUrl, storage: config.storage }, 'listening');
  if (role.kind === 'leader') {
    role.leader.start().catch((err) => {
      log.fatal({ err }, 'replication loop failed');
      process.exit(1);
    });
  }

  stopOnSignals(server, log, async () => {
    if (role.kind === 'leader') await role.leader.stop();
    else role.follower.stop();
    await peer.close();
  });
}

main().catch((err) => {
  process.stderr.write(`shard: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
