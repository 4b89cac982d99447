#!/usr/bin/env node
// Makes `npm start` and `npm test` work on a fresh machine that has only Node and npm:
// installs the pinned pnpm if it is missing, installs dependencies when the lockfile or a
// manifest changed since the last install, and builds every TypeScript project (incremental).
// Plain CommonJS with no dependencies, because it runs before anything is installed.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const PNPM_VERSION = require(path.join(root, 'package.json')).packageManager.split('@')[1];
const stampPath = path.join(root, 'node_modules', '.prepare-stamp');

function log(msg) {
  process.stderr.write(`[prepare] ${msg}\n`);
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (r.status !== 0) {
    log(`failed: ${cmd} ${args.join(' ')}`);
    process.exit(r.status ?? 1);
  }
}

// Use a pnpm on PATH only when it is exactly the pinned version; otherwise let npx fetch it
// from the npm registry (corepack is avoided: its signature check fails on some registries).
function pnpmCommand() {
  try {
    const v = execFileSync('pnpm', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (v === PNPM_VERSION) return ['pnpm', []];
  } catch {
    // not installed: fall through to npx
  }
  return ['npx', ['--yes', `pnpm@${PNPM_VERSION}`]];
}

function manifestHash() {
  const h = crypto.createHash('sha256');
  const files = ['pnpm-lock.yaml', 'pnpm-workspace.yaml', 'package.json'];
  for (const dir of ['packages', 'services']) {
    for (const name of fs.readdirSync(path.join(root, dir))) files.push(path.join(dir, name, 'package.json'));
  }
  files.push('tools/package.json', 'loadtest/package.json');
  for (const f of files) {
    const p = path.join(root, f);
    if (fs.existsSync(p)) h.update(f).update(fs.readFileSync(p));
  }
  return h.digest('hex');
}

function install() {
  const hash = manifestHash();
  if (fs.existsSync(stampPath) && fs.readFileSync(stampPath, 'utf8') === hash) return;
  log('installing dependencies (pnpm install --frozen-lockfile)');
  const [cmd, pre] = pnpmCommand();
  run(cmd, [...pre, 'install', '--frozen-lockfile', '--config.confirmModulesPurge=false']);
  fs.writeFileSync(stampPath, hash);
}

function build() {
  log('building (tsc -b)');
  run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-b']);
}

install();
build();
