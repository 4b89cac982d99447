import { KvError, type WriteOp } from '@shardkv/common';
import { decodeStored, liveValue, type StoredValue } from '../stored';
import type { Op } from './log';

/**
 * What a client asks of the leader, before it is sequenced: a write (conditional or not), a
 * delete, an increment. A resharding import also gives the expiry its value already had; the
 * expiry sweep deletes a key only if it still holds the expired version (`expiredVersion`).
 */
export type Command = WriteOp & { expiresAtMs?: number; expiredVersion?: number };

/** A command decided: the entry to sequence (and, for an increment, the new value), or why nothing is. */
export type Decision = { ok: true; op: Op; value?: string } | { ok: false; error: KvError };

/** A decimal integer as `/incr` keeps it: no sign but `-`, no leading zeros, no exponent. */
const INTEGER = /^-?(0|[1-9][0-9]*)$/;

/**
 * Decides one command against the key's latest sequenced state (`current`: its stored form, or
 * undefined if absent) at the leader's wall-clock time `nowMs`. Pure: the leader core calls it in
 * sequence order, so a condition or a sum never sees anything but the state just before its own
 * entry. An expired value counts as absent. Only the leader decides; the follower applies the put
 * or delete that comes out, so a failover keeps every decision.
 */
export function decide(cmd: Command, current: string | undefined, nowMs: number): Decision {
  const live = liveValue(current, nowMs);
  switch (cmd.op) {
    case 'put': {
      const mismatch = conditionFails(cmd, live);
      if (mismatch !== undefined) return { ok: false, error: mismatch };
      const exp = cmd.expiresAtMs ?? (cmd.ttlMs === undefined ? undefined : nowMs + cmd.ttlMs);
      return { ok: true, op: exp === undefined ? { op: 'put', key: cmd.key, value: cmd.value } : { op: 'put', key: cmd.key, value: cmd.value, exp } };
    }
    case 'del': {
      if (cmd.expiredVersion !== undefined) return expiry(cmd.key, cmd.expiredVersion, current, live);
      const mismatch = conditionFails(cmd, live);
      return mismatch === undefined ? { ok: true, op: { op: 'del', key: cmd.key } } : { ok: false, error: mismatch };
    }
    case 'incr':
      return increment(cmd.key, cmd.by, live);
  }
}

/** The sweep's delete: only of the version that expired, and only once it has (a write since is kept). */
function expiry(key: string, version: number, current: string | undefined, live: StoredValue | undefined): Decision {
  const held = current === undefined ? undefined : decodeStored(current).version;
  if (held !== version || live !== undefined) return { ok: false, error: new KvError('version_mismatch', `key no longer holds the expired version ${version}`, { version: held ?? null }) };
  return { ok: true, op: { op: 'del', key } };
}

function conditionFails(cmd: { ifVersion?: number; ifAbsent?: boolean }, live: StoredValue | undefined): KvError | undefined {
  const version = live?.version ?? null;
  if (cmd.ifAbsent === true && live !== undefined) return new KvError('version_mismatch', `the key exists (version ${version}); If-None-Match: * writes only an absent key`, { version });
  if (cmd.ifVersion !== undefined && version !== cmd.ifVersion) {
    const now = version === null ? 'the key is absent' : `its version is ${version}`;
    return new KvError('version_mismatch', `the write needs version ${cmd.ifVersion}, but ${now}`, { version });
  }
  return undefined;
}

/** Adds `by` to the decimal integer held (absent: 0); keeps the value's expiry, as Redis INCRBY does. */
function increment(key: string, by: number, live: StoredValue | undefined): Decision {
  if (live !== undefined && !INTEGER.test(live.value)) return { ok: false, error: new KvError('not_an_integer', `the value of the key is not a decimal integer (${JSON.stringify(live.value.slice(0, 40))})`) };
  const base = live === undefined ? 0 : Number(live.value);
  const sum = base + by;
  if (!Number.isSafeInteger(base) || !Number.isSafeInteger(sum)) return { ok: false, error: new KvError('out_of_range', `${live?.value ?? 0} + ${by} is beyond the safe integers (±${Number.MAX_SAFE_INTEGER})`) };
  const value = String(sum);
  const op: Op = live?.expiresAtMs === undefined ? { op: 'put', key, value } : { op: 'put', key, value, exp: live.expiresAtMs };
  return { ok: true, op, value };
}
