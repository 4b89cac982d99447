import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pidAlive } from '@shardkv/common';

/**
 * `data/cluster.json`: what a running `npm start` / `npm run start:ha` tells the shard commands,
 * beside `data/cluster.pid` (both are removed when it stops). It holds the admin token, so it is
 * readable by its owner only.
 */
export interface ClusterFile {
  version: 1;
  /** The supervisor: SIGUSR2 makes it re-read the topology file. */
  pid: number;
  mode: 'single' | 'ha';
  /** Where the nodes' data and the topology file live (`data`, or `data/ha`). */
  dataRoot: string;
  /** How the supervisor chose ports: a new shard's ports follow the same rule. */
  ports: 'default' | 'free';
  routers: string[];
  /** What the routers take as `Authorization: Bearer` on /admin/* (ADMIN_TOKEN, else the cluster token). */
  adminToken: string;
  shards: Array<{ id: string; inMap: boolean; leader: FileNode; follower: FileNode }>;
  /** Counts the topology reloads done; `error` is the last one's failure, null if it succeeded. */
  reload: { seq: number; error: string | null };
}

export interface FileNode {
  name: string;
  url: string;
  pid: number | null;
}

export const CLUSTER_FILE = 'cluster.json';

/** A failure a shard command reports as its one line and exit status 1. */
export class CommandError extends Error {}

export function clusterFilePath(root: string): string {
  return join(root, CLUSTER_FILE);
}

export function writeClusterFile(root: string, info: ClusterFile): void {
  const file = clusterFilePath(root);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

export function readClusterFile(root: string): ClusterFile | undefined {
  const file = clusterFilePath(root);
  if (!existsSync(file)) return undefined;
  const info = JSON.parse(readFileSync(file, 'utf8')) as ClusterFile;
  if (info.version !== 1 || !Number.isInteger(info.pid)) throw new CommandError(`${file}: not a cluster file this version writes`);
  return info;
}

/** The running cluster's file; a clear error when none runs (no file, or its supervisor is gone). */
export function runningCluster(root: string): ClusterFile {
  const info = readClusterFile(root);
  if (info === undefined) throw new CommandError(`no local cluster is running (${clusterFilePath(root)} does not exist): start one with \`npm start\` or \`npm run start:ha\``);
  if (!pidAlive(info.pid)) throw new CommandError(`the cluster in ${clusterFilePath(root)} is not running (supervisor pid ${info.pid} is gone): start it again with \`npm start\``);
  return info;
}
