// Installs the system packages the integration tests need (etcd-server, iptables, chromium, prometheus) once, before
// any test runs, when they are missing and we run as root: an install can take longer than one
// test's set-up timeout on a fresh machine. Failures are not fatal here: each test that needs a
// package asks again (ensureEtcd / ensureIptables / ensureChromium / ensurePrometheus) and fails with a message saying how to get it.
'use strict';
module.exports = async function globalSetup() {
  for (const [name, fn] of [['etcd', 'ensureEtcd'], ['iptables', 'ensureIptables'], ['chromium', 'ensureChromium'], ['prometheus', 'ensurePrometheus']]) {
    try {
      await require('../tools/dist/index.js')[fn]();
    } catch (err) {
      process.stderr.write(`[global-setup] ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
};
