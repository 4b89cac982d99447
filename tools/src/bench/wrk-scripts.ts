import type { Api, BenchConfig, Op } from './config';

/**
 * The wrk Lua scripts, one per API and operation. Each thread builds every request it can send
 * once, in init() (key, body, base64 for etcd, the HTTP text itself), so that request() only picks
 * one at random and the generator's cost per request is the same whatever the system: Lua never
 * encodes on the hot path. MIX is GET, GET, PUT per thread. `done` prints one JSON line (so that
 * nothing depends on wrk's human-readable report), with wrk's own CPU time read from
 * /proc/self/stat once its threads have finished.
 */
export function wrkScript(api: Api, op: Op, cfg: BenchConfig): string {
  return `${COMMON}
local op = "${op}"
local key_count = ${cfg.keyCount}
local value = string.rep("v", ${cfg.valueBytes})
local gets, puts = {}, {}
function init(args)
  math.randomseed(os.time() * 1000 + tid)
  local headers = { ["Content-Type"] = "application/json" }
  for i = 0, key_count - 1 do
    local key = "bench-" .. i
${api === 'kv' ? KV_REQUESTS : ETCD_REQUESTS}
  end
end
function request()
  n = n + 1
  local i = math.random(key_count)
  if op == "GET" or (op == "MIX" and n % 3 ~= 0) then return gets[i] end
  return puts[i]
end
`;
}

/** Our router's API, also the skeletons': GET /get?key=, POST /put {"key","value"}. */
const KV_REQUESTS = `
    gets[i + 1] = wrk.format("GET", "/get?key=" .. key)
    puts[i + 1] = wrk.format("POST", "/put", headers, '{"key":"' .. key .. '","value":"' .. value .. '"}')`;

/**
 * etcd's JSON gateway: keys and values are base64 in the JSON. Ranges are linearizable (etcd's
 * default; "serializable" is not set), as our GETs are.
 */
const ETCD_REQUESTS = `
    local k64 = base64(key)
    gets[i + 1] = wrk.format("POST", "/v3/kv/range", headers, '{"key":"' .. k64 .. '"}')
    puts[i + 1] = wrk.format("POST", "/v3/kv/put", headers, '{"key":"' .. k64 .. '","value":"' .. base64(value) .. '"}')`;

const COMMON = `
local n = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function sextet(x) return alphabet:sub(x + 1, x + 1) end
-- RFC 4648 base64 with padding, in plain arithmetic (no bit library needed).
function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = sextet(math.floor(v / 262144) % 64) .. sextet(math.floor(v / 4096) % 64)
      .. (b and sextet(math.floor(v / 64) % 64) or "=") .. (c and sextet(v % 64) or "=")
  end
  return table.concat(out)
end

-- utime + stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat); -1 if unknown.
local function cpu_ticks()
  local f = io.open("/proc/self/stat", "r")
  if not f then return -1 end
  local s = f:read("*a")
  f:close()
  local fields = {}
  for x in (s:match(".*%) (.*)$") or ""):gmatch("%S+") do fields[#fields + 1] = x end
  if #fields < 13 then return -1 end
  return tonumber(fields[12]) + tonumber(fields[13])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%.0f,"durationUs":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50Us":%.0f,"p99Us":%.0f,"cpuTicks":%.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99), cpu_ticks()))
end
`;
