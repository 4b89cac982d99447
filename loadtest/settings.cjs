// Settings of the load tests, read from the environment. Shared by run.cjs (which fills in the
// defaults before starting artillery, so that `{{ $env.X }}` in the scenario YAML always has a
// value) and by the scenario processors (which run inside artillery's worker threads).
// Each scenario may change some defaults (SCENARIOS below); the environment still wins.
'use strict';

// name -> [default, description]. README.md documents the same list.
const DEFAULTS = {
  TARGET: ['http://127.0.0.1:5000', 'base URL of the shardkv router'],
  RATE: ['10', 'new virtual users per second (arrival rate)'],
  DURATION: ['60', 'seconds during which new virtual users arrive'],
  OPS: ['10', 'operations each virtual user performs before it leaves'],
  THINK: ['1-3', 'think time between two operations of a user, seconds: "N" fixed, "MIN-MAX" uniform random, 0 = none'],
  KEYS: ['1000', 'size of the key set: keys are KEY_PREFIX0 .. KEY_PREFIX<KEYS-1>'],
  KEY_PREFIX: ['key-', 'prefix of the key names'],
  VALUE_SIZE: ['32', 'length of the values written, characters'],
  GET_WEIGHT: ['2', 'relative weight of GET /get'],
  PUT_WEIGHT: ['1', 'relative weight of POST /put'],
  DELETE_WEIGHT: ['0', 'relative weight of DELETE /delete (0: not used, as in the Locust test)'],
  HOT_KEYS: ['0', 'number of hot keys: KEY_PREFIX0 .. KEY_PREFIX<HOT_KEYS-1> (0: every key equally likely)'],
  HOT_SHARE: ['90', 'percentage of the operations that go to the hot keys (when HOT_KEYS > 0)'],
  SEED: ['1', '1: write every key once before the test (not measured); 0: skip'],
  SEED_CONCURRENCY: ['16', 'parallel requests while seeding'],
  TIMEOUT: ['10', 'per-request timeout, seconds (a timeout counts as an error)'],
  P99_MS: ['500', 'ensure: p99 of all response times must be below this, ms'],
  MAX_ERROR_RATE: ['1', 'ensure: at most this percentage of operations may fail'],
};

// Scenarios (loadtest/<name>.yml) and the defaults each one changes. A scenario given as a path
// to another .yml gets the plain DEFAULTS. README.md documents the same table.
const READONLY = {
  // 1000 users arriving over 60 s (an arrivalCount phase of round(RATE x DURATION) users),
  // 3 GETs each, 0.1-1 s apart: ~50 req/s, like the published FastAPI run (~53 req/s)
  RATE: '16.67',
  DURATION: '60',
  OPS: '3',
  THINK: '0.1-1',
  GET_WEIGHT: '1',
  PUT_WEIGHT: '0',
  DELETE_WEIGHT: '0',
  P99_MS: '100',
  MAX_ERROR_RATE: '0.1',
};
const SCENARIOS = {
  mixed: { about: 'GET:PUT 2:1, think 1-3 s (the Locust port; the default scenario)', defaults: {} },
  'readonly-1000': {
    about: 'GETs only on seeded keys: 1000 users over 1 min, 3 GETs each, think 0.1-1 s (~50 req/s)',
    defaults: { ...READONLY },
  },
  'readonly-20x': {
    about: 'readonly-1000 at 20x the arrival rate: 20,000 users over 1 min (~1000 req/s)',
    defaults: { ...READONLY, RATE: '333.33', P99_MS: '500' },
  },
  'write-heavy': {
    about: 'GET:PUT:DELETE 2:5:3 (80% writes), think 0.5-1.5 s (~200 req/s)',
    defaults: {
      RATE: '20',
      THINK: '0.5-1.5',
      GET_WEIGHT: '2',
      PUT_WEIGHT: '5',
      DELETE_WEIGHT: '3',
      P99_MS: '500',
      MAX_ERROR_RATE: '0.5',
    },
  },
  'hot-key': {
    about: 'GET:PUT 1:1, 90% of the operations on 5 keys, think 0.5-1.5 s (~200 req/s)',
    defaults: {
      RATE: '20',
      THINK: '0.5-1.5',
      GET_WEIGHT: '1',
      PUT_WEIGHT: '1',
      DELETE_WEIGHT: '0',
      HOT_KEYS: '5',
      HOT_SHARE: '90',
      P99_MS: '500',
      MAX_ERROR_RATE: '0.5',
    },
  },
};

// The defaults of one scenario: DEFAULTS with the scenario's own values on top.
function defaultsFor(scenario) {
  const own = (SCENARIOS[scenario] && SCENARIOS[scenario].defaults) || {};
  const out = {};
  for (const [name, [def]] of Object.entries(DEFAULTS)) out[name] = own[name] !== undefined ? own[name] : def;
  return out;
}

// Fills every unset (or empty) setting with the scenario's default, in place.
function applyDefaults(env = process.env, scenario = 'mixed') {
  for (const [name, def] of Object.entries(defaultsFor(scenario))) {
    if (env[name] === undefined || env[name] === '') env[name] = def;
  }
  return env;
}

// "0" -> {0,0}; "1" -> {1,1}; "1-3" -> {1,3}; "0.5-1.5" -> {0.5,1.5}. Seconds.
function parseThink(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?)\s*)?$/.exec(String(text));
  if (!m) throw new Error(`THINK must be "N" or "MIN-MAX" in seconds, got ${JSON.stringify(text)}`);
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (max < min) throw new Error(`THINK: MAX must not be below MIN, got ${JSON.stringify(text)}`);
  return { min, max };
}

function num(env, name, { integer = false, min = 0 } = {}) {
  const raw = env[name] === undefined || env[name] === '' ? DEFAULTS[name][0] : env[name];
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
    throw new Error(`${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return v;
}

// Parsed and checked settings; throws with a readable message on a bad value.
function read(env = process.env) {
  const s = {
    target: env.TARGET || DEFAULTS.TARGET[0],
    rate: num(env, 'RATE'),
    duration: num(env, 'DURATION', { integer: true, min: 1 }),
    ops: num(env, 'OPS', { integer: true, min: 1 }),
    think: parseThink(env.THINK === undefined || env.THINK === '' ? DEFAULTS.THINK[0] : env.THINK),
    keys: num(env, 'KEYS', { integer: true, min: 1 }),
    keyPrefix: env.KEY_PREFIX === undefined ? DEFAULTS.KEY_PREFIX[0] : env.KEY_PREFIX,
    valueSize: num(env, 'VALUE_SIZE', { integer: true, min: 1 }),
    getWeight: num(env, 'GET_WEIGHT'),
    putWeight: num(env, 'PUT_WEIGHT'),
    deleteWeight: num(env, 'DELETE_WEIGHT'),
    hotKeys: num(env, 'HOT_KEYS', { integer: true }),
    hotShare: num(env, 'HOT_SHARE'),
    seed: (env.SEED === undefined || env.SEED === '' ? DEFAULTS.SEED[0] : env.SEED) !== '0',
    seedConcurrency: num(env, 'SEED_CONCURRENCY', { integer: true, min: 1 }),
    timeout: num(env, 'TIMEOUT', { min: 0.001 }),
    p99Ms: num(env, 'P99_MS', { min: 1 }),
    maxErrorRate: num(env, 'MAX_ERROR_RATE'),
  };
  if (s.getWeight + s.putWeight + s.deleteWeight <= 0) {
    throw new Error('GET_WEIGHT + PUT_WEIGHT + DELETE_WEIGHT must be > 0');
  }
  if (s.hotShare > 100) throw new Error(`HOT_SHARE is a percentage (0-100), got ${s.hotShare}`);
  if (s.hotKeys > s.keys) throw new Error(`HOT_KEYS (${s.hotKeys}) must not exceed KEYS (${s.keys})`);
  try {
    new URL(s.target);
  } catch {
    throw new Error(`TARGET must be a URL, got ${JSON.stringify(s.target)}`);
  }
  return s;
}

module.exports = { DEFAULTS, SCENARIOS, defaultsFor, applyDefaults, parseThink, read };
