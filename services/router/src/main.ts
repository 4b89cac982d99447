import { collectProcessMetrics, createLogger, listen, stopOnSignals } from '@shardkv/common';
import { createRouterApp } from './app';
import { loadConfig, type RouterConfig } from './config';
import { EtcdMetaStore } from './control/etcd-store';
import { FileMetaStore, legacyRecords } from './control/file-store';
import type { MetaStore } from './control/meta-store';
import { MapMismatchError, ShardTable } from './control/shard-table';
import { Coordinator } from './coordinator';
import { startGrpcServer } from './grpc/server';
import { kvHandlers } from './grpc/service';
import { Leaders } from './leaders';
import { registry, watchRouter } from './metrics';
import { MigrationDriver } from './migration/driver';
import { KvOperations } from './operations';
import { nodeApi, Nodes } from './shards';

/** Exit status for a configuration the router cannot run with: supervisors do not restart it. */
const EXIT_CONFIG = 78;

/** Wiring only: config -> control plane -> shard table -> node clients + coordinator -> operations -> HTTP and gRPC servers -> signals. */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.nodeName);
  const store = openStore(config, log);
  const legacy = store.kind === 'embedded' ? legacyRecords(config.dataDir, config.shards) : [];
  const table = await ShardTable.load(store, config.shards, log.child({ component: 'control' }), legacy);
  const nodes = new Nodes({ connections: config.upstreamConnections, timeoutMs: config.upstreamTimeoutMs, token: config.clusterToken, localAddress: config.sourceAddress });
  nodes.sync(table.map);
  table.onMapChange((map) => nodes.sync(map));
  const coordinator = new Coordinator(table, store, nodeApi(nodes, config.configPushTimeoutMs), config.coordinator, config.self, log.child({ component: 'coordinator' }));
  const migrations = new MigrationDriver(table, store, nodes, coordinator, config.migration, log.child({ component: 'migration' }));
  collectProcessMetrics(registry);
  watchRouter(table, coordinator, migrations);
  const self = { ...config.self, controlPlane: store.kind };
  const leaders = new Leaders(table, nodes);
  const operations = new KvOperations({ nodes, table, leaders, cutoverWaitMs: config.cutoverWaitMs, batching: config.batching });
  const app = createRouterApp({ nodes, table, leaders, operations, coordinator, migrations, self, statusTimeoutMs: config.statusTimeoutMs, clusterToken: config.clusterToken, adminToken: config.adminToken, load: config.load, rateLimit: config.rateLimit, log });
  const server = await listen(app, config.port, config.host);
  const grpc = config.grpc === undefined ? undefined : await startGrpcServer(kvHandlers(operations), config.grpc, log.child({ component: 'grpc' }));
  log.info({ host: config.host, port: config.port, grpcPort: grpc?.port ?? null, router: config.self, controlPlane: store.kind, etcd: config.etcd?.endpoints ?? null, rateLimit: config.rateLimit ?? null, shards: config.shards, mapVersion: table.map.version }, 'listening');
  coordinator.start();
  migrations.start();

  stopOnSignals(server, log, async () => {
    // First, while the shards' clients are still open: gRPC calls in flight get their answers.
    await grpc?.stop();
    await migrations.stop();
    await coordinator.stop();
    table.close();
    await store.close();
    await nodes.close();
  });
}

function openStore(config: RouterConfig, log: ReturnType<typeof createLogger>): MetaStore {
  if (config.etcd === undefined) return FileMetaStore.open(config.dataDir);
  return new EtcdMetaStore(config.etcd, log.child({ component: 'etcd' }));
}

main().catch((err) => {
  process.stderr.write(`router: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof MapMismatchError ? EXIT_CONFIG : 1);
});
