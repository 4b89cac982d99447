import { isUtf8 } from 'node:buffer';
import { KEY_BYTES_MAX, VALUE_BYTES_MAX } from './api';
import type { Outcome } from './errors';

/**
 * The bulk-load path: `POST /load` on a router takes a body of `<key> <value>` lines (the format
 * of `kv load` files), splits it by shard and sends each shard's lines to its leader in chunks
 * (`POST /internal/load`); each entry is acknowledged only once it is durable on both nodes, as
 * with /mput. The line format and its rules live here, once, for every hop that reads it: the CLI
 * (`--strict`), the router (which validates and splits without decoding a single string) and the
 * leader (which validates again before anything reaches its log).
 *
 * A line: the key has no whitespace; one space or tab ends it; the value is the rest of the line
 * and may contain spaces (or be empty: `key ` sets ""). Lines end with `\n`; one `\r` before it
 * is dropped (CRLF files). A line that is only whitespace is skipped; anything else that does not
 * fit, or breaks the /put rules (keys 1 to KEY_BYTES_MAX bytes, values up to VALUE_BYTES_MAX
 * bytes, both valid UTF-8), is malformed: reported with its line number and skipped.
 */

/** The longest line that can hold a valid entry: the longest key, the separator, the longest value, a CR. */
export const LOAD_LINE_BYTES_MAX = KEY_BYTES_MAX + 1 + VALUE_BYTES_MAX + 1;
/**
 * One /load request body. Memory does not depend on it (the router streams the body through
 * bounded chunks); it bounds how long one request runs and how large its answer can get, and it
 * must be declared up front (Content-Length), so an oversized body is refused before anything
 * is loaded. `kv load` sends files as a sequence of such requests.
 */
export const LOAD_BODY_BYTES_MAX = 64 * 1024 * 1024;
/** A chunk (router -> leader) closes at this many entries or bytes, whichever comes first. */
export const LOAD_CHUNK_ENTRIES_MAX = 2000;
export const LOAD_CHUNK_BYTES_MAX = 1024 * 1024;
/** A chunk body always fits: a full chunk plus the one line that overflowed it. */
export const LOAD_CHUNK_BODY_BYTES_MAX = LOAD_CHUNK_BYTES_MAX + LOAD_LINE_BYTES_MAX;
/** Malformed lines listed in one /load answer (all are counted); a file of garbage cannot make the answer huge. */
export const LOAD_MALFORMED_LISTED_MAX = 1000;
/** Content type of a /load body and of a chunk. */
export const LOAD_CONTENT_TYPE = 'text/plain';

export type ParsedLine = { kind: 'entry'; key: string; value: string } | { kind: 'blank' } | { kind: 'malformed'; reason: string };

/** One line as text: the reference form of the rules (the byte scanner below must agree with it). */
export function parseLine(line: string): ParsedLine {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (text.trim() === '') return { kind: 'blank' };
  const m = /^([^\s]+)[ \t]([^]*)$/.exec(text);
  if (m === null) return { kind: 'malformed', reason: /^\s/.test(text) ? 'starts with whitespace (no key)' : 'no value: expected "<key> <value>"' };
  const [, key, value] = m as unknown as [string, string, string];
  if (!key.isWellFormed() || !value.isWellFormed()) return { kind: 'malformed', reason: 'not valid UTF-8 text' };
  if (Buffer.byteLength(key) > KEY_BYTES_MAX) return { kind: 'malformed', reason: `key longer than ${KEY_BYTES_MAX} bytes` };
  if (key.startsWith('\u0000')) return { kind: 'malformed', reason: 'keys starting with U+0000 are reserved' };
  if (Buffer.byteLength(value) > VALUE_BYTES_MAX) return { kind: 'malformed', reason: `value longer than ${VALUE_BYTES_MAX} bytes` };
  return { kind: 'entry', key, value };
}

/**
 * What a LineScanner finds. Offsets are into `buf`, valid only during the call: the key is
 * `[start, keyEnd)`, the value `[keyEnd + 1, valueEnd)` (the byte at keyEnd is the separator).
 */
export interface LineVisitor {
  entry(buf: Buffer, start: number, keyEnd: number, valueEnd: number, lineNo: number): void;
  malformed(lineNo: number, reason: string): void;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Reads lines from bytes as they arrive (`push` any slicing of the input, then `end`), without
 * decoding them: the common line (an ASCII key, a valid UTF-8 value) is checked byte by byte, and
 * anything else goes through `parseLine`, so the two cannot disagree. UTF-8 validity is checked
 * once per pushed block (one native call), per line only in a block that fails it. A line longer
 * than LOAD_LINE_BYTES_MAX is malformed and skipped without being held in memory.
 */
export class LineScanner {
  /** The start of a line whose end has not arrived yet, in pieces (copied: the caller may reuse its buffers). */
  private carry: Buffer[] = [];
  private carryBytes = 0;
  /** Inside an over-long line: skip until its end. */
  private skipping = false;
  private lineNo: number;

  constructor(
    private readonly visitor: LineVisitor,
    firstLine = 1,
  ) {
    this.lineNo = firstLine;
  }

  /** The number the next line will have. */
  get nextLine(): number {
    return this.lineNo;
  }

  push(block: Buffer): void {
    let from = 0;
    if (this.skipping || this.carryBytes > 0) {
      const nl = block.indexOf(10);
      if (nl === -1) return this.keep(block, 0);
      if (this.skipping) this.skipping = false;
      else this.carried(Buffer.concat([...this.carry, block.subarray(0, nl)]));
      this.lineNo += 1;
      from = nl + 1;
    }
    const last = block.lastIndexOf(10);
    if (last >= from) {
      this.lines(block, from, last + 1);
      from = last + 1;
    }
    if (from < block.length) this.keep(block, from);
  }

  /** The input ended: a last line without a newline is still a line. */
  end(): void {
    if (this.skipping || this.carryBytes > 0) {
      if (!this.skipping) this.carried(Buffer.concat(this.carry));
      this.skipping = false;
      this.lineNo += 1;
    }
  }

  /** A line assembled from pieces of several blocks. */
  private carried(line: Buffer): void {
    this.carry = [];
    this.carryBytes = 0;
    if (line.length > LOAD_LINE_BYTES_MAX) this.visitor.malformed(this.lineNo, `line longer than ${LOAD_LINE_BYTES_MAX} bytes`);
    else this.line(line, 0, line.length, isUtf8(line));
  }

  /** Keeps the unfinished line's bytes `block[from..]`; past the longest valid line it is reported and skipped. */
  private keep(block: Buffer, from: number): void {
    if (this.skipping) return;
    const bytes = block.length - from;
    if (this.carryBytes + bytes > LOAD_LINE_BYTES_MAX) {
      this.visitor.malformed(this.lineNo, `line longer than ${LOAD_LINE_BYTES_MAX} bytes`);
      this.carry = [];
      this.carryBytes = 0;
      this.skipping = true;
      return;
    }
    this.carry.push(Buffer.from(block.subarray(from)));
    this.carryBytes += bytes;
  }

  /** Whole lines `[from, to)`, the last one ending in a newline. */
  private lines(buf: Buffer, from: number, to: number): void {
    const utf8Ok = isUtf8(buf.subarray(from, to));
    let start = from;
    while (start < to) {
      const nl = buf.indexOf(10, start);
      if (nl - start > LOAD_LINE_BYTES_MAX) this.visitor.malformed(this.lineNo, `line longer than ${LOAD_LINE_BYTES_MAX} bytes`);
      else this.line(buf, start, nl, utf8Ok);
      this.lineNo += 1;
      start = nl + 1;
    }
  }

  /** One line `[start, end)` without its newline. */
  private line(buf: Buffer, start: number, end: number, utf8Ok: boolean): void {
    const e = end > start && buf[end - 1] === 13 ? end - 1 : end;
    if (e === start) return; // blank
    const first = buf[start]!;
    if (first === 32 || first === 0 || (first >= 9 && first <= 13) || first >= 0x80) return this.slow(buf, start, end);
    let i = start + 1;
    for (; i < e; i += 1) {
      const c = buf[i]!;
      if (c === 32 || c === 9) break;
      if ((c >= 10 && c <= 13) || c >= 0x80) return this.slow(buf, start, end);
    }
    if (i === e || i - start > KEY_BYTES_MAX || e - i - 1 > VALUE_BYTES_MAX) return this.slow(buf, start, end);
    if (!utf8Ok && !isUtf8(buf.subarray(i + 1, e))) return this.slow(buf, start, end);
    this.visitor.entry(buf, start, i, e, this.lineNo);
  }

  /** Anything but the common line: decoded and judged by parseLine, the reference. */
  private slow(buf: Buffer, start: number, end: number): void {
    let text: string;
    try {
      text = utf8.decode(buf.subarray(start, end));
    } catch {
      return this.visitor.malformed(this.lineNo, 'not valid UTF-8 text');
    }
    const parsed = parseLine(text);
    if (parsed.kind === 'blank') return;
    if (parsed.kind === 'malformed') return this.visitor.malformed(this.lineNo, parsed.reason);
    const keyEnd = start + Buffer.byteLength(parsed.key);
    this.visitor.entry(buf, start, keyEnd, keyEnd + 1 + Buffer.byteLength(parsed.value), this.lineNo);
  }
}

/** A run of entries of one chunk that failed alike: indexes `first .. first + count - 1`. */
export interface ChunkFailure {
  first: number;
  count: number;
  code: string;
  message: string;
  outcome: Outcome;
}

/** A leader's answer to `POST /internal/load`: every entry is loaded (durable on both nodes) or in a failure run. */
export interface ChunkAnswer {
  entries: number;
  loaded: number;
  failed: ChunkFailure[];
}

/** Entries of one chunk that were not loaded, alike: their line numbers, the code from the error table, the outcome. */
export interface LoadFailure {
  code: string;
  message: string;
  outcome: Outcome;
  lines: number[];
}

/** One chunk as the router reports it: the shard, the lines it spanned, what was loaded, what was not. */
export interface LoadChunkReport {
  shard: string;
  firstLine: number;
  lastLine: number;
  entries: number;
  loaded: number;
  /** Requests it took: a definite failure (no replica, queue full) is sent again, within a bounded time. */
  attempts: number;
  failures: LoadFailure[];
}

/** The answer to `POST /load`. */
export interface LoadAnswer {
  /** Lines read, blank and malformed ones included; the next request's firstLine is firstLine + lines. */
  lines: number;
  entries: number;
  loaded: number;
  failed: number;
  /** Of the failed entries, those that may have been applied (a timeout, a lost connection). */
  indeterminate: number;
  malformed: number;
  /** The first LOAD_MALFORMED_LISTED_MAX malformed lines. */
  malformedLines: Array<{ line: number; code: 'invalid_line'; message: string }>;
  chunks: LoadChunkReport[];
}
