import { createHash } from 'node:crypto';

/*
 * The state digest of shardkv before XXH3-128 (digest.ts). No store uses it any more: it stays
 * to measure the current digest against (`npm run bench:digest`) and to write data directories
 * as an older build wrote them (store.test.ts).
 */

const DIGEST_MOD = 1n << 256n;

/**
 * The digest is a sum (mod 2^256) of SHA-256 over each (key, value) pair. A sum is independent of
 * insertion order and can be updated per write in O(1), so `/status` never rescans the store.
 * The key is length-prefixed so that ("ab","c") and ("a","bc") hash differently.
 */
export function pairHash(key: string, value: string): bigint {
  const h = createHash('sha256');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(Buffer.byteLength(key));
  h.update(len).update(key).update(value);
  return BigInt(`0x${h.digest('hex')}`);
}

export class DigestSum {
  constructor(public value = 0n) {}
  static fromHex(hex: string): DigestSum {
    return new DigestSum(BigInt(`0x${hex}`));
  }
  add(key: string, val: string): void {
    this.value = (this.value + pairHash(key, val)) % DIGEST_MOD;
  }
  remove(key: string, val: string): void {
    this.value = (this.value - pairHash(key, val) + DIGEST_MOD) % DIGEST_MOD;
  }
  hex(): string {
    return this.value.toString(16).padStart(64, '0');
  }
}
