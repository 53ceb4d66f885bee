import { createHash } from 'node:crypto';
import type { Cache } from './cache';
import { isWellFormed } from './strings';

/**
 * Keys of the adapters (shmcache/keyv, shmcache/bentocache). Keyv and
 * bentocache keys are any strings; a shmcache key is a well-formed string of
 * at most 1024 UTF-8 bytes. A key that is not one (too long, a lone
 * surrogate, empty), that contains MARK, or that starts with U+0000 (keys
 * shmcache keeps for itself) is stored under a digest:
 * `<namespace part> MARK <sha-256 of its UTF-16 code units, base64url>`, with
 * the original key kept beside the value (`[key, value]`), so that a read
 * checks it and an iterator can return it. Every key stored as it is lacks
 * MARK and every digest key has it, so no two keys ever share an entry.
 *
 * The namespace part is kept so that clearing a namespace by prefix still
 * finds the key: the longest start of the key that ends in `:` and can start
 * a key as it is (well-formed, no MARK, no U+0000 first, at most 512 bytes).
 * When the adapter's own namespace (its prefix, `<namespace>:`) cannot, the
 * part is `<the longest such start of the prefix> MARK <the prefix's
 * digest> :`, which its clear() and iterator() look under.
 */
export const MARK = '\u0000#';
const MAX_KEY_BYTES = 1024;
const MAX_PREFIX_BYTES = 512;

export interface StoredKey {
  key: string;
  /** Stored under a digest, with the original key beside the value. */
  hashed: boolean;
}

/** Whether `s` can start a stored key as it is: well-formed, no MARK, no U+0000 first, at most `max` UTF-8 bytes. */
function fits(s: string, max: number): boolean {
  return s.length <= max && s.charCodeAt(0) !== 0 && !s.includes(MARK) && isWellFormed(s) && Buffer.byteLength(s, 'utf8') <= max;
}

const digestOf = (s: string): string => createHash('sha256').update(Buffer.from(s, 'utf16le')).digest('base64url');

/** The longest start of `s` ending in `:` that fits a namespace part (at most 512 bytes), or ''. */
function outerPart(s: string): string {
  if (s.charCodeAt(0) === 0) return '';
  let bytes = 0;
  let end = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 && s.charCodeAt(i + 1) === 0x23) break; // MARK
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xdc00 && c <= 0xdfff) break; // lone low surrogate
    else if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) break; // lone high surrogate
      bytes += 4;
      i++;
    } else bytes += 3;
    if (bytes > MAX_PREFIX_BYTES) break;
    if (c === 0x3a) end = i + 1;
  }
  return s.slice(0, end);
}

/**
 * What digest keys under the namespace prefix `prefix` (ending in `:`) start
 * with: the prefix itself when it fits, else `<outer part> MARK <digest> :`.
 */
export function prefixPart(prefix: string): string {
  return fits(prefix, MAX_PREFIX_BYTES) ? prefix : `${outerPart(prefix)}${MARK}${digestOf(prefix)}:`;
}

/**
 * How `key` is stored by an adapter whose keys are under `prefix` (its
 * namespace and a `:`, or '' for none).
 */
export function storedKey(key: string, prefix = ''): StoredKey {
  if (key.length > 0 && fits(key, MAX_KEY_BYTES)) return { key, hashed: false };
  const ns = prefix !== '' && key.startsWith(prefix) && !fits(prefix, MAX_PREFIX_BYTES) ? prefixPart(prefix) : outerPart(key);
  return { key: ns + MARK + digestOf(key), hashed: true };
}

/** Whether the digest key `k` is one that storedKey() gives for `key` (under any prefix). */
function isStoredKeyOf(k: string, key: string): boolean {
  const tail = MARK + digestOf(key);
  if (!k.endsWith(tail)) return false;
  const ns = k.slice(0, k.length - tail.length);
  if (ns === outerPart(key)) return true;
  // Under a namespace that does not fit: `<outer> MARK <digest> :`, the
  // namespace one of the key's `:`-ended starts (hashed incrementally: a
  // key may have many).
  const outer = outerPart(ns);
  if (ns.length !== outer.length + MARK.length + 44 || !ns.startsWith(MARK, outer.length) || !ns.endsWith(':')) return false;
  const want = ns.slice(outer.length + MARK.length, -1);
  const hash = createHash('sha256');
  let from = 0;
  for (let c = key.indexOf(':'); c >= 0; c = key.indexOf(':', c + 1)) {
    hash.update(Buffer.from(key.slice(from, c + 1), 'utf16le'));
    from = c + 1;
    if (c + 1 > outer.length && hash.copy().digest('base64url') === want) {
      const prefix = key.slice(0, c + 1);
      if (!fits(prefix, MAX_PREFIX_BYTES) && prefixPart(prefix) === ns) return true;
    }
  }
  return false;
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

/** The prefixes the keys under the namespace prefix `prefix` are stored under (as they are, and digests). */
function storedPrefixes(prefix: string): string[] {
  const out: string[] = [];
  // Keys stored as they are (the digests too, when the prefix fits).
  if (prefix === '' || fits(prefix, MAX_KEY_BYTES)) out.push(prefix);
  if (prefix !== '' && !fits(prefix, MAX_PREFIX_BYTES)) out.push(prefixPart(prefix));
  return out;
}

/**
 * Live `[key, value]` pairs under `prefix` (a namespace and `:`, or ''),
 * original keys restored; keys starting with U+0000 (shmcache's own) are
 * left out.
 */
export function* adapterEntries(cache: Cache<unknown>, prefix: string): IterableIterator<[string, unknown]> {
  for (const p of storedPrefixes(prefix)) {
    for (const [k, v] of cache.entries(p)) {
      if (!k.includes(MARK)) {
        if (k.charCodeAt(0) !== 0) yield [k, v];
      } else if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && v[0].startsWith(prefix) && isStoredKeyOf(k, v[0])) {
        yield [v[0], v[1]];
      }
    }
  }
}

/** Deletes every key under the namespace prefix `prefix` (digest keys included); returns how many. */
export function deletePrefix(cache: Cache<unknown>, prefix: string): number {
  let removed = 0;
  for (const p of storedPrefixes(prefix)) {
    const keys = cache.keys(p);
    for (let i = 0; i < keys.length; i += 1000) removed += cache.deleteMany(keys.slice(i, i + 1000));
  }
  return removed;
}

/** Whether a TTL from an adapter says the entry has expired already (negative, NaN). */
export function expiredTtl(ttl: unknown): boolean {
  return typeof ttl === 'number' && (ttl < 0 || Number.isNaN(ttl));
}

/** A TTL from an adapter (ms, maybe fractional or not finite) as shmcache takes it; undefined: none given. */
export function adapterTtl(ttl: unknown): number | undefined {
  if (typeof ttl !== 'number' || Number.isNaN(ttl)) return undefined;
  if (ttl === Infinity) return 0;
  return ttl > 0 ? Math.min(Math.ceil(ttl), Number.MAX_SAFE_INTEGER) : undefined;
}
