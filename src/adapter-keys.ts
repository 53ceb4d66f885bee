import { createHash } from 'node:crypto';
import type { Cache } from './cache';
import { isWellFormed } from './strings';

/**
 * Keys of the adapters (shmcache/keyv, shmcache/bentocache). Keyv and
 * bentocache keys are any strings; a shmcache key is a well-formed string of
 * at most 1024 UTF-8 bytes. A key that is not one (too long, a lone
 * surrogate, empty), or that contains MARK, is stored under a digest:
 * `<namespace part> MARK <sha-256 of its UTF-16 code units, base64url>`, with
 * the original key kept beside the value (`[key, value]`), so that a read
 * checks it and an iterator can return it. Every key stored as it is lacks
 * MARK and every digest key has it, so no two keys ever share an entry.
 *
 * The namespace part (everything up to the last `:` within the first 512
 * bytes) is kept so that clearing a namespace by prefix still finds the key.
 */
export const MARK = '\u0000#';
const MAX_KEY_BYTES = 1024;
const MAX_PREFIX_BYTES = 512;

export interface StoredKey {
  key: string;
  /** Stored under a digest, with the original key beside the value. */
  hashed: boolean;
}

export function storedKey(key: string): StoredKey {
  if (
    key.length > 0 &&
    key.length <= MAX_KEY_BYTES &&
    !key.includes(MARK) &&
    isWellFormed(key) &&
    Buffer.byteLength(key, 'utf8') <= MAX_KEY_BYTES
  ) {
    return { key, hashed: false };
  }
  const digest = createHash('sha256').update(Buffer.from(key, 'utf16le')).digest('base64url');
  let ns = '';
  const colon = key.lastIndexOf(':', MAX_PREFIX_BYTES);
  if (colon >= 0) {
    const part = key.slice(0, colon + 1);
    if (!part.includes(MARK) && isWellFormed(part) && Buffer.byteLength(part, 'utf8') <= MAX_PREFIX_BYTES) ns = part;
  }
  return { key: ns + MARK + digest, hashed: true };
}

/** What to store for `value` under `s`. */
export function wrap(s: StoredKey, key: string, value: unknown): unknown {
  return s.hashed ? [key, value] : value;
}

/** The value read under `s` for `key`, or undefined (a digest entry of another key). */
export function unwrap(s: StoredKey, key: string, stored: unknown): unknown {
  if (stored === undefined || !s.hashed) return stored;
  return Array.isArray(stored) && stored.length === 2 && stored[0] === key ? stored[1] : undefined;
}

/** Live `[key, value]` pairs under `prefix`, original keys restored. */
export function* adapterEntries(cache: Cache<unknown>, prefix: string): IterableIterator<[string, unknown]> {
  // The prefix as stored: a namespace too long or ill-formed for a key has
  // no entry stored as it is.
  for (const [k, v] of cache.entries(isWellFormed(prefix) ? prefix : '\u0000\u0000invalid')) {
    if (!k.includes(MARK)) {
      yield [k, v];
    } else if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && v[0].startsWith(prefix) && storedKey(v[0]).key === k) {
      yield [v[0], v[1]];
    }
  }
}

/** Deletes every key starting with `prefix` (digest keys included); returns how many. */
export function deletePrefix(cache: Cache<unknown>, prefix: string): number {
  const keys = cache.keys(prefix);
  let removed = 0;
  for (let i = 0; i < keys.length; i += 1000) removed += cache.deleteMany(keys.slice(i, i + 1000));
  return removed;
}

/** A TTL from an adapter (ms, maybe fractional or not finite) as shmcache takes it; undefined: none given. */
export function adapterTtl(ttl: unknown): number | undefined {
  if (typeof ttl !== 'number' || Number.isNaN(ttl)) return undefined;
  if (ttl === Infinity) return 0;
  return ttl > 0 ? Math.min(Math.ceil(ttl), Number.MAX_SAFE_INTEGER) : undefined;
}
