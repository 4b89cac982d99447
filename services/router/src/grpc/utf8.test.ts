import { loadKvDefinition } from './proto';
import { firstInvalidString, wireSchema } from './utf8';

const def = loadKvDefinition();
type Codec = { requestSerialize(v: unknown): Buffer };
const method = (name: string) => (def['shardkv.v1.KV'] as unknown as Record<string, Codec>)[name]!;
/** The encoded request with the bytes of `from` (ASCII, same length) replaced by `bytes`. */
const corrupt = (buf: Buffer, from: string, bytes: number[]) => {
  const at = buf.indexOf(from);
  expect(at).toBeGreaterThanOrEqual(0);
  const out = Buffer.from(buf);
  Buffer.from(bytes).copy(out, at);
  return out;
};

describe('strings that are not UTF-8 in gRPC requests', () => {
  test('a valid request passes, however many strings it has', () => {
    const buf = method('MPut').requestSerialize({ entries: [{ key: 'é😀', value: 'v'.repeat(300) }, { key: 'b', value: '' }] });
    expect(firstInvalidString(buf, wireSchema(def, 'shardkv.v1.MPutRequest'))).toBeUndefined();
  });

  test('names the first invalid field, nested ones by their path', () => {
    const put = method('Put').requestSerialize({ key: 'kk', value: 'vvv' });
    expect(firstInvalidString(corrupt(put, 'kk', [0xff, 0x61]), wireSchema(def, 'shardkv.v1.PutRequest'))).toBe('key');
    expect(firstInvalidString(corrupt(put, 'vvv', [0xed, 0xa0, 0x80]), wireSchema(def, 'shardkv.v1.PutRequest'))).toBe('value'); // an encoded lone surrogate
    const mput = method('MPut').requestSerialize({ entries: [{ key: 'a', value: 'ok' }, { key: 'b', value: 'xy' }] });
    expect(firstInvalidString(corrupt(mput, 'xy', [0xc3, 0x28]), wireSchema(def, 'shardkv.v1.MPutRequest'))).toBe('entries.value');
    const mget = method('MGet').requestSerialize({ keys: ['a', 'zz'] });
    expect(firstInvalidString(corrupt(mget, 'zz', [0x80, 0x80]), wireSchema(def, 'shardkv.v1.MGetRequest'))).toBe('keys');
  });

  test('leaves a malformed message to the decoder', () => {
    expect(firstInvalidString(Buffer.from([0x0a, 0x7f, 0x61]), wireSchema(def, 'shardkv.v1.PutRequest'))).toBeUndefined();
    expect(firstInvalidString(Buffer.from([0xff, 0xff, 0xff]), wireSchema(def, 'shardkv.v1.PutRequest'))).toBeUndefined();
  });
});
