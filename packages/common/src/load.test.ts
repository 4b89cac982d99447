import { KEY_BYTES_MAX, VALUE_BYTES_MAX } from './api';
import { LineScanner, LOAD_LINE_BYTES_MAX, parseLine } from './load';

describe('parseLine', () => {
  test('key, one separator, then the rest of the line as the value (spaces kept)', () => {
    expect(parseLine('k1 hello world')).toEqual({ kind: 'entry', key: 'k1', value: 'hello world' });
    expect(parseLine('k1\tvalue with\ttabs ')).toEqual({ kind: 'entry', key: 'k1', value: 'value with\ttabs ' });
    expect(parseLine('k1  two spaces')).toEqual({ kind: 'entry', key: 'k1', value: ' two spaces' });
    expect(parseLine('k1 ')).toEqual({ kind: 'entry', key: 'k1', value: '' });
    expect(parseLine('k1 v\r')).toEqual({ kind: 'entry', key: 'k1', value: 'v' });
    expect(parseLine('ключ значение')).toEqual({ kind: 'entry', key: 'ключ', value: 'значение' });
  });

  test('blank lines are skipped, not malformed', () => {
    expect(parseLine('')).toEqual({ kind: 'blank' });
    expect(parseLine('   \t')).toEqual({ kind: 'blank' });
  });

  test('a line without a value, or without a key, or with a key over the limit is malformed', () => {
    expect(parseLine('lonely')).toMatchObject({ kind: 'malformed', reason: expect.stringMatching(/no value/) });
    expect(parseLine(' leading space')).toMatchObject({ kind: 'malformed', reason: expect.stringMatching(/no key/) });
    expect(parseLine(`${'k'.repeat(1025)} v`)).toMatchObject({ kind: 'malformed', reason: expect.stringMatching(/key longer/) });
    expect(parseLine('k \ud800')).toMatchObject({ kind: 'malformed', reason: expect.stringMatching(/UTF-8/) });
  });
});

type Seen = Array<{ line: number; key: string; value: string } | { line: number; malformed: string }>;

/** Scans `input` pushed in pieces cut at `cuts`; returns what the visitor saw, decoded for comparison. */
function scan(input: Buffer, cuts: number[] = [], firstLine = 1): { seen: Seen; nextLine: number } {
  const seen: Seen = [];
  const scanner = new LineScanner(
    {
      entry(buf, start, keyEnd, valueEnd, line) {
        expect([32, 9]).toContain(buf[keyEnd]);
        seen.push({ line, key: buf.toString('utf8', start, keyEnd), value: buf.toString('utf8', keyEnd + 1, valueEnd) });
      },
      malformed(line, reason) {
        seen.push({ line, malformed: reason });
      },
    },
    firstLine,
  );
  let at = 0;
  for (const c of [...cuts, input.length]) {
    scanner.push(input.subarray(at, c));
    at = c;
  }
  scanner.end();
  return { seen, nextLine: scanner.nextLine };
}

/** What parseLine (the reference) says of each line of a text, in the same shape. */
function reference(lines: string[]): Seen {
  const out: Seen = [];
  lines.forEach((l, i) => {
    const p = parseLine(l);
    if (p.kind === 'entry') out.push({ line: i + 1, key: p.key, value: p.value });
    if (p.kind === 'malformed') out.push({ line: i + 1, malformed: p.reason });
  });
  return out;
}

const TRICKY = [
  'k1 hello world',
  'k1\tvalue with\ttabs ',
  'k1  two spaces',
  'k1 ',
  'k1 v\r',
  'ключ значение',
  '',
  '   \t',
  '\r',
  'lonely',
  ' leading space',
  '\tleading tab',
  `${'k'.repeat(KEY_BYTES_MAX)} at the limit`,
  `${'k'.repeat(KEY_BYTES_MAX + 1)} v`,
  `${'é'.repeat(KEY_BYTES_MAX / 2)} two-byte key at the limit`,
  `${'é'.repeat(KEY_BYTES_MAX / 2 + 1)} v`,
  'k\u00a0nbsp-in-key v',
  'k\u3000ideographic-space v',
  'k\vvertical-tab v',
  'k\fform-feed v',
  'k\rcr-in-key v',
  'k value with \r inside',
  'k value\r\r',
  '\ufeffbom-key v',
  'emoji😀 v😀',
  'k \u2028 line separator in value',
  '\u00a0',
  'k\u00a0',
];

describe('LineScanner', () => {
  test('agrees with parseLine on every tricky line, with line numbers, blank lines skipped', () => {
    const text = TRICKY.join('\n');
    expect(scan(Buffer.from(text)).seen).toEqual(reference(TRICKY));
  });

  test('gives the same answer however the input is cut into blocks', () => {
    const input = Buffer.from(`${TRICKY.join('\n')}\n`);
    const whole = scan(input).seen;
    for (let cut = 1; cut < input.length; cut += 7) expect(scan(input, [cut]).seen).toEqual(whole);
    expect(scan(input, Array.from({ length: input.length - 1 }, (_, i) => i + 1)).seen).toEqual(whole);
  });

  test('agrees with parseLine on random lines of spaces, tabs, CRs, multi-byte and whitespace characters', () => {
    const alphabet = ['a', 'b', ' ', '\t', '\r', 'é', '😀', '\u00a0', '\u2000', '\v', 'z'];
    let seed = 42;
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const lines = Array.from({ length: 3000 }, () => Array.from({ length: rand(8) }, () => alphabet[rand(alphabet.length)]!).join(''));
    const input = Buffer.from(lines.join('\n'));
    expect(scan(input, [rand(input.length)]).seen).toEqual(reference(lines));
  });

  test('bytes that are not UTF-8 make their line malformed, only that line', () => {
    const input = Buffer.concat([Buffer.from('good 1\nbad '), Buffer.from([0xc3, 0x28]), Buffer.from('\n\xff key\nalso-good 2\n', 'latin1')]);
    expect(scan(input).seen).toEqual([
      { line: 1, key: 'good', value: '1' },
      { line: 2, malformed: 'not valid UTF-8 text' },
      { line: 3, malformed: 'not valid UTF-8 text' },
      { line: 4, key: 'also-good', value: '2' },
    ]);
  });

  test('a value at the limit is an entry; one byte more, or a line longer than any valid one, is malformed and skipped', () => {
    const atLimit = `k ${'v'.repeat(VALUE_BYTES_MAX)}`;
    const over = `k ${'v'.repeat(VALUE_BYTES_MAX + 1)}`;
    const huge = 'x'.repeat(LOAD_LINE_BYTES_MAX + 10);
    const input = Buffer.from([atLimit, over, huge, 'after 1', huge, 'last 2'].join('\n'));
    const expected = [
      { line: 1, key: 'k', value: 'v'.repeat(VALUE_BYTES_MAX) },
      { line: 2, malformed: `value longer than ${VALUE_BYTES_MAX} bytes` },
      { line: 3, malformed: `line longer than ${LOAD_LINE_BYTES_MAX} bytes` },
      { line: 4, key: 'after', value: '1' },
      { line: 5, malformed: `line longer than ${LOAD_LINE_BYTES_MAX} bytes` },
      { line: 6, key: 'last', value: '2' },
    ];
    expect(scan(input).seen).toEqual(expected);
    // In 64 KiB blocks, as a socket delivers them: the over-long lines are never held whole.
    const blocks = Array.from({ length: Math.floor(input.length / 65536) }, (_, i) => (i + 1) * 65536);
    expect(scan(input, blocks).seen).toEqual(expected);
  });

  test('numbers lines from firstLine, counts a last line without a newline, and says where the next starts', () => {
    expect(scan(Buffer.from('a 1\n\nb 2'), [], 101)).toEqual({ seen: [{ line: 101, key: 'a', value: '1' }, { line: 103, key: 'b', value: '2' }], nextLine: 104 });
    expect(scan(Buffer.from('a 1\n'), [], 7).nextLine).toBe(8);
    expect(scan(Buffer.from(''), [], 7).nextLine).toBe(7);
  });
});
