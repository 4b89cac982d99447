import { KEY_BYTES_MAX, VALUE_BYTES_MAX } from '@shardkv/common';

/**
 * One line of a bulk-load file: `<key> <value>`, the format of simple read-only key-value
 * servers. The key has no whitespace; one space or tab ends it; the value is the rest of the line
 * and may contain spaces (it may also be empty: `key ` sets ""). A line that is only whitespace is
 * skipped; anything else that does not fit is malformed.
 */
export type ParsedLine = { kind: 'entry'; key: string; value: string } | { kind: 'blank' } | { kind: 'malformed'; reason: string };

export function parseLine(line: string): ParsedLine {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (text.trim() === '') return { kind: 'blank' };
  const m = /^([^\s]+)[ \t]([^]*)$/.exec(text);
  if (m === null) return { kind: 'malformed', reason: /^\s/.test(text) ? 'starts with whitespace (no key)' : 'no value: expected "<key> <value>"' };
  const [, key, value] = m as unknown as [string, string, string];
  if (!key.isWellFormed() || !value.isWellFormed()) return { kind: 'malformed', reason: 'not valid UTF-8 text' };
  if (Buffer.byteLength(key) > KEY_BYTES_MAX) return { kind: 'malformed', reason: `key longer than ${KEY_BYTES_MAX} bytes` };
  if (Buffer.byteLength(value) > VALUE_BYTES_MAX) return { kind: 'malformed', reason: `value longer than ${VALUE_BYTES_MAX} bytes` };
  return { kind: 'entry', key, value };
}
