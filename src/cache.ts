import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type { NativeCache } from './binding';
import { nowMs } from './clock';
import type { Codec } from './codecs';
import { v8Codec } from './codecs';
import { entryKey, MISS, MsgpackCodec, msgpackCodec, POINTER_KEY, TAG as MSGPACK_TAG, type StructureStore } from './msgpack';
import { invalid, ShmCacheError } from './errors';
import { makesItsFolder, openSegment } from './open';
import { parseTtl, resolveOptions, type CacheOptions, type ResolvedOptions } from './options';
import { isWellFormed } from './strings';

/** Options of `set()` and `add()`. */
export interface SetOptions {
  /** Time to live in ms; `0` means none. Default: the cache's `ttl`. */
  ttl?: number;
}

/** Options of `incr()` and `decr()`. */
export interface IncrOptions {
  /** Time to live in ms, applied only when the counter is created. Default: the cache's `ttl`. */
  ttl?: number;
  /** Value a missing or expired counter starts from, before `by` is added. Default `0`. */
  initial?: number;
}

/** Options of `remember()`. */
export interface RememberOptions {
  /** Time to live of the produced value in ms. Default: the cache's `ttl`. */
  ttl?: number;
  /** How long to wait for another process's producer, in ms. Default `10000`. */
  wait?: number;
}

/** What `stats()` returns. Counters cover every process using the segment. */
export interface CacheStats {
  /** Absolute path of the segment file. */
  path: string;
  /** Segment size in bytes. */
  size: number;
  /** Bytes held by live entries (headers, keys and values). */
  used: number;
  /**
   * Entries stored (some may have expired and not been reclaimed yet), not
   * counting shmcache's own under `"\0shmcache/"` (as `size`).
   */
  entries: number;
  hits: number;
  misses: number;
  sets: number;
  deletes: number;
  /** Entries dropped to make room. */
  evictions: number;
  /** Expired entries reclaimed. */
  expired: number;
  /** Times damage was found in a shard (or page) and what it touched was dropped. */
  repairs: number;
  /** Times a newer start-time stamp reset the segment. */
  resets: number;
  /** The segment's start-time stamp. */
  stamp: number;
  /** Bumped by every `clear()` and reset. */
  generation: number;
  /** Heap pages, pages not in use, and their size. */
  pages: number;
  freePages: number;
  pageSize: number;
  /** Largest value accepted, in bytes (1/8 of the segment). */
  maxValueSize: number;
  /** Lock shards. */
  shards: number;
}

/** What `info()` returns about a live entry. */
export interface EntryInfo {
  /** How the value is stored: a string, bytes (Buffer/Uint8Array), a number, or codec output. */
  type: 'string' | 'bytes' | 'number' | 'object';
  /** The stored value's size in bytes (encoded, without key and header). */
  bytes: number;
  /** ms left, as `ttl()`: `0` for no expiry. */
  ttl: number;
}

/** What `verify()` returns. */
export interface VerifyResult {
  ok: boolean;
  problems: string[];
}

// Value types as the segment records them.
const T_STRING = 1;
const T_BYTES = 2;
const T_NUMBER = 3;
const T_CODEC = 4;

const MAX_KEY_BYTES = 1024;
const INITIAL_BUFFER = 64 * 1024;
/**
 * get() copies values into a pool, as Buffer.allocUnsafe() does, and hands
 * Buffers out as views of it (a fresh Buffer per hit costs ten times more).
 * Values up to POOL_VALUE_MAX share a pool of POOL_BYTES; larger ones get a
 * pool of their own size.
 */
const POOL_BYTES = 64 * 1024;
const POOL_VALUE_MAX = 4 * 1024;
/** How much of a shard entries() copies per native call (grown for a bucket that needs more). */
const SCAN_BYTES = 64 * 1024;
/**
 * The memo (option `memo`): strings a handle read, kept with what names their
 * entry in the segment, so that reading them again costs a Map lookup and a
 * few loads from the mapping instead of a native call and a copy. Strings
 * longer than MEMO_VALUE_MAX are not kept; MEMO_OVERHEAD estimates a kept
 * string's bytes beyond its characters (the Map slot, the record, headers).
 */
const MEMO_VALUE_MAX = 4 * 1024;
const MEMO_OVERHEAD = 112;
/**
 * Whether plain loads from the mapping happen in program order: on x86-64
 * the CPU never reorders loads with loads, and V8 keeps typed-array loads in
 * order. Elsewhere (arm64) the memo's ordered reads use Atomics.load, which
 * V8 does not inline (~40 ns each here).
 */
const LOADS_IN_ORDER = process.arch === 'x64';
/** The segment header's generation, as a uint32 word of the mapping. */
const GENERATION_WORD = 264 / 4;
const T_ASCII = 6;
const utf8 = new TextEncoder();
/**
 * Keys of shmcache's own entries (the msgpack codec's structures, the Redis
 * tier's machine id) start with this: keys() and entries() without a prefix
 * leave them out.
 */
const RESERVED = '\0shmcache/';
/** The Redis tier's machine id (src/redis/local.ts, MACHINE_KEY): the one reserved key outside the codec. */
export const REDIS_MACHINE_KEY = '\0shmcache/redis machine';
const RESERVED_BYTES = Buffer.from(RESERVED, 'utf8');
function isReserved(buffer: Buffer, at: number, length: number): boolean {
  return length >= RESERVED_BYTES.length && buffer.compare(RESERVED_BYTES, 0, RESERVED_BYTES.length, at, at + RESERVED_BYTES.length) === 0;
}
/** See configuredCodec(). */
let codecOption: (cache: Cache<any>) => Codec<any>;

/**
 * The codec a cache was configured with, as the `codec` option resolved it:
 * for `'msgpack'` the shared segment-free instance (its values define their
 * records inline), not the handle's own (whose values name structures kept
 * in its segment). The Redis tier encodes its wire values with it.
 */
export function configuredCodec<V>(cache: Cache<V>): Codec<V> {
  return codecOption(cache) as Codec<V>;
}

/** The keys of getMany() and deleteMany() as an array: any iterable but a string (its characters are not keys). */
function keyList(keys: Iterable<string>): readonly string[] {
  if (keys === null || typeof keys !== 'object' || typeof (keys as Iterable<string>)[Symbol.iterator] !== 'function' || keys instanceof String) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'an iterable of keys (not a string)', 'keys', keys);
  }
  return Array.isArray(keys) ? keys : Array.from(keys);
}
/** Buffer's own decoders (what toString() calls once it has checked its arguments). */
interface Slices {
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
}

/**
 * A string the memo keeps, and how to know its entry is still the live one
 * (docs/design.md, "The memo"): the segment's generation has not moved
 * (clear, reset), it has not expired, and either its page's version has not
 * moved (nothing in the page was unlinked or reused), or else the entry's
 * header word (key length, type, live flag) still reads the same and its
 * page's epoch has not moved (the page was not reused).
 */
interface MemoEntry {
  value: string;
  /** Word indexes into the mapping: the entry's header word, its page's epoch (version at +1). */
  word: number;
  marks: number;
  expect: number;
  epoch: number;
  version: number;
  generation: number;
  expires: number;
  bytes: number;
}

function checkSafeInteger(value: unknown, name: string): number {
  if (typeof value !== 'number') {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'an integer', name, value);
  }
  if (!Number.isSafeInteger(value)) {
    throw invalid('ERR_SHMCACHE_RANGE', `an integer within ±${Number.MAX_SAFE_INTEGER}`, name, value);
  }
  return value;
}

const KEY_RULE = 'a non-empty, well-formed string of at most 1024 UTF-8 bytes';


/** A per-call options object whose every property is one of `allowed`. */
function optionsObject(value: unknown, name: string, allowed: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'an options object', name, value);
  }
  for (const k in value) {
    if (!allowed.includes(k)) {
      throw new ShmCacheError(
        'ERR_SHMCACHE_INVALID_OPTION',
        `Unknown option ${JSON.stringify(k)} in ${name} (expected ${allowed.map((a) => JSON.stringify(a)).join(', ')})`,
      );
    }
  }
  return value as Record<string, unknown>;
}

const SET_OPTIONS = ['ttl'] as const;
const INCR_OPTIONS = ['ttl', 'initial'] as const;
const REMEMBER_OPTIONS = ['ttl', 'wait'] as const;

/**
 * A key/value cache in a shared memory segment. Every process that opens the
 * same `path` shares its contents. Nothing touches the file until the first
 * operation or `open()`.
 *
 * @typeParam V the type of the values this cache stores.
 */
export class Cache<V = unknown> {
  static {
    codecOption = (cache) => cache.#options.codec;
  }

  readonly #options: ResolvedOptions<V>;
  readonly #codec: Codec<V>;
  #native: NativeCache | undefined;
  #closed = false;
  #absolutePath: string | undefined;
  #size = 0;
  #maxValue = 0;
  #key = Buffer.alloc(MAX_KEY_BYTES + 4);
  #out = Buffer.alloc(0);
  #outNumber = new Float64Array(1);
  #val = Buffer.alloc(0);
  /** From Buffer.allocUnsafeSlow(), so at offset 0 of #poolBuffer. */
  #pool: Buffer = Buffer.alloc(0);
  #poolBuffer = new ArrayBuffer(0);
  /** Where the next value is copied: the pool before it is handed out. */
  #poolOff = 0;
  /** The msgpack codec's view of this handle, once it asked for it. */
  #structures: StructureStore | undefined;
  /** clear() calls made through this handle (the msgpack codec reloads its structures after one). */
  #clears = 0;
  /** remember() claims this handle holds: key -> token. */
  #claims = new Map<string, Buffer>();
  /** The memo, in insertion order; undefined when off or not open. */
  #memo: Map<string, MemoEntry> | undefined;
  #memoBytes = 0;
  #memoAdmit = 0;
  /** The mapping as words and as float64s (for the memo hit counter at #hitsAt). */
  #words = new Int32Array(0);
  #counters = new Float64Array(0);
  #hitsAt = 0;
  /** What the addon says about a string it just read (a MemoInfo, in #out). */
  #info = new Uint32Array(8);
  #infoExpires = new Float64Array(1);
  /** Batches of keys (getMany, deleteMany), packed for the addon, and getMany's results. */
  #batch = Buffer.alloc(0);
  /** #packKeys() calls so far: a getMany whose codec read the cache packs its keys again. */
  #packs = 0;
  #results = new Float64Array(0);
  /** scan()'s destination (entries(), values()). */
  #scanBuffer: Buffer | undefined;

  /** @throws {ShmCacheError} `ERR_SHMCACHE_INVALID_OPTION` for any bad option. */
  constructor(options: CacheOptions<V>) {
    this.#options = resolveOptions<V>(options);
    const codec = this.#options.codec as Codec<unknown>;
    // The built-in binary codecs share msgpack record structures through the
    // segment (src/msgpack.ts): each handle gets its own instance. 'v8'
    // writes v8 but reads msgpack values too, so that handles of one
    // segment with either codec read each other's values.
    if (codec === msgpackCodec) this.#codec = new MsgpackCodec(() => this.#structureStore()) as Codec<V>;
    else if (codec === v8Codec) this.#codec = this.#v8Reading() as Codec<V>;
    else this.#codec = codec as Codec<V>;
  }

  /** 'v8' for this handle: msgpack values (first byte MSGPACK_TAG) go to a msgpack codec. */
  #v8Reading(): Codec<unknown> {
    let mp: MsgpackCodec | undefined;
    return {
      encode: v8Codec.encode,
      decode: (bytes) =>
        bytes[0] === MSGPACK_TAG ? (mp ??= new MsgpackCodec(() => this.#structureStore())).decode(bytes) : v8Codec.decode(bytes),
    };
  }

  /** The reserved-key operations the msgpack codec needs (its structures; see src/msgpack.ts). */
  #structureStore(): StructureStore {
    if (this.#structures !== undefined) return this.#structures;
    this.#handle();
    const store: StructureStore = {
      peek: (key) => this.#peekRaw(key),
      has: (key) => this.has(key),
      add: (key, value) => this.add(key, value as V),
      set: (key, value) => this.set(key, value as V),
      cas: (key, expected, next) => this.cas(key, expected, next),
      delete: (key) => this.delete(key),
      generation: () => this.#clears,
      writable: () => true,
    };
    return (this.#structures = store);
  }

  /**
   * peek() that never calls the codec: a codec value reads as `null`. (The
   * msgpack codec reads its own entries with it, so that a damaged entry
   * cannot send it into itself.)
   */
  #peekRaw(key: string): unknown {
    const klen = this.#writeKey(key);
    const native = this.#handle();
    let r = native.peek(klen, this.#poolOff);
    if (typeof r === 'string') return r;
    if (r === -1) return undefined;
    let pool = this.#pool;
    if (r <= -2) {
      [r, pool] = this.#getRefilled(native, klen, -r - 2, true);
      if (typeof r === 'string') return r;
      if (r === -1) return undefined;
    }
    const shared = pool === this.#pool;
    const off = shared ? this.#poolOff : 0;
    const type = r % 8;
    if (type === T_CODEC) return null;
    if (shared && type === T_BYTES) this.#poolOff = (off + (r - type) / 8 + 7) & ~7;
    return this.#decode(pool, r, off);
  }

  /** The segment path as given (relative paths resolve at open time). */
  get path(): string {
    return this.#absolutePath ?? this.#options.path;
  }

  /**
   * Entries stored, as `stats().entries` (like `Map.size`, it may count
   * expired entries not reclaimed yet), not counting shmcache's own entries
   * under `"\0shmcache/"` (see #reservedCount). Opens the segment on first use.
   */
  get size(): number {
    const native = this.#handle();
    return Math.max(0, native.count() - this.#reservedCount());
  }

  /**
   * How many of the segment's entries are shmcache's own, found by looking
   * up the few keys they can have (no scan): the msgpack codec's version
   * pointer, the list of that version and of the one before (what a writer
   * that died between the two steps of a save leaves), and the Redis tier's
   * machine id. A list whose pointer was evicted or dropped is not found
   * (it stays counted until it is evicted too).
   */
  #reservedCount(): number {
    let n = 0;
    const v = this.#peekRaw(POINTER_KEY);
    if (v !== undefined) {
      n++;
      if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 1) {
        if (this.#hasRaw(entryKey(v))) n++;
        if (v > 1 && this.#hasRaw(entryKey(v - 1))) n++;
      }
    }
    if (this.#hasRaw(REDIS_MACHINE_KEY)) n++;
    return n;
  }

  /** has() in the segment only (reserved keys are never memoized). */
  #hasRaw(key: string): boolean {
    const klen = this.#writeKey(key);
    return this.#handle().has(klen);
  }

  /** The segment's size in bytes once open; before that, the size a new segment would get. */
  get capacity(): number {
    return this.#native ? this.#size : this.#options.size;
  }

  /** Largest value this cache accepts, in bytes (1/8 of the segment). */
  get maxValueSize(): number {
    return this.#native ? this.#maxValue : Math.floor(this.#options.size / 8);
  }

  /** Whether the segment is mapped. */
  get isOpen(): boolean {
    return this.#native !== undefined;
  }

  /**
   * Opens (or creates) the segment now instead of at first use. Idempotent.
   * @throws {ShmCacheError} PERMISSION, NOT_A_SEGMENT, CORRUPT, NO_SPACE, IO, TIMEOUT, CLOSED.
   */
  open(): this {
    this.#handle();
    return this;
  }

  #handle(): NativeCache {
    if (this.#native) return this.#native;
    if (this.#closed) throw new ShmCacheError('ERR_SHMCACHE_CLOSED', 'the cache is closed');
    const { native, file, info } = openSegment(this.#options as ResolvedOptions<unknown>, makesItsFolder.has(this));
    this.#absolutePath = file;
    this.#size = info.size;
    this.#maxValue = info.maxValue;
    this.#out = Buffer.alloc(64);
    this.#val = Buffer.alloc(INITIAL_BUFFER);
    this.#outNumber = new Float64Array(this.#out.buffer, this.#out.byteOffset, 1);
    native.setBuffers(this.#key, this.#out, this.#val);
    this.#pool = Buffer.allocUnsafeSlow(POOL_BYTES);
    this.#poolBuffer = this.#pool.buffer as ArrayBuffer;
    this.#poolOff = 0;
    native.setPool(this.#pool);
    if (this.#options.memo > 0) this.#startMemo(native);
    this.#native = native;
    return native;
  }

  #startMemo(native: NativeCache): void {
    const [mapping, hitsOffset] = native.memoView();
    if (hitsOffset < 0) return; // no statistics slot left: memo hits could not be counted
    try {
      this.#words = new Int32Array(mapping, 0, Math.floor(mapping.byteLength / 4));
      this.#counters = new Float64Array(mapping, 0, Math.floor(mapping.byteLength / 8));
    } catch {
      return; // larger than a typed array may be: no memo
    }
    this.#hitsAt = hitsOffset / 8;
    this.#info = new Uint32Array(this.#out.buffer, this.#out.byteOffset, 8);
    this.#infoExpires = new Float64Array(this.#out.buffer, this.#out.byteOffset + 32, 1);
    this.#memo = new Map();
    this.#memoBytes = 0;
  }

  /** Whether a kept string's entry is still the live one (see MemoEntry). */
  #fresh(m: MemoEntry): boolean {
    const words = this.#words;
    return (
      (words[m.marks + 1] === m.version || this.#revalidate(m)) &&
      words[GENERATION_WORD] === m.generation &&
      (m.expires === 0 || m.expires > nowMs())
    );
  }

  /**
   * Something in the kept entry's page changed: whether the entry itself is
   * still linked where it was. Writers clear an entry's live flag before they
   * bump its page's version, and bump the epoch before they reuse the page's
   * bytes; reading in the opposite order (version, word, epoch) means that a
   * version read here is one at which the entry was still live.
   */
  #revalidate(m: MemoEntry): boolean {
    const words = this.#words;
    let version: number;
    if (LOADS_IN_ORDER) {
      version = words[m.marks + 1]!;
      if (words[m.word] !== m.expect || words[m.marks] !== m.epoch) return false;
    } else {
      version = Atomics.load(words, m.marks + 1);
      if (Atomics.load(words, m.word) !== m.expect || Atomics.load(words, m.marks) !== m.epoch) return false;
    }
    m.version = version;
    return true;
  }

  /** Keeps a string get() just read from the segment, if the addon named its entry. */
  #keep(memo: Map<string, MemoEntry>, key: string, value: string, old: MemoEntry | undefined): void {
    const info = this.#info;
    if (info[0] === 0 || value.length > MEMO_VALUE_MAX) {
      if (old !== undefined) this.#forget(memo, key, old);
      return;
    }
    const bytes = MEMO_OVERHEAD + 2 * key.length + (info[6] === T_ASCII ? 1 : 2) * value.length;
    const cap = this.#options.memo;
    if (old === undefined && this.#memoBytes + bytes > cap) {
      // Full: let one string in eight in, each in place of the oldest kept
      // ones, so that a working set larger than the memo costs little.
      if ((++this.#memoAdmit & 7) !== 0 || bytes > cap) return;
      for (const [k, e] of memo) {
        if (this.#memoBytes + bytes <= cap) break;
        memo.delete(k);
        this.#memoBytes -= e.bytes;
      }
    }
    const m: MemoEntry = old ?? ({} as MemoEntry);
    this.#memoBytes += bytes - (old === undefined ? 0 : old.bytes);
    m.value = value;
    m.word = info[0]!;
    m.expect = info[1]! | 0;
    m.marks = info[2]!;
    m.epoch = info[3]! | 0;
    m.version = info[4]! | 0;
    m.generation = info[5]! | 0;
    m.expires = this.#infoExpires[0]!;
    m.bytes = bytes;
    if (old === undefined) memo.set(key, m);
  }

  #forget(memo: Map<string, MemoEntry>, key: string, m: MemoEntry): void {
    memo.delete(key);
    this.#memoBytes -= m.bytes;
  }

  /** Writes the key into the shared key buffer; returns its byte length. */
  #writeKey(key: unknown): number {
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_BYTES) {
      throw invalid('ERR_SHMCACHE_INVALID_KEY', KEY_RULE, 'key', key);
    }
    // Short ASCII keys (the common case) are copied by hand: cheaper than a
    // call into Buffer.write.
    const len = key.length;
    if (len <= 48) {
      const bytes = this.#key;
      let i = 0;
      for (; i < len; i++) {
        const c = key.charCodeAt(i);
        if (c > 0x7f) break;
        bytes[i] = c;
      }
      if (i === len) return len;
    }
    // A lone surrogate would be written as U+FFFD: two keys, one entry.
    if (!isWellFormed(key)) throw invalid('ERR_SHMCACHE_INVALID_KEY', KEY_RULE, 'key', key);
    const n = this.#key.write(key, 0, 'utf8');
    if (n > MAX_KEY_BYTES) throw invalid('ERR_SHMCACHE_INVALID_KEY', KEY_RULE, 'key', key);
    return n;
  }

  /**
   * get() for a value that does not fit the rest of the pool (`bytes` long
   * when last seen): a fresh shared pool for small values, a pool of its own
   * for a large one. Loops while a concurrent writer makes the value grow.
   * Returns get()'s result and the pool the value is in, at offset 0.
   */
  #getRefilled(native: NativeCache, klen: number, bytes: number, peek = false): [number | string, Buffer] {
    for (;;) {
      const own = bytes > POOL_VALUE_MAX;
      const pool = Buffer.allocUnsafeSlow(own ? bytes : POOL_BYTES);
      native.setPool(pool);
      const r = peek ? native.peek(klen, 0) : native.get(klen, 0);
      if (own) {
        // The large value's pool is its own: hand it out whole, then go back
        // to the shared pool.
        native.setPool(this.#pool);
      } else {
        this.#pool = pool;
        this.#poolBuffer = pool.buffer as ArrayBuffer;
        this.#poolOff = 0;
      }
      if (typeof r === 'string' || r > -2) return [r, pool];
      bytes = -r - 2;
    }
  }

  #ttl(options: unknown, name: string): number {
    if (options === undefined) return this.#options.ttl;
    const o = optionsObject(options, name, SET_OPTIONS);
    return o.ttl === undefined ? this.#options.ttl : parseTtl(o.ttl, 'ttl');
  }

  /**
   * Returns the live value of `key`, or `undefined` on a miss or expiry.
   * @throws {ShmCacheError} INVALID_KEY, CLOSED, or an open error on first use.
   */
  get(key: string): V | undefined {
    // Kept strings first (only valid keys are ever kept). This is #fresh(),
    // written out: the memo hit is the one path where a call costs.
    const kept = this.#memo?.get(key);
    if (kept !== undefined) {
      const words = this.#words;
      if (
        (words[kept.marks + 1] === kept.version || this.#revalidate(kept)) &&
        words[GENERATION_WORD] === kept.generation &&
        (kept.expires === 0 || kept.expires > nowMs())
      ) {
        // Counted as a read from the segment is. (The entry's access hint
        // was set when the string was read from the segment, and stays set
        // while the entry stays where it is.)
        const counters = this.#counters;
        counters[this.#hitsAt] = counters[this.#hitsAt]! + 1;
        return kept.value as V;
      }
    }
    return this.#read(key, kept);
  }

  /** get() from the segment; `kept` is the key's stale memo entry, if any. */
  #read(key: string, kept: MemoEntry | undefined): V | undefined {
    const memo = this.#memo;
    const klen = this.#writeKey(key);
    const native = this.#handle();
    let r = native.get(klen, this.#poolOff);
    if (typeof r === 'string') {
      if (memo !== undefined) this.#keep(memo, key, r, kept);
      return r as V;
    }
    if (kept !== undefined) this.#forget(memo!, key, kept);
    if (r === -1) return undefined;
    let pool = this.#pool;
    if (r <= -2) {
      [r, pool] = this.#getRefilled(native, klen, -r - 2);
      if (typeof r === 'string') return r as V;
      if (r === -1) return undefined;
    }
    const type = r % 8;
    const length = (r - type) / 8;
    const shared = pool === this.#pool;
    const off = shared ? this.#poolOff : 0;
    if (type === T_NUMBER) return pool.readDoubleLE(off) as V;
    if (type === T_STRING) return pool.toString('utf8', off, off + length) as V;
    // Bytes stay where they were copied: the pool moves past them (8-byte
    // aligned), so no later call writes over a value handed out. (Reading
    // pool.buffer costs a builtin call: the shared pool's is kept.)
    const bytes = Buffer.from(shared ? this.#poolBuffer : (pool.buffer as ArrayBuffer), off, length);
    if (shared) this.#poolOff = (off + length + 7) & ~7;
    if (type === T_BYTES) return bytes as V;
    const value = this.#codec.decode(bytes);
    return value === (MISS as unknown) ? undefined : value;
  }

  /** Whether `key` has a live entry. Does not count as a hit or miss. */
  has(key: string): boolean {
    const kept = this.#memo?.get(key);
    if (kept !== undefined && this.#fresh(kept)) return true;
    const klen = this.#writeKey(key);
    return this.#handle().has(klen);
  }

  /**
   * Encodes `value` and stores it. Returns the native status.
   */
  #store(key: string, value: V, options: unknown, onlyIfAbsent: boolean, name: string): number {
    const klen = this.#writeKey(key);
    const ttl = this.#ttl(options, name);
    const native = this.#handle();
    let type: number;
    let length: number;
    let bytes: Buffer | undefined;
    if (typeof value === 'string') {
      type = T_STRING;
      // The common case: the addon encodes it straight into the value buffer.
      if (value.length * 3 < this.#val.length) return native.set(klen, type, 0, ttl, onlyIfAbsent, value);
      length = Buffer.byteLength(value, 'utf8');
      this.#checkLength(length);
      if (length > this.#val.length) {
        this.#val = Buffer.alloc(Math.max(length, this.#val.length * 2));
        native.setBuffers(this.#key, this.#out, this.#val);
      }
      length = utf8.encodeInto(value, this.#val).written;
    } else if (typeof value === 'number') {
      type = T_NUMBER;
      length = 8;
      this.#val.writeDoubleLE(value, 0);
    } else if (value instanceof Uint8Array) {
      type = T_BYTES;
      bytes = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      length = bytes.length;
    } else {
      type = T_CODEC;
      let encoded: Uint8Array;
      try {
        encoded = this.#codec.encode(value);
      } catch (err) {
        throw new ShmCacheError('ERR_SHMCACHE_ENCODE', `cannot encode the value of ${JSON.stringify(key)}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      }
      if (!(encoded instanceof Uint8Array)) {
        throw new ShmCacheError('ERR_SHMCACHE_ENCODE', `the codec's encode() returned ${typeof encoded}, not a Uint8Array`);
      }
      bytes = Buffer.isBuffer(encoded) ? encoded : Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
      length = bytes.length;
      // The codec may have used the key buffer (msgpack saves structures).
      this.#writeKey(key);
    }
    this.#checkLength(length);
    return bytes === undefined
      ? native.set(klen, type, length, ttl, onlyIfAbsent)
      : native.set(klen, type, length, ttl, onlyIfAbsent, bytes);
  }

  #checkLength(length: number): void {
    if (length > this.#maxValue) {
      throw new ShmCacheError(
        'ERR_SHMCACHE_VALUE_TOO_LARGE',
        `a value of ${length} bytes is larger than this cache's limit of ${this.#maxValue} bytes (1/8 of the segment)`,
      );
    }
  }

  /**
   * Stores `value` under `key`, replacing any entry. `set(key, undefined)`
   * deletes the key.
   * @throws {ShmCacheError} INVALID_KEY, INVALID_OPTION, VALUE_TOO_LARGE, ENCODE, CLOSED.
   */
  set(key: string, value: V | undefined, options?: SetOptions): void {
    if (value === undefined) {
      this.#ttl(options, 'options');
      this.delete(key);
      return;
    }
    this.#store(key, value, options, false, 'options');
  }

  /**
   * Stores `value` only if `key` has no live entry.
   * @returns `true` if stored, `false` if a live entry was there.
   * @throws {ShmCacheError} as `set()`; ENCODE for `undefined`.
   */
  add(key: string, value: V, options?: SetOptions): boolean {
    if (value === undefined) {
      this.#writeKey(key);
      throw new ShmCacheError('ERR_SHMCACHE_ENCODE', 'undefined cannot be stored (a miss reads as undefined)');
    }
    return this.#store(key, value, options, true, 'options') === 0;
  }

  /**
   * Removes `key`.
   * @returns `true` if a live entry was removed.
   */
  delete(key: string): boolean {
    const klen = this.#writeKey(key);
    const native = this.#handle();
    const kept = this.#memo?.get(key);
    if (kept !== undefined) this.#forget(this.#memo!, key, kept);
    return native.delete(klen);
  }

  /**
   * Adds `by` to the integer counter at `key`, atomically across processes.
   * A missing or expired key starts at `initial`; `ttl` applies only when
   * the counter is created.
   * @returns the new value.
   * @throws {ShmCacheError} NOT_NUMBER if the entry is not an integer; RANGE if
   *   the result would leave the safe integer range (nothing changes).
   */
  incr(key: string, by: number = 1, options?: IncrOptions): number {
    const klen = this.#writeKey(key);
    checkSafeInteger(by, 'by');
    const o = optionsObject(options, 'options', INCR_OPTIONS);
    const ttl = o.ttl === undefined ? this.#options.ttl : parseTtl(o.ttl, 'ttl');
    const initial = o.initial === undefined ? 0 : checkSafeInteger(o.initial, 'initial');
    const native = this.#handle();
    const status = native.incr(klen, by, initial, ttl);
    if (status === 0) return this.#outNumber[0]!;
    if (status === 2) {
      throw new ShmCacheError('ERR_SHMCACHE_NOT_NUMBER', `the value of ${JSON.stringify(key)} is not an integer`);
    }
    throw new ShmCacheError(
      'ERR_SHMCACHE_RANGE',
      `adding ${by} to ${JSON.stringify(key)} leaves the safe integer range (±${Number.MAX_SAFE_INTEGER})`,
    );
  }

  /** `incr(key, -by, options)`. */
  decr(key: string, by: number = 1, options?: IncrOptions): number {
    checkSafeInteger(by, 'by');
    return this.incr(key, -by, options);
  }

  /**
   * Replaces the integer at `key` with `next` if it equals `expected`,
   * atomically across processes. Never creates the key.
   * @returns `false` if the key is missing, not an integer, or not equal.
   */
  cas(key: string, expected: number, next: number): boolean {
    const klen = this.#writeKey(key);
    checkSafeInteger(expected, 'expected');
    checkSafeInteger(next, 'next');
    const native = this.#handle();
    return native.cas(klen, expected, next) === 0;
  }

  /**
   * Returns the live value of `key`; if there is none, exactly one caller
   * across all processes runs `producer` (sync or async) and stores what it
   * returns, while the others wait for that value. A producer that throws
   * stores nothing and its error goes to its own caller only; another
   * waiter then takes over. A claimant process that dies frees its claim.
   * @throws {ShmCacheError} TIMEOUT when no value arrives within `wait` ms;
   *   INVALID_KEY, INVALID_OPTION, CLOSED; whatever `producer` throws (to
   *   its own caller); as `set()` when storing the produced value.
   */
  async remember(key: string, producer: () => V | Promise<V>, options?: RememberOptions): Promise<V> {
    this.#writeKey(key);
    if (typeof producer !== 'function') throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a function', 'producer', producer);
    const o = optionsObject(options, 'options', REMEMBER_OPTIONS);
    const ttl = o.ttl === undefined ? this.#options.ttl : parseTtl(o.ttl, 'ttl');
    const wait = o.wait === undefined ? 10_000 : parseTtl(o.wait, 'wait');
    const cached = this.get(key);
    if (cached !== undefined) return cached;
    const token = randomBytes(8);
    const deadline = Date.now() + wait;
    let delay = 1;
    for (;;) {
      const native = this.#handle();
      const klen = this.#writeKey(key);
      token.copy(this.#val, 0);
      const status = native.claim(klen);
      if (status === 0) {
        this.#claims.set(key, token);
        try {
          return await this.#produce(key, producer, ttl, token);
        } finally {
          this.#claims.delete(key);
        }
      }
      if (status === 1) {
        const value = this.get(key);
        if (value !== undefined) return value;
        continue; // gone again: try to claim it
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ShmCacheError(
          'ERR_SHMCACHE_TIMEOUT',
          `waited ${wait} ms for another process to produce ${JSON.stringify(key)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, left)));
      delay = Math.min(delay * 2, 20);
    }
  }

  async #produce(key: string, producer: () => V | Promise<V>, ttl: number, token: Buffer): Promise<V> {
    let value: V;
    try {
      value = await producer();
      if (value !== undefined) this.set(key, value, { ttl }); // replaces the claim
      else this.#release(key, token);
    } catch (err) {
      this.#release(key, token);
      throw err;
    }
    return value;
  }

  #release(key: string, token: Buffer): void {
    const native = this.#native;
    if (!native) return; // closed meanwhile: the claim dies with this process
    const klen = this.#writeKey(key);
    token.copy(this.#val, 0);
    native.release(klen);
  }

  /** Live keys, optionally only those starting with `prefix`. */
  keys(prefix: string = ''): string[] {
    if (typeof prefix !== 'string' || !isWellFormed(prefix)) {
      throw invalid('ERR_SHMCACHE_INVALID_KEY', 'a well-formed string', 'prefix', prefix);
    }
    const native = this.#handle();
    if (prefix.length > MAX_KEY_BYTES) return [];
    const n = this.#key.write(prefix, 0, 'utf8');
    if (n > MAX_KEY_BYTES) return [];
    const keys = native.keys(n);
    return n === 0 ? keys.filter((k) => !k.startsWith(RESERVED)) : keys;
  }

  /**
   * Writes `key` into the batch buffer at `at + 2`, its byte length at `at`.
   * Returns the bytes taken (2 + length).
   */
  #packKey(key: unknown, at: number): number {
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_BYTES) {
      throw invalid('ERR_SHMCACHE_INVALID_KEY', KEY_RULE, 'key', key);
    }
    if (this.#batch.length < at + 2 + 3 * key.length) {
      const grown = Buffer.allocUnsafe(Math.max(at + 2 + 3 * key.length, 2 * this.#batch.length, 4096));
      this.#batch.copy(grown, 0, 0, at);
      this.#batch = grown;
    }
    const b = this.#batch;
    const len = key.length;
    let i = 0;
    for (; i < len; i++) {
      const c = key.charCodeAt(i);
      if (c > 0x7f) break;
      b[at + 2 + i] = c;
    }
    let n = len;
    if (i !== len) {
      if (!isWellFormed(key)) throw invalid('ERR_SHMCACHE_INVALID_KEY', KEY_RULE, 'key', key);
      n = b.write(key, at + 2, 'utf8');
      if (n > MAX_KEY_BYTES) throw invalid('ERR_SHMCACHE_INVALID_KEY', KEY_RULE, 'key', key);
    }
    b[at] = n & 0xff;
    b[at + 1] = n >> 8;
    return 2 + n;
  }

  /** Packs `keys` into the batch buffer; returns where each starts (and the end). */
  #packKeys(keys: readonly unknown[]): number[] {
    this.#packs++;
    const starts = new Array<number>(keys.length + 1);
    let at = 0;
    for (let i = 0; i < keys.length; i++) {
      starts[i] = at;
      at += this.#packKey(keys[i], at);
    }
    starts[keys.length] = at;
    return starts;
  }

  /** A value get() copied into `pool` at `off`; `code` is length * 8 + type. */
  #decode(pool: Buffer, code: number, off: number): V {
    const type = code % 8;
    const length = (code - type) / 8;
    if (type === T_NUMBER) return pool.readDoubleLE(off) as V;
    // The slices toString() ends in, without its argument handling.
    if (type === T_ASCII) return (pool as unknown as Slices).latin1Slice(off, off + length) as V;
    if (type === T_STRING) return (pool as unknown as Slices).utf8Slice(off, off + length) as V;
    const bytes = Buffer.from(pool.buffer as ArrayBuffer, pool.byteOffset + off, length);
    if (type === T_BYTES) return bytes as V;
    const value = this.#codec.decode(bytes);
    return value === (MISS as unknown) ? (undefined as V) : value;
  }

  /**
   * The live value of each key, in order (`undefined` for a miss), read in
   * one native call (more only when the read pool runs out). Counts hits and
   * misses as `get()` does.
   * @throws {ShmCacheError} INVALID_KEY (any bad key: nothing is read), CLOSED.
   */
  getMany(keys: Iterable<string>): (V | undefined)[] {
    const list = keyList(keys);
    const n = list.length;
    let starts = this.#packKeys(list);
    let packs = this.#packs;
    let base = 0; // the key starts[0] is for
    const native = this.#handle();
    if (this.#results.length < 2 * n) this.#results = new Float64Array(Math.max(2 * n, 2 * this.#results.length));
    const results = this.#results;
    const out = new Array<V | undefined>(n);
    let i = 0;
    while (i < n) {
      if (this.#packs !== packs) {
        // A codec's decode() packed keys of its own over these.
        starts = this.#packKeys(list.slice(i));
        packs = this.#packs;
        base = i;
      }
      const pool = this.#pool;
      const done = native.getMany(this.#batch, starts[i - base]!, n - i, this.#poolOff, results);
      // Bytes and codec values stay where they were copied: the pool moves
      // past the last of them, so no later call writes over one handed out
      // (moved before any is decoded: a codec may read the cache).
      for (let j = done - 1; j >= 0; j--) {
        const code = results[2 * j]!;
        const type = code % 8;
        if (code !== -1 && (type === T_BYTES || type === T_CODEC)) {
          this.#poolOff = (results[2 * j + 1]! + (code - type) / 8 + 7) & ~7;
          break;
        }
      }
      // Codec values last, once every result is taken: decode() may read
      // the cache, which reuses the pool past #poolOff (where the strings
      // are), the results and the batch.
      let codecs: number[] | undefined;
      for (let j = 0; j < done; j++) {
        const code = results[2 * j]!;
        if (code === -1) out[i + j] = undefined;
        else if (code % 8 === T_CODEC) (codecs ??= []).push(i + j, code, results[2 * j + 1]!);
        else out[i + j] = this.#decode(pool, code, results[2 * j + 1]!);
      }
      if (codecs !== undefined) {
        for (let c = 0; c < codecs.length; c += 3) out[codecs[c]!] = this.#decode(pool, codecs[c + 1]!, codecs[c + 2]!);
      }
      i += done;
      if (i === n) break;
      // Key i did not fit the rest of the pool: read it as get() would.
      out[i] = this.#read(list[i]!, undefined);
      i++;
    }
    return out;
  }

  /** Checks a key as every method does; returns its UTF-8 bytes. */
  #keyBytes(key: unknown): Buffer {
    const n = this.#writeKey(key);
    return Buffer.from(this.#key.subarray(0, n));
  }

  /**
   * Stores every `[key, value]` pair, replacing. Every key and value is
   * checked (and encoded) before any is stored: a bad one stores none.
   * @throws {ShmCacheError} INVALID_KEY, INVALID_OPTION, VALUE_TOO_LARGE,
   *   ENCODE (also for an `undefined` value), PERMISSION (read-only), CLOSED.
   */
  setMany(entries: Iterable<readonly [string, V]>, options?: SetOptions): void {
    const ttl = this.#ttl(options, 'options');
    if (entries === null || typeof entries !== 'object' || typeof (entries as Iterable<unknown>)[Symbol.iterator] !== 'function' || entries instanceof String) {
      throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'an iterable of [key, value] pairs', 'entries', entries);
    }
    this.#handle();
    const keys: Buffer[] = [];
    const types: number[] = [];
    const values: (Buffer | string)[] = [];
    const lengths: number[] = [];
    let total = 0;
    for (const pair of entries) {
      if (!Array.isArray(pair)) throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a [key, value] pair', 'entry', pair);
      const [key, value] = pair as [unknown, V | undefined];
      const k = this.#keyBytes(key);
      let type: number;
      let v: Buffer | string;
      let length: number;
      if (typeof value === 'string') {
        type = T_STRING;
        v = value;
        length = Buffer.byteLength(value, 'utf8');
      } else if (typeof value === 'number') {
        type = T_NUMBER;
        v = Buffer.allocUnsafe(8);
        v.writeDoubleLE(value, 0);
        length = 8;
      } else if (value instanceof Uint8Array) {
        type = T_BYTES;
        v = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
        length = v.length;
      } else if (value === undefined) {
        throw new ShmCacheError(
          'ERR_SHMCACHE_ENCODE',
          `the value of ${JSON.stringify(key)} is undefined, which cannot be stored (deleteMany() removes keys)`,
        );
      } else {
        type = T_CODEC;
        v = this.#encodeValue(key as string, value);
        length = v.length;
      }
      this.#checkLength(length);
      keys.push(k);
      types.push(type);
      values.push(v);
      lengths.push(length);
      total += 8 + k.length + length;
    }
    if (keys.length === 0) return;
    const batch = Buffer.allocUnsafe(total);
    let at = 0;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      batch.writeUInt16LE(k.length, at);
      batch[at + 2] = types[i]!;
      batch[at + 3] = 0;
      batch.writeUInt32LE(lengths[i]!, at + 4);
      k.copy(batch, at + 8);
      const v = values[i]!;
      // A value's buffer may have been detached or shrunk since it was
      // checked (the iterable's own code ran in between): every byte of the
      // batch is written, or nothing is stored.
      const length = lengths[i]!;
      const written = typeof v === 'string' ? batch.write(v, at + 8 + k.length, length, 'utf8') : v.length >= length ? v.copy(batch, at + 8 + k.length, 0, length) : -1;
      if (written !== length) {
        throw new ShmCacheError('ERR_SHMCACHE_ENCODE', `the value of ${JSON.stringify(k.toString())} changed size while setMany() read the batch (its buffer was detached or resized)`);
      }
      at += 8 + k.length + length;
    }
    this.#native!.setMany(batch, keys.length, ttl);
  }

  /** The codec's bytes for `value`, as set() makes them. */
  #encodeValue(key: string, value: V): Buffer {
    let encoded: Uint8Array;
    try {
      encoded = this.#codec.encode(value);
    } catch (err) {
      throw new ShmCacheError('ERR_SHMCACHE_ENCODE', `cannot encode the value of ${JSON.stringify(key)}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    if (!(encoded instanceof Uint8Array)) {
      throw new ShmCacheError('ERR_SHMCACHE_ENCODE', `the codec's encode() returned ${typeof encoded}, not a Uint8Array`);
    }
    return Buffer.isBuffer(encoded) ? encoded : Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  }

  /**
   * Removes every key, in one native call.
   * @returns how many live entries were removed.
   * @throws {ShmCacheError} INVALID_KEY (any bad key: nothing is removed), PERMISSION, CLOSED.
   */
  deleteMany(keys: Iterable<string>): number {
    const list = keyList(keys);
    this.#packKeys(list);
    const native = this.#handle();
    const memo = this.#memo;
    if (memo !== undefined) {
      for (const key of list) {
        const kept = memo.get(key);
        if (kept !== undefined) this.#forget(memo, key, kept);
      }
    }
    return native.deleteMany(this.#batch, list.length);
  }

  /**
   * Like `get()`, but counts no hit or miss and leaves the entry's access
   * hint alone (it is no likelier to survive eviction for being peeked).
   * @throws {ShmCacheError} INVALID_KEY, CLOSED.
   */
  peek(key: string): V | undefined {
    const klen = this.#writeKey(key);
    const native = this.#handle();
    let r = native.peek(klen, this.#poolOff);
    if (typeof r === 'string') return r as V;
    if (r === -1) return undefined;
    let pool = this.#pool;
    if (r <= -2) {
      [r, pool] = this.#getRefilled(native, klen, -r - 2, true);
      if (typeof r === 'string') return r as V;
      if (r === -1) return undefined;
    }
    const shared = pool === this.#pool;
    const off = shared ? this.#poolOff : 0;
    const type = r % 8;
    if (shared && (type === T_BYTES || type === T_CODEC)) this.#poolOff = (off + (r - type) / 8 + 7) & ~7;
    return this.#decode(pool, r, off);
  }

  /**
   * ms left before `key` expires: `0` when it never does, `undefined` when
   * it is missing or expired. Counts nothing.
   * @throws {ShmCacheError} INVALID_KEY, CLOSED.
   */
  ttl(key: string): number | undefined {
    const klen = this.#writeKey(key);
    const r = this.#handle().ttl(klen);
    return r < 0 ? undefined : r;
  }

  /**
   * Gives the live entry at `key` a new time to live, in place and
   * atomically (`0`: none), from now. Its value and place are unchanged.
   * @returns `false` when there is no live entry.
   * @throws {ShmCacheError} INVALID_KEY, INVALID_OPTION (bad ttl), PERMISSION, CLOSED.
   */
  touch(key: string, ttl: number): boolean {
    const klen = this.#writeKey(key);
    const ms = parseTtl(ttl, 'ttl');
    const native = this.#handle();
    const kept = this.#memo?.get(key);
    if (kept !== undefined) this.#forget(this.#memo!, key, kept);
    return native.touch(klen, ms);
  }

  /**
   * What is stored at `key`: its type, its size in bytes and its TTL, or
   * `undefined` when missing or expired. Reads no value, counts nothing.
   * @throws {ShmCacheError} INVALID_KEY, CLOSED.
   */
  info(key: string): EntryInfo | undefined {
    const klen = this.#writeKey(key);
    const r = this.#handle().info(klen);
    if (r === undefined) return undefined;
    const [type, bytes, ttl] = r;
    const name = type === T_NUMBER ? 'number' : type === T_BYTES ? 'bytes' : type === T_CODEC ? 'object' : 'string';
    return { type: name, bytes, ttl };
  }

  /**
   * Live `[key, value]` pairs, optionally only those whose key starts with
   * `prefix`, shard by shard: each step copies a chunk of one shard's
   * entries (under its lock, or between two equal sequences on a read-only
   * handle) and no lock is held between steps, so other processes go on
   * writing. An entry changed meanwhile may or may not appear; none is ever
   * torn, and none appears twice unless it was replaced meanwhile.
   * @throws {ShmCacheError} INVALID_KEY (prefix not a well-formed string), CLOSED.
   */
  entries(prefix: string = ''): IterableIterator<[string, V]> {
    if (typeof prefix !== 'string' || !isWellFormed(prefix)) {
      throw invalid('ERR_SHMCACHE_INVALID_KEY', 'a well-formed string', 'prefix', prefix);
    }
    this.#handle();
    return this.#scan(Buffer.from(prefix, 'utf8'));
  }

  *#scan(pfx: Buffer): IterableIterator<[string, V]> {
    if (pfx.length > MAX_KEY_BYTES) return;
    let shards = 1;
    for (let shard = 0; shard < shards; shard++) {
      let cursor = 0;
      while (cursor >= 0) {
        const native = this.#handle();
        pfx.copy(this.#key, 0);
        const buffer = (this.#scanBuffer ??= Buffer.allocUnsafe(SCAN_BYTES));
        const [next, count, need, total] = native.scan(shard, cursor, pfx.length, buffer);
        shards = total;
        if (need > 0) {
          this.#scanBuffer = Buffer.allocUnsafe(Math.max(need, 2 * buffer.length));
          continue;
        }
        cursor = next;
        // Decoded whole before the first is yielded: the buffer is reused.
        const chunk: [string, V][] = [];
        let at = 0;
        for (let i = 0; i < count; i++) {
          const vlen = buffer.readUInt32LE(at);
          const klen = buffer.readUInt16LE(at + 4);
          const type = buffer[at + 6]!;
          const k = at + 16;
          const v = k + klen;
          const slices = buffer as unknown as Slices;
          if (buffer[k] === 0 && pfx.length === 0 && isReserved(buffer, k, klen)) {
            at += (16 + klen + vlen + 7) & ~7;
            continue;
          }
          const key = slices.utf8Slice(k, v);
          let value: V;
          if (type === T_NUMBER) value = buffer.readDoubleLE(v) as V;
          else if (type === T_ASCII) value = slices.latin1Slice(v, v + vlen) as V;
          else if (type === T_STRING) value = slices.utf8Slice(v, v + vlen) as V;
          else {
            const bytes = Buffer.from(buffer.subarray(v, v + vlen)); // a copy
            value = (type === T_BYTES ? bytes : this.#codec.decode(bytes)) as V;
            if (value === (MISS as unknown)) {
              at += (16 + klen + vlen + 7) & ~7;
              continue;
            }
          }
          chunk.push([key, value]);
          at += (16 + klen + vlen + 7) & ~7;
        }
        yield* chunk;
      }
    }
  }

  /** Live values, as `entries(prefix)` walks them. */
  values(prefix: string = ''): IterableIterator<V> {
    const entries = this.entries(prefix);
    return (function* () {
      for (const [, value] of entries) yield value;
    })();
  }

  /** `entries()`: `for (const [key, value] of cache)`. */
  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }

  /** Drops every entry of this segment (other segments are untouched). */
  clear(): void {
    this.#handle().clear();
    this.#clears++;
    this.#memo?.clear();
    this.#memoBytes = 0;
  }

  /** Counters and sizes of the segment, summed over every process. */
  stats(): CacheStats {
    const s = this.#handle().stats();
    // Not shmcache's own entries, as `size`.
    s.entries = Math.max(0, (s.entries ?? 0) - this.#reservedCount());
    return { path: this.#absolutePath!, ...s } as unknown as CacheStats;
  }

  /**
   * Walks every structure of the segment and checks it. A damaged shard is
   * reported and dropped (its entries are lost, the rest stay).
   */
  verify(): VerifyResult {
    const problems = this.#handle().verify();
    return { ok: problems.length === 0, problems };
  }

  /** Unmaps the segment. Idempotent; later calls throw `ERR_SHMCACHE_CLOSED`. */
  close(): void {
    this.#closed = true;
    if (this.#native) {
      // Claims of producers still running are dropped so that waiters in
      // other processes take over instead of timing out.
      for (const [key, token] of this.#claims) this.#release(key, token);
      this.#claims.clear();
      this.#memo = undefined;
      this.#memoBytes = 0;
      this.#native.close();
      this.#native = undefined;
      this.#words = new Int32Array(0);
      this.#counters = new Float64Array(0);
    }
  }
}
