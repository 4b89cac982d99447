import { formatLine } from '../format';

/** The preload's batches stay well under the API's 1000 entries and 2 MiB per body. */
export const PRELOAD_BATCH_ENTRIES = 500;
/** Node log lines a bench keeps, to print when it fails. */
export const NODE_LINES_KEPT_MAX = 50;

type Mput = (entries: Array<{ key: string; value: string }>) => Promise<{ failed: number; results: ReadonlyArray<{ ok: boolean }> }>;

/** Writes `count` keys `<prefix>-<i>` of `valueBytes` each through `mput` (HTTP or gRPC), in batches; returns the keys. */
export async function preloadKeys(mput: Mput, prefix: string, count: number, valueBytes: number): Promise<string[]> {
  const keys = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  const value = 'v'.repeat(valueBytes);
  for (let at = 0; at < keys.length; at += PRELOAD_BATCH_ENTRIES) {
    const r = await mput(keys.slice(at, at + PRELOAD_BATCH_ENTRIES).map((key) => ({ key, value })));
    if (r.failed > 0) throw new Error(`preload: ${r.failed} entries failed, e.g. ${JSON.stringify(r.results.find((x) => !x.ok))}`);
  }
  return keys;
}

/** The last NODE_LINES_KEPT_MAX node log lines, and the sink that keeps them. */
export function nodeLineTail(): { lines: string[]; sink: (name: string, line: string) => void } {
  const lines: string[] = [];
  return {
    lines,
    sink: (name, line) => {
      lines.push(formatLine(name, line));
      if (lines.length > NODE_LINES_KEPT_MAX) lines.shift();
    },
  };
}
