// Preload (`node --require ./no-telemetry.cjs ...`) that keeps Artillery from phoning home.
//
// Artillery 2.0.21 (lib/telemetry.js) creates a `posthog-node` client and sends a "test run"
// event even when ARTILLERY_DISABLE_TELEMETRY is set (it only strips the properties), then
// awaits `client.shutdownAsync()` at exit, which on a machine without outside DNS hangs for
// ~12 s. Here `require('posthog-node')` is answered with a no-op client, so nothing is sent and
// nothing waits. Worker threads inherit the parent's execArgv, so the preload applies there too.
//
// Set NO_TELEMETRY_DEBUG=1 to print a line each time the stub is handed out or used.
'use strict';
const Module = require('node:module');

const debug = process.env.NO_TELEMETRY_DEBUG
  ? (msg) => process.stderr.write(`[no-telemetry] ${msg}\n`)
  : () => {};

const resolved = Promise.resolve();

// Every method artillery calls (capture, shutdownAsync) plus the rest of posthog-node's public
// client surface, so a future artillery patch release using another one still gets a no-op.
class NoopPostHog {
  constructor() {
    debug('PostHog client constructed (no-op)');
  }
  capture(event) {
    debug(`capture(${event && event.event ? JSON.stringify(event.event) : ''}) dropped`);
  }
  identify() {}
  alias() {}
  groupIdentify() {}
  enable() {}
  disable() {}
  debug() {}
  on() {
    return () => {};
  }
  register() {}
  unregister() {}
  reloadFeatureFlags() {
    return resolved;
  }
  getFeatureFlag() {
    return Promise.resolve(undefined);
  }
  getFeatureFlagPayload() {
    return Promise.resolve(undefined);
  }
  isFeatureEnabled() {
    return Promise.resolve(false);
  }
  getAllFlags() {
    return Promise.resolve({});
  }
  getAllFlagsAndPayloads() {
    return Promise.resolve({ featureFlags: {}, featureFlagPayloads: {} });
  }
  flush() {
    return resolved;
  }
  flushAsync() {
    return resolved;
  }
  shutdown() {
    debug('shutdown() (no-op)');
    return resolved;
  }
  shutdownAsync() {
    debug('shutdownAsync() (no-op)');
    return resolved;
  }
}

const stub = { PostHog: NoopPostHog, default: NoopPostHog, __esModule: true };

const originalLoad = Module._load;
Module._load = function loadWithoutPosthog(request, parent, isMain) {
  if (request === 'posthog-node' || request.startsWith('posthog-node/')) {
    debug(`require('${request}') stubbed`);
    return stub;
  }
  return originalLoad.apply(this, arguments);
};

// Belt and braces: artillery also checks this variable (it only anonymises the event, but it
// turns off the "telemetry is on" notice).
if (process.env.ARTILLERY_DISABLE_TELEMETRY === undefined) process.env.ARTILLERY_DISABLE_TELEMETRY = 'true';
