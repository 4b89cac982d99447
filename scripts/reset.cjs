#!/usr/bin/env node
// `npm run reset`: deletes every node's data (./data). Refuses while `npm start` is running,
// because LMDB files deleted under a live node would vanish at its next restart.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dataRoot = path.resolve(__dirname, '..', 'data');
const pidFile = path.join(dataRoot, 'cluster.pid');

function running(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

if (fs.existsSync(pidFile)) {
  const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  if (Number.isInteger(pid) && pid > 0 && running(pid)) {
    console.error(`reset: the cluster is running (npm start, pid ${pid}); stop it first (Ctrl-C).`);
    process.exit(1);
  }
}
if (!fs.existsSync(dataRoot)) {
  console.log(`reset: nothing to delete (${dataRoot} does not exist)`);
} else {
  fs.rmSync(dataRoot, { recursive: true, force: true });
  console.log(`reset: deleted ${dataRoot}; the next npm start begins with an empty store`);
}
