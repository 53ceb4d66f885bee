import type { Codec } from './codecs';
import { jsonCodec, v8Codec } from './codecs';
import { msgpackCodec } from './msgpack';
import { invalid, ShmCacheError } from './errors';
import { processGroup } from './stamps';
import { isWellFormed } from './strings';

/** Options of `new Cache()`. Only `path` is required. */
export interface CacheOptions<V = unknown> {
  /**
   * The segment file. Not touched until the first operation (or `open()`);
   * a relative path resolves against the working directory at that moment,
   * so inside a chroot it lands inside the jail.
   */
  path: string;
  /**
   * Size of a new segment in bytes, or a string such as `'512KB'`, `'64MB'`,
   * `'1GB'` (KB = 1024). An existing segment keeps its own size. At least
   * 1 MB, at most 16 GB. Default `'64MB'`.
   */
  size?: number | string;
  /**
   * Start-time stamp. An explicit stamp (this option, or `SHMCACHE_STAMP` in
   * the environment) resets a segment stamped older than it when this cache
   * opens it. `false` never resets. The default, the start time of this
   * process's process-group leader, resets an older segment only when
   * nothing that used it is alive any more (docs/multiprocess.md).
   */
  stamp?: number | false;
  /**
   * `false`: attach to an existing segment only; a missing file throws
   * `ERR_SHMCACHE_NOT_FOUND` and nothing is created. Tools that inspect a
   * cache use `{ create: false, stamp: false }`. Default `true`.
   */
  create?: boolean;
  /**
   * `true`: attach read-only, as tools that look at a cache should: the file
   * is opened and mapped read-only, so nothing in it is ever written (no
   * statistics slot, no access hints, no lock taken, no repair), no file
   * lock is waited for, and its pages are not faulted in ahead. Reads work;
   * writes throw `ERR_SHMCACHE_PERMISSION` (`EROFS`). Implies
   * `create: false` and never resets. Default `false`.
   */
  readOnly?: boolean;
  /** Default time to live of entries, in ms; `0` means none. Default `0`. */
  ttl?: number;
  /**
   * How values that are not strings, numbers or byte arrays are serialized:
   * `'msgpack'` (msgpackr with record structures shared through the segment;
   * round-trips what `'v8'` does, storing the few values it could not clone
   * exactly with v8), `'v8'` (`v8.serialize`), `'json'`, or your own codec.
   * `'msgpack'` and `'v8'` read each other's values. Default `'msgpack'`
   * (give `'v8'` to keep writing v8).
   */
  codec?: 'msgpack' | 'v8' | 'json' | Codec<V>;
  /**
   * Process memory this handle may use to keep strings it has read (bytes,
   * or a string such as `'32MB'`; `0`, the default, turns it off). A later
   * `get()` of the same key returns the kept string after checking in the
   * segment that its entry is still the live one: no native call, no copy.
   * Values other than strings are always read from the segment, and pay
   * one more lookup (in the kept strings) while the memo is on. At most 1GB.
   */
  memo?: number | string;
}

/** How a stamp may reset a segment: never, whenever newer, or per the process-group rule. */
export type StampMode = 'never' | 'explicit' | 'group';

export interface ResolvedOptions<V> {
  path: string;
  size: number;
  stamp: number | false;
  stampMode: StampMode;
  create: boolean;
  readOnly: boolean;
  ttl: number;
  codec: Codec<V>;
  memo: number;
}

const KB = 1024;
export const MIN_SIZE = 1024 * KB;
export const MAX_SIZE = 16 * 1024 * 1024 * KB;
const MAX_MEMO = 1024 * KB * KB;
const UNITS: Record<string, number> = { B: 1, KB, MB: KB * KB, GB: KB * KB * KB };

const OPTION_NAMES = new Set(['path', 'size', 'stamp', 'ttl', 'codec', 'memo', 'create', 'readOnly']);

export function parseSize(value: unknown, name = 'size'): number {
  const bytes = parseBytes(value, name);
  if (bytes < MIN_SIZE || bytes > MAX_SIZE) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a size from 1MB to 16GB', name, value);
  }
  return bytes;
}

function parseMemo(value: unknown): number {
  const bytes = parseBytes(value, 'memo');
  if (bytes > MAX_MEMO) throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a size from 0 to 1GB', 'memo', value);
  return bytes;
}

/** A byte count, or a string such as '64MB' (KB = 1024). */
function parseBytes(value: unknown, name: string): number {
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value;
  } else if (typeof value === 'string') {
    const m = /^\s*(\d+)\s*(B|KB|MB|GB)?\s*$/i.exec(value);
    if (!m) throw invalid('ERR_SHMCACHE_INVALID_OPTION', "a byte count or a string like '64MB'", name, value);
    bytes = Number(m[1]) * UNITS[(m[2] ?? 'B').toUpperCase()]!;
  } else {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', "a byte count or a string like '64MB'", name, value);
  }
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', "a byte count or a string like '64MB'", name, value);
  }
  return bytes;
}

/** A time to live: a non-negative safe integer of milliseconds. */
export function parseTtl(value: unknown, name = 'ttl'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a non-negative integer of milliseconds', name, value);
  }
  return value;
}

function parseStamp(value: unknown, name: string): number | false {
  if (value === false) return false;
  if (typeof value === 'string' && /^\d+$/.test(value)) value = Number(value);
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a non-negative integer or false', name, value);
  }
  return value;
}

function parseCodec<V>(value: unknown): Codec<V> {
  if (value === 'v8') return v8Codec as Codec<V>;
  if (value === 'json') return jsonCodec as Codec<V>;
  if (value === 'msgpack') return msgpackCodec as Codec<V>;
  if (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Codec<V>).encode === 'function' &&
    typeof (value as Codec<V>).decode === 'function'
  ) {
    return value as Codec<V>;
  }
  throw invalid('ERR_SHMCACHE_INVALID_OPTION', "'msgpack', 'v8', 'json' or an object with encode and decode", 'codec', value);
}

export function resolveOptions<V>(options: unknown): ResolvedOptions<V> {
  if (typeof options !== 'object' || options === null) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'an options object', 'options', options);
  }
  const o = options as Record<string, unknown>;
  for (const name of Object.keys(o)) {
    if (!OPTION_NAMES.has(name)) {
      throw new ShmCacheError('ERR_SHMCACHE_INVALID_OPTION', `Unknown option ${JSON.stringify(name)}`);
    }
  }
  if (
    typeof o.path !== 'string' ||
    o.path.length === 0 ||
    o.path.includes('\0') ||
    o.path.endsWith('/') ||
    !isWellFormed(o.path)
  ) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a non-empty, well-formed path to a file (not ending in /)', 'path', o.path);
  }
  let stamp: number | false;
  let stampMode: StampMode = 'explicit';
  if (o.stamp !== undefined) stamp = parseStamp(o.stamp, 'stamp');
  else if (process.env.SHMCACHE_STAMP !== undefined) stamp = parseStamp(process.env.SHMCACHE_STAMP, 'SHMCACHE_STAMP');
  else {
    stamp = processGroup.stamp;
    stampMode = 'group';
  }
  if (stamp === false) stampMode = 'never';
  if (o.create !== undefined && typeof o.create !== 'boolean') {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a boolean', 'create', o.create);
  }
  if (o.readOnly !== undefined && typeof o.readOnly !== 'boolean') {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a boolean', 'readOnly', o.readOnly);
  }
  if (o.readOnly === true && o.create === true) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'no create: true with readOnly (a read-only attach creates nothing)', 'create', o.create);
  }
  return {
    path: o.path,
    size: o.size === undefined ? 64 * KB * KB : parseSize(o.size),
    stamp,
    stampMode,
    create: o.readOnly === true ? false : (o.create ?? true),
    readOnly: o.readOnly === true,
    ttl: o.ttl === undefined ? 0 : parseTtl(o.ttl),
    codec: o.codec === undefined ? (msgpackCodec as Codec<V>) : parseCodec<V>(o.codec),
    memo: o.memo === undefined ? 0 : parseMemo(o.memo),
  };
}
