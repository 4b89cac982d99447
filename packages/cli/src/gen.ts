import { once } from 'node:events';
import type { Writable } from 'node:stream';

/**
 * `kv gen`: a sample bulk-load file, `key:<n> <value>` per line, values of about `valueBytes`
 * with spaces in them (the loader must keep them). Deterministic, so runs are comparable.
 * Written with backpressure: memory stays flat for any number of keys.
 */
export async function generate(out: Writable, keys: number, valueBytes: number): Promise<void> {
  const filler = 'lorem ipsum dolor sit amet consectetur adipiscing elit '.repeat(Math.ceil(valueBytes / 50) + 1);
  let chunk = '';
  for (let i = 0; i < keys; i += 1) {
    const head = `v${i} `;
    chunk += `key:${String(i).padStart(10, '0')} ${head}${filler.slice(0, Math.max(0, valueBytes - head.length))}\n`;
    if (chunk.length >= 64 * 1024) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  if (chunk !== '' && !out.write(chunk)) await once(out, 'drain');
}
