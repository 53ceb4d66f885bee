import { Buffer } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import type { Codec } from '../codecs';
import { ShmCacheError } from '../errors';

/**
 * What a value looks like in Redis: one type byte, then the payload.
 *
 * | byte | payload |
 * |---|---|
 * | 0x00 | a `remember()` lock: 16 random bytes (reads as a miss) |
 * | 0x01 | a string, UTF-8 |
 * | 0x02 | bytes (a Buffer or Uint8Array; read back as a Buffer) |
 * | 0x03 | a number, float64 little-endian (NaN, ±Infinity, -0 kept) |
 * | 0x04 | anything else, encoded by the codec |
 */
export const T_LOCK = 0;
export const T_STRING = 1;
export const T_BYTES = 2;
export const T_NUMBER = 3;
export const T_CODEC = 4;

/** What decode() returns for a lock: a producer is running, there is no value yet. */
export const LOCKED: unique symbol = Symbol('shmcache/redis lock');

export function encodeValue<V>(value: V, codec: Codec<V>, key: string): Buffer {
  if (typeof value === 'string') {
    const n = Buffer.byteLength(value, 'utf8');
    const out = Buffer.allocUnsafe(1 + n);
    out[0] = T_STRING;
    out.write(value, 1, 'utf8');
    return out;
  }
  if (typeof value === 'number') {
    const out = Buffer.allocUnsafe(9);
    out[0] = T_NUMBER;
    out.writeDoubleLE(value, 1);
    return out;
  }
  if (value instanceof Uint8Array) return tagged(T_BYTES, value);
  let encoded: Uint8Array;
  try {
    encoded = codec.encode(value);
  } catch (err) {
    throw new ShmCacheError(
      'ERR_SHMCACHE_ENCODE',
      `cannot encode the value of ${JSON.stringify(key)}: ${(err as Error)?.message ?? String(err)}`,
      { cause: err },
    );
  }
  if (!(encoded instanceof Uint8Array)) {
    throw new ShmCacheError('ERR_SHMCACHE_ENCODE', `the codec's encode() returned ${typeof encoded}, not a Uint8Array`);
  }
  return tagged(T_CODEC, encoded);
}

function tagged(type: number, bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(1 + bytes.byteLength);
  out[0] = type;
  out.set(bytes, 1);
  return out;
}

/**
 * The value a Redis reply holds, `LOCKED` for a remember() lock.
 * @throws {ShmCacheError} CORRUPT for bytes no TieredCache wrote, or that the codec cannot decode.
 */
export function decodeValue<V>(bytes: Buffer, codec: Codec<V>, key: string): V | typeof LOCKED {
  const type = bytes.length === 0 ? -1 : bytes[0];
  switch (type) {
    case T_STRING:
      return bytes.toString('utf8', 1) as V;
    case T_NUMBER:
      if (bytes.length === 9) return bytes.readDoubleLE(1) as V;
      break;
    case T_BYTES:
      return bytes.subarray(1) as V;
    case T_CODEC:
      try {
        return codec.decode(bytes.subarray(1));
      } catch (err) {
        throw new ShmCacheError(
          'ERR_SHMCACHE_CORRUPT',
          `the codec cannot decode the Redis value of ${JSON.stringify(key)}: ${(err as Error)?.message ?? String(err)}`,
          { cause: err },
        );
      }
    case T_LOCK:
      return LOCKED;
  }
  throw new ShmCacheError(
    'ERR_SHMCACHE_CORRUPT',
    `the Redis value of ${JSON.stringify(key)} was not written by shmcache/redis (${bytes.length} bytes, type byte ${type})`,
  );
}

/** A lock value: the lock type byte and 16 random bytes, the owner's token. */
export function newLock(): Buffer {
  const out = Buffer.allocUnsafe(17);
  out[0] = T_LOCK;
  randomBytes(16).copy(out, 1);
  return out;
}

/** A Lua script, sent by its SHA1 (EVALSHA) and by its text when Redis does not know it yet. */
export interface Script {
  readonly name: string;
  readonly text: string;
  readonly sha: string;
  /** The same script without its `#!lua` flags line, for a Redis older than 7 (which cannot compile it). */
  readonly legacy?: Script;
}

function script(name: string, text: string, legacy?: Script): Script {
  return { name, text, sha: createHash('sha1').update(text).digest('hex'), legacy };
}

const FILL_BODY = `local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}`;

/**
 * A read: the value and the ms it has left (-1: no expiry), in one atomic
 * step; nil when missing. Declared `no-writes` (Redis 7): a script without
 * flags counts as a write, and CLIENT PAUSE WRITE (what FAILOVER uses) would
 * hold it, and every later command of its connection behind it.
 */
export const FILL = script('fill', `#!lua flags=no-writes\n${FILL_BODY}`, script('fill', FILL_BODY));

/**
 * remember()'s lock on the value's own key: a value (or another's lock) and
 * its PTTL if there is one; else the lock (ARGV[1]) is set with PX ARGV[2]
 * and nil comes back: the caller owns it. A lock without an expiry (no tier
 * writes one) is broken: taken over as if the key were empty.
 */
export const ACQUIRE = script(
  'acquire',
  `local v = redis.call('GET', KEYS[1])
if v then
  local t = redis.call('PTTL', KEYS[1])
  if t >= 0 or string.byte(v, 1) ~= 0 then return {v, t} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`,
);

/**
 * Stores a produced value (ARGV[1], PX ARGV[2] unless '0') only over the
 * producer's own lock (ARGV[3]): a key that holds anything else was written
 * (`set`), deleted or cleared while the producer ran, or its lock expired
 * and another producer holds the key now; the value, computed before that,
 * must not win over it. 1 if stored.
 */
export const STORE = script(
  'store',
  `if redis.call('GET', KEYS[1]) ~= ARGV[3] then return 0 end
if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1`,
);

/** Deletes the lock only if it is still the caller's (compare and delete). */
export const RELEASE = script(
  'release',
  `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`,
);

/** The most keys one bus message names: a sender splits, a receiver takes a longer one as a clear. */
export const MAX_MESSAGE_KEYS = 1000;

/** The longest bus message read (longer: taken as a clear without parsing it). */
export const MAX_MESSAGE_CHARS = 1 << 20;

/** A bus message: the writing machine and the keys it wrote, or a clear. */
export interface BusMessage {
  /** The writing machine's id (kept in its L1 segment). */
  machine: string;
  /** The message's own random id: one process per machine applies it, the others see it applied. */
  id: string;
  /** The keys written (without the prefix); absent for a clear. */
  keys?: string[];
  /** Whether every key under the prefix was dropped. */
  clear?: boolean;
}

/**
 * `{"v":1,"m":"<machine id>","i":"<message id>","k":["key",...]}`, or
 * `{"v":1,"m":"<machine id>","i":"<message id>","clear":true}`.
 */
export function encodeMessage(m: BusMessage): string {
  return m.clear
    ? JSON.stringify({ v: 1, m: m.machine, i: m.id, clear: true })
    : JSON.stringify({ v: 1, m: m.machine, i: m.id, k: m.keys });
}

/** A message as encodeMessage() wrote it; undefined for anything else (it is ignored). */
export function decodeMessage(text: string): BusMessage | undefined {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null) return undefined;
  const r = o as { v?: unknown; m?: unknown; i?: unknown; k?: unknown; clear?: unknown };
  if (r.v !== 1 || typeof r.m !== 'string' || typeof r.i !== 'string' || r.i.length === 0 || r.i.length > 64) return undefined;
  if (r.clear === true) return { machine: r.m, id: r.i, clear: true };
  if (!Array.isArray(r.k)) return undefined;
  // Longer than a tier sends (it splits): a clear, rather than that many drops.
  if (r.k.length > MAX_MESSAGE_KEYS) return { machine: r.m, id: r.i, clear: true };
  if (!r.k.every((k) => typeof k === 'string' && k.length > 0)) return undefined;
  return { machine: r.m, id: r.i, keys: r.k as string[] };
}
