import { createLogger, listen, stopOnSignals } from '@shardkv/common';
import { createRouterApp } from './app';
import { loadConfig } from './config';
import { ShardRing } from './ring';
import { Shards } from './shards';

/** Wiring only: config -> ring + shard clients -> HTTP server -> signals. */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.nodeName);
  const shards = new Shards(config.shards, config.upstreamConnections, config.upstreamTimeoutMs);
  const ring = new ShardRing(shards.ids);
  const server = await listen(createRouterApp({ ring, shards, statusTimeoutMs: config.statusTimeoutMs, log }), config.port, config.host);
  log.info({ host: config.host, port: config.port, shards: config.shards }, 'listening');

  stopOnSignals(server, log, () => shards.close());
}

main().catch((err) => {
  process.stderr.write(`router: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
