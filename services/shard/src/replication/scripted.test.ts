import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runScript, type Command } from './datadriven';
import { decideReplicate, type FollowerFacts, type FollowerState } from './follower-core';
import { LeaderCore, type CommandResult, type CommitMode, type LeaderEffect, type LeaderEvent } from './leader-core';
import { storedOf } from '../stored';
import type { Command as Cmd } from './commands';
import type { Entry } from './log';
import type { ReplicateRequest } from './messages';

/**
 * The replication core driven by scripts (testdata/*.txt), one event per command, its effects as
 * golden output: no sockets, no store, no timers, no sleeps. Time moves only with `time`.
 *
 * Leader commands:
 *   start [epoch=1] [mode=sync] [seq=0] [digest=d0] [inflight=1] [batch=100] [queue=100] [timeout=1000] [heartbeat=100] [backoff=50] [lease=1000]
 *   time <ms>                         set the clock (monotonic)
 *   write id=N k=v k2=v2 -k3          puts (k=v) and deletes (-k), sequenced together; also
 *                                     incr:k=N (add N), k@V=v / -k@V (only at version V), new:k=v
 *                                     (only if absent), ttlT:k=v (expires T ms after now),
 *                                     ~k@V (the expiry sweep's delete of version V); idem=K gives
 *                                     every command of the write the Idempotency-Key K
 *   flush | tick | stop
 *   reply msg=N seq=S [digest=D] [gap] [catchingUp] [local=S:D]   the follower's answer to message N
 *   fail msg=N [stale] [err=text]     message N failed (stale: refused with stale_epoch)
 *   persisted [existed=0,1,...]       the pending store transaction committed
 *   persistFailed [err=text]
 *   configure mode=M epoch=E
 *   fence
 *   read                              may a read be served now?
 *   status
 * Follower command:
 *   follower state=S seq=N term=T digest=D  then  replicate term=T termStart=N termDigest=D logStart=N last=N [entries=a..b] [resync]
 */
const TESTDATA = join(__dirname, 'testdata');

class LeaderScript {
  private core: LeaderCore | undefined;
  private nowMs = 0;
  /** The pending persist effect's last seq and size, so `persisted` can answer it. */
  private persisting: { throughSeq: number; count: number } | undefined;
  private follower: FollowerFacts = { state: 'waiting', seq: 0, term: undefined, digest: () => 'd0' };
  /** The leader's store as the persist effects leave it: what the core decides on once the log is committed. */
  private readonly store = new Map<string, string>();

  run(cmd: Command): string {
    if (cmd.name === 'start') return this.start(cmd);
    if (cmd.name === 'time') {
      this.nowMs = Number(cmd.words[0]);
      return 'ok';
    }
    if (cmd.name === 'follower') return this.setFollower(cmd);
    if (cmd.name === 'replicate') return this.decide(cmd);
    const core = this.core;
    if (core === undefined) throw new Error(`line ${cmd.line}: start first`);
    if (cmd.name === 'read') return core.readRefusal(this.nowMs)?.message ?? 'ok';
    if (cmd.name === 'status') return JSON.stringify({ ...core.status, follower: core.follower });
    return this.format(core.step(this.event(cmd)));
  }

  private start(cmd: Command): string {
    const n = (k: string, d: number) => Number(cmd.args.get(k) ?? d);
    const seq = n('seq', 0);
    this.core = new LeaderCore(
      {
        shardId: 's',
        replicationTimeoutMs: n('timeout', 1000),
        heartbeatIntervalMs: n('heartbeat', 100),
        retryBackoffMs: n('backoff', 50),
        readLeaseMs: n('lease', 1000),
        inFlightMessagesMax: n('inflight', 1),
        limits: { queueEntriesMax: n('queue', 100), queueBytesMax: 1 << 20, batchEntriesMax: n('batch', 100), batchBytesMax: 1 << 20 },
      },
      { epoch: n('epoch', 1), mode: (cmd.args.get('mode') ?? 'sync') as CommitMode, term: { term: 't1', seq, digest: cmd.args.get('digest') ?? 'd0' } },
      (k) => this.store.get(k),
    );
    return 'ok';
  }

  private event(cmd: Command): LeaderEvent {
    const nowMs = this.nowMs;
    const a = cmd.args;
    switch (cmd.name) {
      case 'write': return { type: 'write', id: Number(a.get('id')), commands: commands(cmd), nowMs, wallMs: nowMs };
      case 'flush': return { type: 'flush', nowMs };
      case 'tick': return { type: 'tick', nowMs };
      case 'stop': return { type: 'stop', nowMs };
      case 'fence': return { type: 'fence', why: 'told so', nowMs };
      case 'configure': return { type: 'configure', mode: a.get('mode') as CommitMode, epoch: Number(a.get('epoch')), nowMs };
      case 'fail': return { type: 'sendFailed', msgId: Number(a.get('msg')), error: a.get('err') ?? 'ECONNREFUSED', staleEpoch: cmd.words.includes('stale'), nowMs };
      case 'persistFailed': return this.persistDone(), { type: 'persistFailed', error: a.get('err') ?? 'ENOSPC', nowMs };
      case 'persisted': return this.persisted(cmd);
      case 'reply': return this.reply(cmd);
      default: throw new Error(`line ${cmd.line}: unknown command ${cmd.name}`);
    }
  }

  private persistDone(): { throughSeq: number; count: number } {
    const p = this.persisting;
    if (p === undefined) throw new Error('no persist in progress');
    this.persisting = undefined;
    return p;
  }

  private persisted(cmd: Command): LeaderEvent {
    const p = this.persistDone();
    const given = cmd.args.get('existed')?.split(',').map((x) => x === '1');
    return { type: 'persisted', throughSeq: p.throughSeq, existed: given ?? Array<boolean>(p.count).fill(false), nowMs: this.nowMs };
  }

  private reply(cmd: Command): LeaderEvent {
    const a = cmd.args;
    const seq = Number(a.get('seq'));
    const [localSeq, localDigest] = (a.get('local') ?? `${seq}:d${seq}`).split(':');
    const reply = { seq, digest: a.get('digest') ?? `d${seq}`, gap: cmd.words.includes('gap'), catchingUp: cmd.words.includes('catchingUp') };
    return { type: 'replied', msgId: Number(a.get('msg')), reply, local: { seq: Number(localSeq), digest: localDigest! }, nowMs: this.nowMs };
  }

  private format(effects: LeaderEffect[]): string {
    const lines = effects.map((e) => this.line(e));
    return lines.length === 0 ? '(none)' : lines.join('\n');
  }

  private line(e: LeaderEffect): string {
    switch (e.type) {
      case 'send': return `send msg=${e.msgId} ${range(e.fromSeq, e.toSeq)}${sendFlags(e.body)}`;
      case 'persist': {
        const through = e.records[e.records.length - 1]!.entry.seq;
        this.persisting = { throughSeq: through, count: e.records.length };
        for (const { entry } of e.records) {
          if (entry.op === 'put') this.store.set(entry.key, storedOf(entry));
          else this.store.delete(entry.key);
        }
        return `persist ${range(e.records[0]!.entry.seq, through)}`;
      }
      case 'committed': return `committed ${range(e.records[0]!.entry.seq, e.records[e.records.length - 1]!.entry.seq)}`;
      case 'answer': return `answer id=${e.id} ${e.results.map(result).join(',')}`;
      case 'fail': return `fail id=${e.id} ${e.code}`;
      case 'report': return `report ${e.event} epoch=${e.epoch}`;
      case 'log': return `log ${e.level}: ${e.msg}`;
    }
  }

  private setFollower(cmd: Command): string {
    const a = cmd.args;
    const digest = a.get('digest') ?? 'd0';
    this.follower = { state: (a.get('state') ?? 'waiting') as FollowerState, seq: Number(a.get('seq') ?? 0), term: a.get('term'), digest: () => digest };
    return 'ok';
  }

  private decide(cmd: Command): string {
    const d = decideReplicate(this.follower, request(cmd));
    if (d.kind === 'busy') return 'busy: answer with our seq, apply nothing';
    if (d.kind === 'catchUp') return `catch up ${d.full ? 'full state' : 'log tail'} (${d.why})`;
    const applied = d.entries.length === 0 ? 'nothing' : range(d.entries[0]!.seq, d.entries[d.entries.length - 1]!.seq);
    return `apply ${applied}${d.gap ? ' gap' : ''}${d.adoptTerm ? ' adopt-term' : ''}`;
  }
}

function commands(cmd: Command): Cmd[] {
  const out: Cmd[] = [];
  for (const [name, value] of cmd.args) {
    if (name === 'id' || name === 'idem') continue;
    const [prefix, key] = name.includes(':') ? name.split(':') as [string, string] : ['', name];
    const [k, at] = key.split('@') as [string, string | undefined];
    if (prefix === 'incr') out.push({ op: 'incr', key: k, by: Number(value) });
    else if (prefix === 'new') out.push({ op: 'put', key: k, value, ifAbsent: true });
    else if (prefix.startsWith('ttl')) out.push({ op: 'put', key: k, value, ttlMs: Number(prefix.slice(3)) });
    else out.push(at === undefined ? { op: 'put', key: k, value } : { op: 'put', key: k, value, ifVersion: Number(at) });
  }
  for (const w of cmd.words) {
    if (w.startsWith('~')) {
      const [k, at] = w.slice(1).split('@') as [string, string];
      out.push({ op: 'del', key: k, expiredVersion: Number(at) });
      continue;
    }
    if (!w.startsWith('-')) continue;
    const [k, at] = w.slice(1).split('@') as [string, string | undefined];
    out.push(at === undefined ? { op: 'del', key: k } : { op: 'del', key: k, ifVersion: Number(at) });
  }
  const idem = cmd.args.get('idem');
  return idem === undefined ? out : out.map((c) => ({ ...c, idem }));
}

/** `seq`, `seq(existed)`, `seq=value` for an increment, or the refusal with the version it found. */
function result(r: CommandResult): string {
  if ('refused' in r) return `refused:${r.refused.code}${'version' in r.refused.details ? `(version=${String(r.refused.details['version'])})` : ''}`;
  return `${r.seq}${r.existed ? '(existed)' : ''}${r.value === undefined ? '' : `=${r.value}`}`;
}

function request(cmd: Command): ReplicateRequest {
  const a = cmd.args;
  const [from, to] = (a.get('entries') ?? '').split('..').map(Number);
  const entries: Entry[] = [];
  if (from !== undefined && to !== undefined && !Number.isNaN(from)) for (let s = from; s <= to; s += 1) entries.push({ seq: s, op: 'put', key: `k${s}`, value: 'v' });
  // Not parsed by the wire schema: digests here are labels (d0, other), not 32 hex digits.
  return {
    shard: 's', epoch: 1, term: a.get('term') ?? 't1', termStartSeq: Number(a.get('termStart') ?? 0), termStartDigest: a.get('termDigest') ?? 'd0',
    logStartSeq: Number(a.get('logStart') ?? 1), lastSeq: Number(a.get('last') ?? 0), entries, ...(cmd.words.includes('resync') ? { resync: true } : {}),
  };
}

const range = (from: number, to: number) => (to < from ? 'empty' : from === to ? `${from}` : `${from}..${to}`);

/** The parts of a message body a script cares about beyond its range. */
function sendFlags(body: string): string {
  const m = JSON.parse(body) as { epoch: number; logStartSeq: number; lastSeq: number; resync?: boolean };
  return ` epoch=${m.epoch} logStart=${m.logStartSeq} last=${m.lastSeq}${m.resync === true ? ' resync' : ''}`;
}

describe('replication core, scripted (testdata/*.txt)', () => {
  for (const file of readdirSync(TESTDATA).filter((f) => f.endsWith('.txt')).sort()) {
    test(file.replace(/\.txt$/, ''), () => {
      const script = new LeaderScript();
      runScript(join(TESTDATA, file), (cmd) => script.run(cmd));
    });
  }
});
