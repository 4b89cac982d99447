import { parseLine } from './parse';

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
