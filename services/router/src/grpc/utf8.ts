import type { PackageDefinition } from '@grpc/proto-loader';
import { isUtf8 } from 'node:buffer';

/**
 * protobufjs decodes a `string` field that is not UTF-8 lossily, into U+FFFD, which would store
 * a value, or address a key, that the client never sent (the HTTP API refuses such bodies for the
 * same reason). So before a request is decoded, its bytes are walked by the message's schema and
 * the first string field that is not UTF-8 is named; the handler refuses the request with it.
 * Proto3 requires strings to be UTF-8 and conforming clients never send anything else: this is
 * for the others.
 */
export interface WireSchema {
  name: string;
  /** Field number -> field name, for `string` fields. */
  strings: Map<number, string>;
  /** Field number -> the nested message's schema (resolved lazily: a message may contain itself). */
  messages: Map<number, { name: string; schema: () => WireSchema }>;
}

/** The schema of message `typeName` (full name) from a proto-loader package definition. */
export function wireSchema(def: PackageDefinition, typeName: string): WireSchema {
  const cache = new Map<string, WireSchema>();
  const build = (full: string): WireSchema => {
    const cached = cache.get(full);
    if (cached !== undefined) return cached;
    const type = (def[full] as { type?: { field?: DescriptorField[] } } | undefined)?.type;
    if (type?.field === undefined) throw new Error(`no message ${full} in the .proto`);
    const schema: WireSchema = { name: full, strings: new Map(), messages: new Map() };
    cache.set(full, schema);
    const pkg = full.slice(0, full.lastIndexOf('.'));
    for (const f of type.field) {
      if (f.type === 'TYPE_STRING') schema.strings.set(f.number, f.name);
      if (f.type === 'TYPE_MESSAGE') {
        const nested = def[f.typeName] !== undefined ? f.typeName : `${pkg}.${f.typeName}`;
        schema.messages.set(f.number, { name: f.name, schema: () => build(nested) });
      }
    }
    return schema;
  };
  return build(typeName);
}

interface DescriptorField {
  name: string;
  number: number;
  type: string;
  typeName: string;
}

/** Varints are at most 10 bytes; a longer run is not a message (the decoder will refuse it). */
const VARINT_BYTES_MAX = 10;

/**
 * The path (`key`, `entries.value`) of the first string field in `buf` that is not UTF-8, or
 * undefined. A malformed message is not judged here: undefined, and the decoder refuses it.
 */
export function firstInvalidString(buf: Buffer, schema: WireSchema, start = 0, end = buf.length): string | undefined {
  let pos = start;
  while (pos < end) {
    const tag = varint(buf, pos, end);
    if (tag === undefined) return undefined;
    pos = tag.next;
    const field = Math.floor(tag.value / 8);
    switch (tag.value % 8) {
      case 0: {
        const v = varint(buf, pos, end);
        if (v === undefined) return undefined;
        pos = v.next;
        break;
      }
      case 1:
        pos += 8;
        break;
      case 5:
        pos += 4;
        break;
      case 2: {
        const len = varint(buf, pos, end);
        if (len === undefined || len.next + len.value > end) return undefined;
        const from = len.next;
        pos = from + len.value;
        const str = schema.strings.get(field);
        if (str !== undefined && !isUtf8(buf.subarray(from, pos))) return str;
        const nested = schema.messages.get(field);
        const inner = nested === undefined ? undefined : firstInvalidString(buf, nested.schema(), from, pos);
        if (inner !== undefined) return `${nested!.name}.${inner}`;
        break;
      }
      default:
        return undefined; // groups (deprecated, none in our .proto) or garbage
    }
  }
  return undefined;
}

function varint(buf: Buffer, pos: number, end: number): { value: number; next: number } | undefined {
  let value = 0;
  for (let i = 0; i < VARINT_BYTES_MAX && pos + i < end; i += 1) {
    const b = buf[pos + i]!;
    value += (b & 0x7f) * 2 ** (7 * i);
    if (b < 0x80) return { value, next: pos + i + 1 };
  }
  return undefined;
}
