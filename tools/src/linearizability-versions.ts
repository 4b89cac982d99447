import type { Anomaly, Operation } from './linearizability';
import { describeOp } from './linearizability-parts';

/**
 * The checks on versions that linearizability-rmw.ts makes outside its search: cheap, after the fact, per key.
 *
 * A version is the seq of the write that made the value: the shard's log position, unique and growing in the
 * order writes take effect (README, "Counters, versions, expiry, exactly-once"). So on one key:
 *  1. two acknowledged writes never report the same version (each is its own log entry);
 *  2. a version names one state: the writes' acknowledgements and the gets' answers that report a version
 *     all agree on the value at it (a delete's seq names "absent", so no get can report it);
 *  3. a value written once (a put's value no other put writes; a counter's value when the key only counts one
 *     way) has one version: every get of it reports the version its writer acknowledged;
 *  4. a 412 never reports the very version its condition asked for (or "absent" to an `ifAbsent`);
 *  5. versions follow real time: a write acknowledged after another completed has a higher version, and a get
 *     that found a value reports a version at least that of every write acknowledged before it began.
 * The search relies on 2 (a 412's reported version tells it the value then, see versionTies); if 2 fails for a
 * version, that version is not used and the anomaly says why. Each check reports at most one anomaly per key,
 * so a systematic fault does not flood the report.
 */

/** What one answer says was at a version: a value, or absent (a delete's seq). */
interface Claim {
  version: number;
  state: string | null;
  op: Operation;
}

const isWrite = (op: Operation) => op.kind !== 'get';

function claimsOf(sources: readonly Operation[]): Claim[] {
  const claims: Claim[] = [];
  for (const op of sources) {
    if (op.outcome !== 'ok' || op.version === undefined) continue;
    const state = op.kind === 'put' ? op.value! : op.kind === 'del' ? null : op.result!;
    if (op.kind !== 'get' || state !== null) claims.push({ version: op.version, state, op });
  }
  return claims;
}

function groupBy<T, K>(items: readonly T[], keyOf: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const group = groups.get(keyOf(item));
    if (group) group.push(item);
    else groups.set(keyOf(item), [item]);
  }
  return groups;
}

/** Each version some answer tied to exactly one state (check 2): the state the key had at that version. */
export function versionTies(sources: readonly Operation[]): Map<number, string | null> {
  const ties = new Map<number, string | null>();
  for (const [version, claims] of groupBy(claimsOf(sources), (c) => c.version)) {
    if (claims.every((c) => c.state === claims[0]!.state)) ties.set(version, claims[0]!.state);
  }
  return ties;
}

export function versionAnomalies(key: string, sources: readonly Operation[]): Anomaly[] {
  const claims = claimsOf(sources);
  const found = [sharedWriteVersion(claims), versionWithTwoStates(claims), valueWithTwoVersions(sources, claims), refusalOfItsOwnVersion(sources), versionGoingBack(claims)];
  return found.filter((f) => f !== undefined).map(({ message, ops }) => ({ key, message: `versions: ${message}`, operations: ops }));
}

interface Finding {
  message: string;
  ops: Operation[];
}

function sharedWriteVersion(claims: readonly Claim[]): Finding | undefined {
  for (const [version, same] of groupBy(claims.filter((c) => isWrite(c.op)), (c) => c.version)) {
    if (same.length > 1) return { message: `${same.length} acknowledged writes report version ${version}: ${same.map((c) => describeOp(c.op)).join('; ')}`, ops: same.map((c) => c.op) };
  }
  return undefined;
}

function versionWithTwoStates(claims: readonly Claim[]): Finding | undefined {
  for (const [version, same] of groupBy(claims, (c) => c.version)) {
    const other = same.find((c) => c.state !== same[0]!.state);
    if (other) return { message: `version ${version} is reported for two states: ${describeOp(same[0]!.op)}; ${describeOp(other.op)}`, ops: [same[0]!.op, other.op] };
  }
  return undefined;
}

function valueWithTwoVersions(sources: readonly Operation[], claims: readonly Claim[]): Finding | undefined {
  const writtenOnce = valuesWrittenOnce(sources);
  const byValue = groupBy(claims.filter((c) => c.state !== null && writtenOnce(c.state)), (c) => c.state);
  for (const [value, same] of byValue) {
    const other = same.find((c) => c.version !== same[0]!.version);
    if (other) return { message: `${JSON.stringify(value)}, written once, is reported at versions ${same[0]!.version} and ${other.version}: ${describeOp(same[0]!.op)}; ${describeOp(other.op)}`, ops: [same[0]!.op, other.op] };
  }
  return undefined;
}

/**
 * Which values at most one write can have made. A put's value that no other put writes. On a key only ever
 * incremented, by amounts of one sign, the counter moves one way, so it holds each value at most once.
 */
function valuesWrittenOnce(sources: readonly Operation[]): (value: string) => boolean {
  const incrs = sources.filter((op) => op.kind === 'incr');
  if (incrs.length > 0) {
    const oneWay = incrs.every((op) => op.by! > 0) || incrs.every((op) => op.by! < 0);
    const onlyCounted = oneWay && !sources.some((op) => op.kind === 'put' || op.kind === 'del');
    return () => onlyCounted;
  }
  const writers = groupBy(sources.filter((op) => op.kind === 'put'), (op) => op.value!);
  return (value) => writers.get(value)?.length === 1;
}

function refusalOfItsOwnVersion(sources: readonly Operation[]): Finding | undefined {
  const op = sources.find((o) => o.mismatchVersion !== undefined && (o.ifAbsent === true ? o.mismatchVersion === null : o.mismatchVersion === o.ifVersion));
  return op === undefined ? undefined : { message: `a write was refused although the version reported is the one it asked for: ${describeOp(op)}`, ops: [op] };
}

/** Check 5, in one sweep over the answers in invocation order, with the writes completed so far by completion. */
function versionGoingBack(claims: readonly Claim[]): Finding | undefined {
  const byInvoke = [...claims].sort((a, b) => a.op.invokeMs - b.op.invokeMs);
  const writesByCompletion = claims.filter((c) => isWrite(c.op)).sort((a, b) => a.op.completeMs - b.op.completeMs);
  let latest: Claim | undefined;
  let next = 0;
  for (const c of byInvoke) {
    // Strictly before: an answer at the same millisecond as an invocation may be either way round.
    for (; next < writesByCompletion.length && writesByCompletion[next]!.op.completeMs < c.op.invokeMs; next++) {
      if (latest === undefined || writesByCompletion[next]!.version > latest.version) latest = writesByCompletion[next];
    }
    if (latest === undefined) continue;
    const back = isWrite(c.op) ? c.version <= latest.version : c.version < latest.version;
    if (back) return { message: `version ${c.version} after version ${latest.version} was acknowledged: ${describeOp(latest.op)}, then ${describeOp(c.op)}`, ops: [latest.op, c.op] };
  }
  return undefined;
}
