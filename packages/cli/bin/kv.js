#!/usr/bin/env node
// The installed `kv` command. A committed file, so pnpm links it at install time, before the
// first build has written dist/ (it warned on every fresh install when the bin was dist/kv.js).
require("../dist/kv.js");
