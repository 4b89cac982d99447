import { createLogger, listen, stopOnSignals } from '@shardkv/common';
import { createRouterApp } from './app';
import { loadConfig } from './config';
import { Coordinator } from './coordinator';
import { ShardRing } from './ring';
import { nodeApi, Nodes } from './shards';

/** Wiring only: config -> ring + node clients + coordinator -> HTTP server -> signals. */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.nodeName);
  const nodes = new Nodes(config.shards, config.upstreamConnections, config.upstreamTimeoutMs);
  const ring = new ShardRing(config.shards.map((s) => s.id));
  const coordinator = new Coordinator(config.shards, config.stateFile, nodeApi(nodes, config.clusterToken), config.coordinator, log.child({ component: 'coordinator' }));
  const app = createRouterApp({ ring, nodes, coordinator, statusTimeoutMs: config.statusTimeoutMs, clusterToken: config.clusterToken, adminToken: config.adminToken, batching: config.batching, log });
  const server = await listen(app, config.port, config.host);
  log.info({ host: config.host, port: config.port, shards: config.shards, state: config.stateFile }, 'listening');
  coordinator.start();

  stopOnSignals(server, log, async () => {
    coordinator.stop();
    await nodes.close();
  });
}

main().catch((err) => {
  process.stderr.write(`router: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
