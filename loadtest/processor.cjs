// Artillery processor shared by every scenario of this folder (mixed.yml, readonly-*.yml,
// write-heavy.yml, hot-key.yml): picks each operation by the GET/PUT/DELETE weights and its key
// (uniform over the key set, or HOT_SHARE % of them on the HOT_KEYS first keys), applies the
// think time, classifies responses, and seeds the key set before the test.
//
// Custom metrics (in the console summary and the JSON report):
//   shardkv.ops                  operations attempted (requests sent; network errors included)
//   shardkv.ok                   operations answered as the API promises (see EXPECTED below)
//   shardkv.get.found / .not_found   GET answered 200 / 404 key_not_found (both fine)
//   shardkv.unexpected.<op>.<status> responses counted as errors, by operation and status
// The error rate checked by `ensure` is (shardkv.ops - shardkv.ok) / shardkv.ops: any 5xx, any
// unexpected status, a 404 that is not key_not_found, and any timeout or connection error.
'use strict';
const crypto = require('node:crypto');
const http = require('node:http');
const https = require('node:https');
const settings = require('./settings.cjs');

const S = settings.read();
const totalWeight = S.getWeight + S.putWeight + S.deleteWeight;
const thinkMs = { min: S.think.min * 1000, max: S.think.max * 1000 };

function keyName(i) {
  return `${S.keyPrefix}${i}`;
}

// Index of the key of one operation. Without hot keys: uniform over 0..KEYS-1. With HOT_KEYS = H:
// HOT_SHARE % of the operations go to 0..H-1 (uniformly), the others to H..KEYS-1.
function pickKeyIndex() {
  const hot = S.hotKeys;
  if (hot <= 0) return Math.floor(Math.random() * S.keys);
  if (hot >= S.keys || Math.random() * 100 < S.hotShare) return Math.floor(Math.random() * hot);
  return hot + Math.floor(Math.random() * (S.keys - hot));
}

function randomValue() {
  // base64url of random bytes, cut to VALUE_SIZE characters
  return crypto
    .randomBytes(Math.ceil((S.valueSize * 3) / 4) + 1)
    .toString('base64url')
    .slice(0, S.valueSize);
}

// ---- scenario steps ---------------------------------------------------------------------

function pickOp(context, events, done) {
  const r = Math.random() * totalWeight;
  const op = r < S.getWeight ? 'get' : r < S.getWeight + S.putWeight ? 'put' : 'delete';
  context.vars.op = op;
  context.vars.key = keyName(pickKeyIndex());
  if (op === 'put') context.vars.value = randomValue();
  context.vars.opsDone = (context.vars.opsDone || 0) + 1;
  return done();
}

const isGet = (vars) => vars.op === 'get';
const isPut = (vars) => vars.op === 'put';
const isDelete = (vars) => vars.op === 'delete';

// Loop condition: a virtual user performs OPS operations, then leaves.
function moreOps(context, next) {
  return next((context.vars.opsDone || 0) < S.ops);
}

// Think time between two operations of one user (none after its last one).
function think(context, events, done) {
  if (thinkMs.max <= 0 || (context.vars.opsDone || 0) >= S.ops) return setImmediate(done);
  const ms = thinkMs.min + Math.random() * (thinkMs.max - thinkMs.min);
  return setTimeout(done, ms);
}

// ---- request hooks ----------------------------------------------------------------------

function countOp(requestParams, context, events, next) {
  events.emit('counter', 'shardkv.ops', 1);
  events.emit('counter', 'shardkv.ok', 0); // so the metric exists even when nothing succeeds
  return next();
}

function errorCode(body) {
  try {
    const j = typeof body === 'string' ? JSON.parse(body) : body;
    return j && j.error && j.error.code;
  } catch {
    return undefined;
  }
}

function classify(op, response, events) {
  const status = response.statusCode;
  let ok = false;
  if (op === 'get') {
    if (status === 200) {
      ok = true;
      events.emit('counter', 'shardkv.get.found', 1);
    } else if (status === 404 && errorCode(response.body) === 'key_not_found') {
      // a key not written yet: expected, not an error
      ok = true;
      events.emit('counter', 'shardkv.get.not_found', 1);
    }
  } else if (op === 'put') {
    ok = status >= 200 && status < 300;
  } else if (op === 'delete') {
    ok = (status >= 200 && status < 300) || (status === 404 && errorCode(response.body) === 'key_not_found');
  }
  if (ok) events.emit('counter', 'shardkv.ok', 1);
  else events.emit('counter', `shardkv.unexpected.${op}.${status}`, 1);
}

function checkGet(requestParams, response, context, events, next) {
  // so that the metric exists (readonly-*.yml checks it is 0) even when every key was found
  events.emit('counter', 'shardkv.get.not_found', 0);
  classify('get', response, events);
  return next();
}
function checkPut(requestParams, response, context, events, next) {
  classify('put', response, events);
  return next();
}
function checkDelete(requestParams, response, context, events, next) {
  classify('delete', response, events);
  return next();
}

// ---- before hook: seeding ---------------------------------------------------------------

const seedAgents = {
  http: new http.Agent({ keepAlive: true, maxSockets: S.seedConcurrency }),
  https: new https.Agent({ keepAlive: true, maxSockets: S.seedConcurrency }),
};

function putOnce(base, key, value) {
  return new Promise((resolve, reject) => {
    const url = new URL('put', base.endsWith('/') ? base : `${base}/`);
    const body = JSON.stringify({ key, value });
    const isHttps = url.protocol === 'https:';
    const lib = isHttps ? https : http;
    const req = lib.request(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: S.timeout * 1000,
        agent: isHttps ? seedAgents.https : seedAgents.http,
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode >= 200 && res.statusCode < 300
            ? resolve()
            : reject(new Error(`PUT ${key} answered ${res.statusCode}`)),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`PUT ${key} timed out after ${S.timeout}s`)));
    req.on('error', reject);
    req.end(body);
  });
}

const SEED_ATTEMPTS = 3;

// Writes every key of the key set once, SEED_CONCURRENCY at a time, outside the measurements.
// A key is tried up to SEED_ATTEMPTS times; seeding stops at the first key that still fails, with
// a warning: the test then runs anyway and its error rate tells.
// (An async function: artillery then calls it as (context, events) and awaits it.)
async function seedKeys(context) {
  if (!S.seed) return;
  const base = context.vars.target;
  const started = Date.now();
  let next = 0;
  let written = 0;
  let failure = null;
  async function worker() {
    while (!failure && next < S.keys) {
      const i = next++;
      for (let attempt = 1; ; attempt++) {
        try {
          await putOnce(base, keyName(i), randomValue());
          written++;
          break;
        } catch (err) {
          if (attempt >= SEED_ATTEMPTS || failure) {
            failure = failure || err;
            break;
          }
          await new Promise((r) => setTimeout(r, 100 * attempt));
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(S.seedConcurrency, S.keys) }, worker));
  seedAgents.http.destroy();
  seedAgents.https.destroy();
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (failure) {
    console.log(`[seed] WARNING: stopped after ${written}/${S.keys} keys in ${secs}s: ${failure.message}`);
  } else {
    console.log(`[seed] wrote ${written} keys (${keyName(0)} .. ${keyName(S.keys - 1)}) in ${secs}s`);
  }
}

module.exports = {
  pickOp,
  isGet,
  isPut,
  isDelete,
  moreOps,
  think,
  countOp,
  checkGet,
  checkPut,
  checkDelete,
  seedKeys,
};
