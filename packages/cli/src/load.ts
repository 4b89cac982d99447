import { KvClientError, type KvClient } from '@shardkv/client';
import { LineScanner, LOAD_BODY_BYTES_MAX, LOAD_LINE_BYTES_MAX, type LoadAnswer, type Outcome } from '@shardkv/common';
import { createReadStream, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

export interface LoadOptions {
  /** Bytes of the file per /load request (whole lines; at most LOAD_BODY_BYTES_MAX). */
  requestBytes: number;
  /** At most this many lines per request, if given. */
  batchLines?: number;
  /** /load requests in flight at once. */
  concurrency: number;
  /** Lines before this one are skipped (to resume a load that stopped). */
  fromLine?: number;
  /** A request fails if the router takes none of its body for this long. */
  idleTimeoutMs: number;
  /** Called as the file is sent and answered. */
  onProgress?: (p: LoadProgress) => void;
  /** Where malformed lines are reported. */
  onMalformed?: (lineNo: number, reason: string) => void;
}

export interface LoadProgress {
  /** Bytes the routers have taken (they read only as fast as they load). */
  bytesRead: number;
  bytesTotal: number;
  loaded: number;
  skipped: number;
  failed: number;
}

/** Entries not loaded, alike: the code from the error table, whether they may have been applied, their line numbers. */
export interface FailedLines {
  code: string;
  message: string;
  outcome: Outcome;
  lines: number[];
}

export interface LoadSummary extends LoadProgress {
  seconds: number;
  malformedLines: number;
  /** Malformed lines the router counted but did not list (past LOAD_MALFORMED_LISTED_MAX in one request). */
  malformedUnlisted: number;
  /** Of the failed entries, those whose outcome is unknown (a timeout, a lost connection). */
  indeterminate: number;
  failures: FailedLines[];
  /** Set when a request failed as a whole and the load stopped: the first line not known to be loaded or reported. */
  stoppedAt?: { line: number; why: string };
}

/** The default size of one request: large enough that its per-request cost vanishes, small enough to show progress. */
export const REQUEST_BYTES_DEFAULT = 8 * 1024 * 1024;

interface Segment {
  body: Buffer;
  firstLine: number;
  lines: number;
}

/**
 * Streams a `<key> <value>` file into the cluster through `POST /load`: the file is cut into
 * requests of whole lines (`requestBytes`), sent `concurrency` at a time; memory stays bounded by
 * that, whatever the file size. The router validates, splits by shard and reports every entry:
 * loaded (durable on both nodes of its shard), failed (line number, code, definite or
 * indeterminate) or malformed (line number, reason). A later duplicate of a key wins: within a
 * request the router keeps the order; across requests in flight, one that repeats a key of an
 * earlier one still in flight waits until that one is answered. A request that fails as a whole
 * (no router reachable, no answer) stops the load; the summary says from which line to resume.
 */
export async function loadFile(client: KvClient, file: string, opts: LoadOptions): Promise<LoadSummary> {
  const started = Date.now();
  const p: LoadSummary = { bytesRead: 0, bytesTotal: statSync(file).size, loaded: 0, skipped: 0, failed: 0, seconds: 0, malformedLines: 0, malformedUnlisted: 0, indeterminate: 0, failures: [] };
  const malformed = (lineNo: number, reason: string) => {
    p.malformedLines += 1;
    p.skipped += 1;
    opts.onMalformed?.(lineNo, reason);
  };
  const inFlight = new Set<Promise<void>>();
  const keysInFlight = new Map<string, number>();

  const send = async (seg: Segment) => {
    // Keys are only compared when requests overlap; one at a time keeps the file's order anyway.
    const keys = opts.concurrency > 1 ? keysOf(seg.body) : [];
    while (keys.some((k) => keysInFlight.has(k)) && inFlight.size > 0) await Promise.race(inFlight);
    while (inFlight.size >= opts.concurrency) await Promise.race(inFlight);
    if (p.stoppedAt !== undefined) return;
    for (const k of keys) keysInFlight.set(k, (keysInFlight.get(k) ?? 0) + 1);
    let taken = 0;
    const onSent = (bytes: number) => {
      p.bytesRead += bytes - taken;
      taken = bytes;
      opts.onProgress?.(p);
    };
    const task = client
      .load(seg.body, { firstLine: seg.firstLine, idleTimeoutMs: opts.idleTimeoutMs, onSent })
      .then(
        (answer) => record(p, answer, malformed),
        (err: unknown) => wholeRequestFailed(p, seg, err),
      )
      .finally(() => {
        for (const k of keys) {
          const n = keysInFlight.get(k)! - 1;
          if (n === 0) keysInFlight.delete(k);
          else keysInFlight.set(k, n);
        }
        onSent(seg.body.length);
        inFlight.delete(task);
      });
    inFlight.add(task);
  };

  const file_ = await open(file, 'r');
  try {
    const segments = new Segments(file_, Math.min(opts.requestBytes, LOAD_BODY_BYTES_MAX), opts.batchLines, malformed);
    for (let seg = await segments.next(); seg !== undefined && p.stoppedAt === undefined; seg = await segments.next()) {
      const part = from(seg, opts.fromLine ?? 1);
      if (part !== undefined) await send(part);
    }
    await Promise.all(inFlight);
  } finally {
    await file_.close();
  }
  p.seconds = (Date.now() - started) / 1000;
  return p;
}

function record(s: LoadSummary, a: LoadAnswer, malformed: (lineNo: number, reason: string) => void): void {
  s.loaded += a.loaded;
  s.failed += a.failed;
  s.indeterminate += a.indeterminate;
  for (const m of a.malformedLines) malformed(m.line, m.message);
  const unlisted = a.malformed - a.malformedLines.length;
  if (unlisted > 0) {
    s.malformedLines += unlisted;
    s.malformedUnlisted += unlisted;
    s.skipped += unlisted;
  }
  for (const c of a.chunks) for (const f of c.failures) addFailed(s, f.code, f.message, f.outcome, f.lines);
}

function addFailed(s: LoadSummary, code: string, message: string, outcome: Outcome, lines: readonly number[]): void {
  let same = s.failures.find((f) => f.code === code && f.outcome === outcome);
  if (same === undefined) s.failures.push((same = { code, message, outcome, lines: [] }));
  for (const l of lines) same.lines.push(l);
}

/**
 * A request that got no answer, or was refused whole: none of its lines is known loaded (nor
 * known malformed), and the load stops there.
 */
function wholeRequestFailed(s: LoadSummary, seg: Segment, err: unknown): void {
  const e = err instanceof KvClientError ? err : new KvClientError(String(err), 0, 'error', 'indeterminate');
  addFailed(s, e.code, e.message, e.outcome, Array.from({ length: seg.lines }, (_, i) => seg.firstLine + i));
  s.failed += seg.lines;
  if (e.outcome === 'indeterminate') s.indeterminate += seg.lines;
  if (s.stoppedAt === undefined || seg.firstLine < s.stoppedAt.line) s.stoppedAt = { line: seg.firstLine, why: `${e.code}: ${e.message}` };
}

/** The part of a segment from line `fromLine` on (resuming a load), or nothing. */
function from(seg: Segment, fromLine: number): Segment | undefined {
  if (fromLine <= seg.firstLine) return seg;
  if (fromLine >= seg.firstLine + seg.lines) return undefined;
  let at = 0;
  for (let line = seg.firstLine; line < fromLine; line += 1) at = seg.body.indexOf(10, at) + 1;
  return { body: seg.body.subarray(at), firstLine: fromLine, lines: seg.lines - (fromLine - seg.firstLine) };
}

function countLines(body: Buffer): number {
  let n = 0;
  for (let at = body.indexOf(10); at !== -1; at = body.indexOf(10, at + 1)) n += 1;
  return body.length > 0 && body[body.length - 1] !== 10 ? n + 1 : n;
}

/**
 * Cuts the file into request bodies of whole lines, numbered. A line longer than a whole request
 * (far longer than any valid line) is reported here and skipped; every other rule is the router's.
 */
class Segments {
  private carry: Buffer = Buffer.alloc(0);
  private eof = false;
  private nextLine = 1;

  constructor(
    private readonly file: FileHandle,
    private readonly bytes: number,
    private readonly batchLines: number | undefined,
    private readonly onMalformed: (lineNo: number, reason: string) => void,
  ) {}

  async next(): Promise<Segment | undefined> {
    for (;;) {
      const buf = await this.fill();
      if (buf.length === 0) return undefined;
      const end = this.cut(buf);
      if (end === 0) {
        this.onMalformed(this.nextLine, `line longer than ${LOAD_LINE_BYTES_MAX} bytes`);
        this.nextLine += 1;
        await this.skipLine(buf);
        continue;
      }
      this.carry = Buffer.from(buf.subarray(end));
      const body = buf.subarray(0, end);
      const seg = { body, firstLine: this.nextLine, lines: countLines(body) };
      this.nextLine += seg.lines;
      return seg;
    }
  }

  /** The carried bytes and as much of the file as fits in one request. */
  private async fill(): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(this.bytes);
    let filled = this.carry.copy(buf, 0);
    while (!this.eof && filled < buf.length) {
      const { bytesRead } = await this.file.read(buf, filled, buf.length - filled, null);
      if (bytesRead === 0) this.eof = true;
      filled += bytesRead;
    }
    this.carry = Buffer.alloc(0);
    return buf.subarray(0, filled);
  }

  /** Where the body ends: after its last whole line (or its batchLines-th); at the end of the file, after everything. */
  private cut(buf: Buffer): number {
    const end = this.eof && buf.length < this.bytes ? buf.length : buf.lastIndexOf(10) + 1;
    if (this.batchLines === undefined) return end;
    let at = 0;
    for (let n = 0; n < this.batchLines; n += 1) {
      const nl = buf.indexOf(10, at);
      if (nl === -1 || nl + 1 > end) return end;
      at = nl + 1;
    }
    return at;
  }

  /** Drops the rest of an over-long line, however long. */
  private async skipLine(buf: Buffer): Promise<void> {
    for (let piece = buf; ; ) {
      const nl = piece.indexOf(10);
      if (nl !== -1) {
        this.carry = Buffer.from(piece.subarray(nl + 1));
        return;
      }
      if (this.eof) return;
      piece = await this.fill();
      if (piece.length === 0) return;
    }
  }
}

/** Each line's key bytes (up to its first space or tab) as a latin1 string: equal bytes, equal strings. */
function keysOf(body: Buffer): string[] {
  const keys: string[] = [];
  let start = 0;
  while (start < body.length) {
    let nl = body.indexOf(10, start);
    if (nl === -1) nl = body.length;
    let i = start;
    while (i < nl && body[i] !== 32 && body[i] !== 9) i += 1;
    if (i > start) keys.push(body.toString('latin1', start, i));
    start = nl + 1;
  }
  return keys;
}

/** `--strict`: one read of the whole file first, with the router's rules; a malformed line means nothing is loaded. */
export async function validateFile(file: string, onMalformed: (lineNo: number, reason: string) => void): Promise<number> {
  let bad = 0;
  const scanner = new LineScanner({
    entry() {},
    malformed(lineNo, reason) {
      bad += 1;
      onMalformed(lineNo, reason);
    },
  });
  for await (const block of createReadStream(file)) scanner.push(block as Buffer);
  scanner.end();
  return bad;
}
