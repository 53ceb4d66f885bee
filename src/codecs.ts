import * as v8 from 'node:v8';

/**
 * How values other than strings, numbers and byte arrays are stored.
 * `decode` receives bytes it may keep: they are a copy that no later call
 * overwrites (a view of a pooled ArrayBuffer, as `Buffer.allocUnsafe`'s are).
 */
export interface Codec<V = unknown> {
  encode(value: V): Uint8Array;
  decode(bytes: Uint8Array): V;
}

export const v8Codec: Codec<unknown> = {
  encode: (value) => v8.serialize(value),
  decode: (bytes) => v8.deserialize(bytes as Buffer) as unknown,
};

export const jsonCodec: Codec<unknown> = {
  encode(value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`${typeof value} has no JSON representation`);
    return Buffer.from(text, 'utf8');
  },
  decode: (bytes) =>
    JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')) as unknown,
};
