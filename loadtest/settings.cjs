// Settings of the load tests, read from the environment. Shared by run.cjs (which fills in the
// defaults before starting artillery, so that `{{ $env.X }}` in the scenario YAML always has a
// value) and by the scenario processors (which run inside artillery's worker threads).
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
  SEED: ['1', '1: write every key once before the test (not measured); 0: skip'],
  SEED_CONCURRENCY: ['16', 'parallel requests while seeding'],
  TIMEOUT: ['10', 'per-request timeout, seconds (a timeout counts as an error)'],
  P99_MS: ['500', 'ensure: p99 of all response times must be below this, ms'],
  MAX_ERROR_RATE: ['1', 'ensure: at most this percentage of operations may fail'],
};

function applyDefaults(env = process.env) {
  for (const [name, [def]] of Object.entries(DEFAULTS)) {
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
    duration: num(env, 'DURATION', { min: 1 }),
    ops: num(env, 'OPS', { integer: true, min: 1 }),
    think: parseThink(env.THINK === undefined || env.THINK === '' ? DEFAULTS.THINK[0] : env.THINK),
    keys: num(env, 'KEYS', { integer: true, min: 1 }),
    keyPrefix: env.KEY_PREFIX === undefined ? DEFAULTS.KEY_PREFIX[0] : env.KEY_PREFIX,
    valueSize: num(env, 'VALUE_SIZE', { integer: true, min: 1 }),
    getWeight: num(env, 'GET_WEIGHT'),
    putWeight: num(env, 'PUT_WEIGHT'),
    deleteWeight: num(env, 'DELETE_WEIGHT'),
    seed: (env.SEED === undefined || env.SEED === '' ? DEFAULTS.SEED[0] : env.SEED) !== '0',
    seedConcurrency: num(env, 'SEED_CONCURRENCY', { integer: true, min: 1 }),
    timeout: num(env, 'TIMEOUT', { min: 0.001 }),
    p99Ms: num(env, 'P99_MS', { min: 1 }),
    maxErrorRate: num(env, 'MAX_ERROR_RATE'),
  };
  if (s.getWeight + s.putWeight + s.deleteWeight <= 0) {
    throw new Error('GET_WEIGHT + PUT_WEIGHT + DELETE_WEIGHT must be > 0');
  }
  try {
    new URL(s.target);
  } catch {
    throw new Error(`TARGET must be a URL, got ${JSON.stringify(s.target)}`);
  }
  return s;
}

module.exports = { DEFAULTS, applyDefaults, parseThink, read };
