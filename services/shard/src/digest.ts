import { xxh3 } from '@node-rs/xxhash';

/**
 * The state digest: the sum modulo 2^128 of XXH3-128 over each (key, value) pair.
 *
 * A sum does not depend on the order of writes and is updated in O(1) per write (add the new
 * pair, subtract the old one), so `/status` never rescans the store. It detects accidents (a
 * lost write, two histories that differ, a transfer corrupted in transit): two different states
 * collide by accident with probability about 2^-128. It is not a MAC, and the
 * SHA-256 sum before it was not one either (neither has a key): XXH3 is not cryptographic, so
 * someone who chooses keys and values on purpose can make two states collide. The two nodes of a
 * shard trust each other anyway (`CLUSTER_TOKEN`); the digest guards against faults, not people.
 */

/** Stored with an LMDB state: a store whose digest was made by another algorithm recomputes it at open. */
export const DIGEST_ALGORITHM = 'xxh3-128-sum';

const DIGEST_BITS = 128;
/** The digest travels as fixed-width lower-case hex. */
export const DIGEST_HEX_CHARS = DIGEST_BITS / 4;
const DIGEST_HEX = new RegExp(`^[0-9a-f]{${DIGEST_HEX_CHARS}}$`);

/**
 * XXH3-128 of `<key length>:<key><value>`, UTF-8 encoded. The key's length (in UTF-16 code
 * units) goes first so that ("ab","c") and ("a","bc") hash differently: the digits end at the
 * first ':', and the length then says where the key ends. One string keeps it to one native
 * call, which is most of the cost. Keys and values are well-formed Unicode (the API refuses lone
 * surrogates), so the UTF-8 encoding is one-to-one.
 */
export function pairHash(key: string, value: string): bigint {
  return xxh3.xxh128(`${key.length}:${key}${value}`);
}

/** A running digest. `BigInt.asUintN` wraps modulo 2^128 without a division (a subtraction included). */
export class DigestSum {
  constructor(public value = 0n) {}

  static fromHex(hex: string): DigestSum {
    if (!DIGEST_HEX.test(hex)) throw new Error(`not a ${DIGEST_ALGORITHM} digest: ${JSON.stringify(hex)}`);
    return new DigestSum(BigInt(`0x${hex}`));
  }

  add(key: string, value: string): void {
    this.value = BigInt.asUintN(DIGEST_BITS, this.value + pairHash(key, value));
  }

  remove(key: string, value: string): void {
    this.value = BigInt.asUintN(DIGEST_BITS, this.value - pairHash(key, value));
  }

  hex(): string {
    return this.value.toString(16).padStart(DIGEST_HEX_CHARS, '0');
  }
}
