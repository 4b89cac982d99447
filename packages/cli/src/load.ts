import type { KvClient } from '@shardkv/client';
import { BATCH_ENTRIES_MAX, BODY_BYTES_MAX, type PutEntry } from '@shardkv/common';
import { createReadStream, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseLine } from './parse';

export interface LoadOptions {
  /** Entries per /mput request. */
  batchEntries: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Called as the file is read: bytes read so far, and the counts. */
  onProgress?: (p: LoadProgress) => void;
  /** Where malformed lines are reported. */
  onMalformed?: (lineNo: number, reason: string) => void;
}

export interface LoadProgress {
  bytesRead: number;
  bytesTotal: number;
  loaded: number;
  skipped: number;
  failed: number;
}

export interface LoadSummary extends LoadProgress {
  seconds: number;
  malformedLines: number;
  /** The first failures of entries the cluster refused, for the report. */
  failures: Array<{ key: string; code: string }>;
}

/** Keeps the batch well under the body limit whatever the value sizes. */
const BATCH_BYTES_MAX = BODY_BYTES_MAX / 2;

/**
 * Streams a `<key> <value>` file into the cluster with /mput, `concurrency` batches in flight:
 * memory stays bounded by concurrency × batch size, whatever the file size. A later duplicate of
 * a key wins: a batch that repeats a key still in flight waits until that write is acknowledged.
 */
export async function loadFile(client: KvClient, file: string, opts: LoadOptions): Promise<LoadSummary> {
  const started = Date.now();
  const p: LoadSummary = { bytesRead: 0, bytesTotal: statSync(file).size, loaded: 0, skipped: 0, failed: 0, seconds: 0, malformedLines: 0, failures: [] };
  const inFlight = new Set<Promise<void>>();
  const keysInFlight = new Map<string, number>();
  let batch: PutEntry[] = [];
  let batchBytes = 0;

  const send = async (entries: PutEntry[]) => {
    // Same key already on its way: let it land first, so the later value wins.
    while (entries.some((e) => keysInFlight.has(e.key)) && inFlight.size > 0) await Promise.race(inFlight);
    while (inFlight.size >= opts.concurrency) await Promise.race(inFlight);
    for (const e of entries) keysInFlight.set(e.key, (keysInFlight.get(e.key) ?? 0) + 1);
    const task = client
      .mput(entries)
      .then((r) => record(p, r.results), (err: unknown) => record(p, entries.map((e) => ({ key: e.key, ok: false as const, error: { code: errorCode(err), message: String(err) }, outcome: 'indeterminate' as const }))))
      .finally(() => {
        for (const e of entries) {
          const n = keysInFlight.get(e.key)! - 1;
          if (n === 0) keysInFlight.delete(e.key);
          else keysInFlight.set(e.key, n);
        }
        inFlight.delete(task);
        opts.onProgress?.(p);
      });
    inFlight.add(task);
  };

  const stream = createReadStream(file);
  stream.on('data', (chunk) => (p.bytesRead += chunk.length));
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of lines) {
    lineNo += 1;
    const parsed = parseLine(line);
    if (parsed.kind === 'blank') continue;
    if (parsed.kind === 'malformed') {
      p.malformedLines += 1;
      p.skipped += 1;
      opts.onMalformed?.(lineNo, parsed.reason);
      continue;
    }
    batch.push({ key: parsed.key, value: parsed.value });
    batchBytes += parsed.key.length + parsed.value.length + 32;
    if (batch.length >= Math.min(opts.batchEntries, BATCH_ENTRIES_MAX) || batchBytes >= BATCH_BYTES_MAX) {
      await send(batch);
      batch = [];
      batchBytes = 0;
    }
  }
  if (batch.length > 0) await send(batch);
  await Promise.all(inFlight);
  p.seconds = (Date.now() - started) / 1000;
  return p;
}

function record(p: LoadSummary, results: Array<{ key: string; ok: boolean; error?: { code: string } }>): void {
  for (const r of results) {
    if (r.ok) p.loaded += 1;
    else {
      p.failed += 1;
      if (p.failures.length < 10) p.failures.push({ key: r.key, code: r.error?.code ?? 'unknown' });
    }
  }
}

function errorCode(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : 'error';
}

/** `--strict`: one read of the whole file first; a malformed line means nothing is loaded. */
export async function validateFile(file: string, onMalformed: (lineNo: number, reason: string) => void): Promise<number> {
  let lineNo = 0;
  let bad = 0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    lineNo += 1;
    const parsed = parseLine(line);
    if (parsed.kind === 'malformed') {
      bad += 1;
      onMalformed(lineNo, parsed.reason);
    }
  }
  return bad;
}
