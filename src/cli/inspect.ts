/**
 * Looking at entries without disturbing them, through one adapter over the
 * Cache API: `peek()` and `info()` (DESIGN §1) when the core has them; until
 * then `get()` (which counts a hit and marks the entry used) with the type
 * taken from the value and the TTL unknown (null).
 */
import { Buffer } from 'node:buffer';
import { inspect as utilInspect } from 'node:util';
import { serialize } from 'node:v8';
import type { Cache } from '../index';

export type EntryType = 'string' | 'bytes' | 'number' | 'object';

export interface EntryInfo {
  type: EntryType;
  /** Stored size in bytes (the fallback estimates an object's with v8.serialize). */
  bytes: number;
  /** ms left; 0 for no expiry; null when unknown (the core cannot tell yet). */
  ttl: number | null;
}

export interface EntryView extends EntryInfo {
  key: string;
  /** The value for people, cut to a few KiB. */
  preview: string;
  truncated: boolean;
}

/** The methods of DESIGN §1 this module uses when they exist. */
interface Inspectable {
  peek?(key: string): unknown;
  info?(key: string): { type: EntryType; bytes: number; ttl?: number } | undefined;
  ttl?(key: string): number | undefined;
}

const PREVIEW_CHARS = 2000;
const PREVIEW_BYTES = 256;

/** Errors of the segment or the key (not of decoding a value another codec wrote) go to the caller. */
const PASS_ON = new Set(['ERR_SHMCACHE_INVALID_KEY', 'ERR_SHMCACHE_CLOSED', 'ERR_SHMCACHE_CORRUPT', 'ERR_SHMCACHE_IO', 'ERR_SHMCACHE_NOT_FOUND', 'ERR_SHMCACHE_PERMISSION', 'ERR_SHMCACHE_TIMEOUT']);
function isDecodeError(err: unknown): boolean {
  return !PASS_ON.has((err as { code?: string })?.code ?? '');
}

/** The live value of `key`, read with `peek()` when the core has it. */
export function peekValue(cache: Cache, key: string): unknown {
  const c = cache as unknown as Inspectable;
  return typeof c.peek === 'function' ? c.peek.call(cache, key) : cache.get(key);
}

/** Type and stored size of a value as the segment would record them. */
export function describeValue(value: unknown): { type: EntryType; bytes: number } {
  if (typeof value === 'string') return { type: 'string', bytes: Buffer.byteLength(value, 'utf8') };
  if (typeof value === 'number') return { type: 'number', bytes: 8 };
  if (value instanceof Uint8Array) return { type: 'bytes', bytes: value.byteLength };
  let n = 0;
  try {
    n = serialize(value).length;
  } catch {}
  return { type: 'object', bytes: n };
}

/** Type, bytes and TTL of `key`'s live entry, or undefined. */
export function entryInfo(cache: Cache, key: string): EntryInfo | undefined {
  const c = cache as unknown as Inspectable;
  if (typeof c.info === 'function') {
    const i = c.info.call(cache, key);
    return i === undefined ? undefined : { type: i.type, bytes: i.bytes, ttl: typeof i.ttl === 'number' ? i.ttl : null };
  }
  let value: unknown;
  try {
    value = peekValue(cache, key);
  } catch (err) {
    if (!isDecodeError(err)) throw err;
    return { type: 'object', bytes: 0, ttl: ttlOf(cache, key) }; // stored with a codec we cannot decode
  }
  if (value === undefined) return undefined;
  return { ...describeValue(value), ttl: ttlOf(cache, key) };
}

function ttlOf(cache: Cache, key: string): number | null {
  const c = cache as unknown as Inspectable;
  if (typeof c.ttl !== 'function') return null;
  const t = c.ttl.call(cache, key);
  return typeof t === 'number' ? t : null;
}

/** `key`'s entry with a preview of its value, or undefined when it has none. */
export function entryView(cache: Cache, key: string): EntryView | undefined {
  const info = entryInfo(cache, key);
  if (info === undefined) return undefined;
  let value: unknown;
  try {
    value = peekValue(cache, key);
  } catch (err) {
    if (!isDecodeError(err)) throw err;
    return { key, ...info, preview: `(cannot decode with the v8 codec: ${(err as Error)?.message ?? String(err)})`, truncated: false };
  }
  if (value === undefined) return undefined; // gone meanwhile
  return { key, ...info, ...preview(value) };
}

/** A value for people: strings cut, bytes as a hex dump, objects through util.inspect. */
export function preview(value: unknown): { preview: string; truncated: boolean } {
  if (typeof value === 'string') return cut(value, PREVIEW_CHARS);
  if (typeof value === 'number') return { preview: String(value), truncated: false };
  if (value instanceof Uint8Array) {
    const b = Buffer.from(value.buffer, value.byteOffset, Math.min(value.byteLength, PREVIEW_BYTES));
    return { preview: hexDump(b), truncated: value.byteLength > PREVIEW_BYTES };
  }
  return cut(utilInspect(value, { depth: 4, maxArrayLength: 50, maxStringLength: 500, breakLength: 80, sorted: true }), PREVIEW_CHARS * 2);
}

function cut(s: string, n: number): { preview: string; truncated: boolean } {
  return s.length > n ? { preview: s.slice(0, n), truncated: true } : { preview: s, truncated: false };
}

/** 16 bytes a line: offset, hex, and the printable ASCII. */
export function hexDump(b: Buffer): string {
  const lines: string[] = [];
  for (let i = 0; i < b.length; i += 16) {
    const row = b.subarray(i, i + 16);
    const hex = [...row].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...row].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
    lines.push(`${i.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

/** Live keys with `prefix`, sorted (so that pages are stable). */
export function sortedKeys(cache: Cache, prefix = ''): string[] {
  return cache.keys(prefix).sort();
}

/** A key's prefix for grouping: up to its first ':' or '/'; '' when it has none. */
export function prefixOf(key: string): string {
  const i = key.search(/[:/]/);
  return i <= 0 ? '' : key.slice(0, i);
}

/** The `n` prefixes with most keys, largest first. */
export function topPrefixes(keys: Iterable<string>, n: number): { prefix: string; count: number }[] {
  const counts = new Map<string, number>();
  for (const k of keys) {
    const p = prefixOf(k);
    counts.set(p, (counts.get(p) ?? 0) + 1);
  }
  return [...counts]
    .map(([prefix, c]) => ({ prefix, count: c }))
    .sort((a, b) => b.count - a.count || (a.prefix < b.prefix ? -1 : 1))
    .slice(0, n);
}
