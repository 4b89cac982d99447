import { KEY_BYTES_MAX, keyQuery, parseKeyQuery, parsePutBody, VALUE_BYTES_MAX } from './api';
import { KvError } from './errors';
import { isInternalPath } from './http';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof KvError) return `${err.status} ${err.code}`;
    throw err;
  }
  return 'no error';
}

describe('parsePutBody', () => {
  test('accepts any well-formed key and value, the empty value included', () => {
    expect(parsePutBody({ key: 'a&b=c/d%e#f g😀', value: '' })).toEqual({ key: 'a&b=c/d%e#f g😀', value: '' });
    expect(parsePutBody({ key: 'k'.repeat(KEY_BYTES_MAX), value: 'v'.repeat(VALUE_BYTES_MAX) }).key).toHaveLength(KEY_BYTES_MAX);
  });

  test.each([
    ['not an object', [1], '400 invalid_body'],
    ['null', null, '400 invalid_body'],
    ['missing key', { value: 'v' }, '400 invalid_key'],
    ['empty key', { key: '', value: 'v' }, '400 invalid_key'],
    ['numeric key', { key: 1, value: 'v' }, '400 invalid_key'],
    ['key over 1024 bytes', { key: 'é'.repeat(513), value: 'v' }, '400 invalid_key'],
    ['lone surrogate in key', { key: '\ud800', value: 'v' }, '400 invalid_key'],
    ['missing value', { key: 'k' }, '400 invalid_value'],
    ['null value', { key: 'k', value: null }, '400 invalid_value'],
    ['numeric value', { key: 'k', value: 5 }, '400 invalid_value'],
    ['unknown field', { key: 'k', value: 'v', ttl: 3 }, '400 invalid_body'],
    ['value over 1 MiB', { key: 'k', value: 'x'.repeat(VALUE_BYTES_MAX + 1) }, '413 value_too_large'],
  ])('refuses %s', (_what, body, expected) => {
    expect(codeOf(() => parsePutBody(body))).toBe(expected);
  });

  test('says which field is missing, and the type problem when it is present', () => {
    expect(() => parsePutBody({ key: 'k' })).toThrow('"value" is required');
    expect(() => parsePutBody({ key: 'k', value: null })).toThrow('value must be a string');
  });
});

describe('key query', () => {
  test('round-trips awkward keys through keyQuery/parseKeyQuery', () => {
    for (const k of ['a b', 'a+b', '&', '=', '/', '%', '#', '?', '😀', ' lead', 'x'.repeat(KEY_BYTES_MAX)]) {
      expect(parseKeyQuery(keyQuery(k))).toBe(k);
    }
  });

  test('reads + as space and ignores other parameters', () => {
    expect(parseKeyQuery('x=1&key=a+b&y=2')).toBe('a b');
  });

  test.each([
    ['no key', 'x=1'],
    ['empty key', 'key='],
    ['invalid percent-encoding', 'key=%FF'],
    ['truncated escape', 'key=%E2%82'],
    ['key given twice', 'key=a&key=b'],
    ['key over 1024 bytes', `key=${'x'.repeat(KEY_BYTES_MAX + 1)}`],
  ])('refuses %s with 400 invalid_key', (_what, qs) => {
    expect(codeOf(() => parseKeyQuery(qs))).toBe('400 invalid_key');
  });
});

describe('isInternalPath', () => {
  test('catches every spelling of /internal a router might accept', () => {
    for (const p of ['/internal/replicate', '/INTERNAL/snapshot', '/Internal/replicate', '//internal/x', '/%69nternal/snapshot', '/internal']) {
      expect(isInternalPath(p)).toBe(true);
    }
    for (const p of ['/put', '/get', '/status', '/health', '/internals-doc'.slice(0, 4)]) expect(isInternalPath(p)).toBe(false);
  });
});
