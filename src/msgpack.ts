import { randomInt } from 'node:crypto';
import * as v8 from 'node:v8';
import { Packr, RESERVE_START_SPACE } from 'msgpackr';
import type { Codec } from './codecs';
import { ShmCacheError } from './errors';
import { isWellFormed } from './strings';

/**
 * The 'msgpack' codec: msgpackr with record structures that the processes
 * of a segment share through it (docs/design.md, "Shared record structures").
 *
 * A value it writes is HEADER bytes, then msgpackr's bytes:
 *   [0] TAG (0xc1, a byte MessagePack never uses and v8.serialize never
 *       starts with: it starts with 0xff);
 *   [1..2] n, uint16 LE: how many shared structures the encoder had;
 *   [3..6] uint32 LE: the hash of those n structures (a chain, see #chain).
 * A reader decodes it only if its own first n structures hash the same;
 * otherwise it reloads them from the segment, and if they still differ the
 * value reads as a miss. Values msgpackr would not round-trip as v8 does
 * (see `sameAsV8`) are stored with v8.serialize instead; decode tells the
 * two apart by the first byte.
 */
export const TAG = 0xc1;
const HEADER = 7;
const MAX_SHARED = 32;
/** The integer version of the structure list, and the list of each version. */
export const POINTER_KEY = '\0shmcache/msgpack';
export const entryKey = (version: number): string => `\0shmcache/msgpack/${version}`;
/** 'SMP1': an entry's first four bytes. */
const ENTRY_MAGIC = 0x31504d53;
/** How often (ms, checked on encode) a handle makes sure its structures are still the segment's. */
const CHECK_MS = 1000;
/** Saves that may fail in a row (others saving meanwhile) before this handle stops sharing new structures for a while. */
const MAX_SAVE_TRIES = 16;

/** What decode() returns for a value encoded against structures this handle cannot get: a miss. */
export const MISS: unique symbol = Symbol('shmcache.miss');

/** The few operations on reserved keys the codec needs, from its Cache. */
export interface StructureStore {
  peek(key: string): unknown;
  has(key: string): boolean;
  add(key: string, value: number): boolean;
  set(key: string, value: Buffer): void;
  cas(key: string, expected: number, next: number): boolean;
  delete(key: string): boolean;
  /** The segment's generation (bumped by clear() and by a stamp reset). */
  generation(): number;
  /** Whether writes are allowed (a read-only handle never saves). */
  writable(): boolean;
}

type Structure = string[];

const FNV_BASIS = 0x811c9dc5;
function fnv(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Whether msgpackr (structuredClone, records) gives back exactly what
 * v8.deserialize(v8.serialize(value)) would. It does not for -0 inside a
 * value, holes in arrays, Errors (v8 keeps the stack), boxed primitives, an
 * own `__proto__` key, class instances, functions, symbols and
 * SharedArrayBuffers: such values are stored with v8 (which also throws for
 * what it cannot clone).
 */
export function sameAsV8(value: unknown): boolean {
  budget = SHALLOW_NODES;
  try {
    return walk(value, 0, undefined);
  } catch (e) {
    if (e !== DEEP) throw e;
    return walk(value, 0, new Set());
  }
}

const DEEP = Symbol('deep');
/**
 * Objects the walk without a cycle check visits before it starts over with
 * one: a value that shares references (a DAG, `Array(50).fill(inner)`) has
 * exponentially more paths than objects, and only the checked walk visits
 * each object once.
 */
const SHALLOW_NODES = 10_000;
let budget = 0;
const OBJECT_PROTO = Object.prototype;

function walk(v: unknown, depth: number, seen: Set<object> | undefined): boolean {
  switch (typeof v) {
    case 'number':
      return v !== 0 || 1 / v > 0;
    case 'string':
      return v.length < 1 || isWellFormed(v); // msgpack strings are UTF-8: a lone surrogate would not come back
    case 'boolean':
    case 'bigint':
    case 'undefined':
      return true;
    case 'object':
      break;
    default:
      return false; // function, symbol
  }
  if (v === null) return true;
  const o = v as object;
  // Shallow values need no cycle check; deep ones start over with one.
  if (seen === undefined) {
    if (depth > 24 || --budget < 0) throw DEEP;
  } else {
    if (seen.has(o)) return true;
    seen.add(o);
  }
  const d = depth + 1;
  if (Array.isArray(o)) {
    if (Object.getPrototypeOf(o) !== Array.prototype) return false;
    for (let i = 0; i < o.length; i++) {
      const x: unknown = o[i];
      if (x === undefined && !(i in o)) return false; // a hole
      if (!walk(x, d, seen)) return false;
    }
    return true;
  }
  const proto: unknown = Object.getPrototypeOf(o);
  if (proto === OBJECT_PROTO || proto === null) {
    if (Object.hasOwn(o, '__proto__')) return false;
    for (const k in o) {
      if (!walk((o as Record<string, unknown>)[k], d, seen)) return false;
    }
    return true;
  }
  if (ArrayBuffer.isView(o) || o instanceof Date || o instanceof RegExp || o instanceof ArrayBuffer) return true;
  if (o instanceof Map) {
    for (const [k, x] of o) if (!walk(k, d, seen) || !walk(x, d, seen)) return false;
    return true;
  }
  if (o instanceof Set) {
    for (const x of o) if (!walk(x, d, seen)) return false;
    return true;
  }
  return false; // Error, boxed primitives, class instances, SharedArrayBuffer, WeakMap...
}

const PACKR_OPTIONS = {
  structuredClone: true,
  moreTypes: true,
  useRecords: true,
  int64AsType: 'bigint' as const,
  maxSharedStructures: MAX_SHARED,
};

/** Waits ~50 µs (a save claims its version, then writes its entry: this is the gap between the two). */
function spin(): void {
  const end = process.hrtime.bigint() + 50_000n;
  while (process.hrtime.bigint() < end);
}

/** A write the codec can do without (on a read-only handle it throws PERMISSION). */
function tryWrite(write: () => unknown): void {
  try {
    write();
  } catch {
    // nothing lost: the next handle that can write does it
  }
}

function corrupt(err: unknown): ShmCacheError {
  return new ShmCacheError('ERR_SHMCACHE_CORRUPT', `a codec value cannot be decoded: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
  });
}

/** A structure list entry's bytes: magic, version, hash of the JSON, JSON. */
function entryBytes(list: readonly Structure[], version: number): Buffer {
  const json = Buffer.from(JSON.stringify(list.map((s) => Array.from(s, String))), 'utf8');
  const out = Buffer.allocUnsafe(16 + json.length);
  out.writeUInt32LE(ENTRY_MAGIC, 0);
  out.writeUInt32LE(version % 2 ** 32, 4);
  out.writeUInt32LE(Math.floor(version / 2 ** 32), 8);
  out.writeUInt32LE(fnv(FNV_BASIS, json.toString('latin1')), 12);
  json.copy(out, 16);
  return out;
}

/** The list an entry holds, or undefined for anything else (missing, damaged, another version). */
function parseEntry(bytes: unknown, version: number): Structure[] | undefined {
  if (!(bytes instanceof Uint8Array) || bytes.length < 16) return undefined;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.readUInt32LE(0) !== ENTRY_MAGIC) return undefined;
  if (b.readUInt32LE(4) + b.readUInt32LE(8) * 2 ** 32 !== version) return undefined;
  const json = b.subarray(16);
  if (fnv(FNV_BASIS, json.toString('latin1')) !== b.readUInt32LE(12)) return undefined;
  let list: unknown;
  try {
    list = JSON.parse(json.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(list) || list.length > MAX_SHARED) return undefined;
  for (const s of list) {
    if (!Array.isArray(s) || s.length === 0 || s.length > 65535 || !s.every((k) => typeof k === 'string')) return undefined;
  }
  return list as Structure[];
}

/**
 * One handle's msgpack codec. `store` is called only once the segment is
 * open (the first encode or decode of a msgpack value that needs shared
 * structures); it gives the reserved-key operations of the Cache.
 */
export class MsgpackCodec implements Codec<unknown> {
  readonly #store: (() => StructureStore) | undefined;
  #packr: Packr | undefined;
  /** The list #packr encodes against, and the hash of each of its prefixes. */
  #list: Structure[] = [];
  #hashes: number[] = [FNV_BASIS];
  #hashedLength = 0;
  /** The version of the list in the segment this handle last loaded or saved (0: none). */
  #version = 0;
  /** That version's entry, to put back if it is evicted while still current. */
  #entry: Buffer | undefined;
  #generation = -1;
  #checkedAt = 0;
  #encodes = 0;
  #saveTries = 0;
  /** While saving is given up (too many failed saves), until this time (ms). */
  #noSharingUntil = 0;
  #range = { start: HEADER, end: 0 };
  #encoding = false;

  constructor(store?: () => StructureStore) {
    this.#store = store;
  }

  encode(value: unknown): Uint8Array {
    if (!sameAsV8(value)) return v8.serialize(value);
    const packr = this.#ready(true);
    let out: Buffer;
    this.#encoding = true;
    try {
      out = packr.pack(value, RESERVE_START_SPACE | HEADER) as Buffer;
    } finally {
      this.#encoding = false;
    }
    // The structures as they are after the pack (it may have added some, or
    // reloaded them after a declined save).
    const list = this.#setList((this.#packr as unknown as { structures?: Structure[] }).structures ?? []);
    const n = (list as { sharedLength?: number }).sharedLength ?? 0;
    const h = n === 0 ? FNV_BASIS : this.#chain()[n]!;
    out[0] = TAG;
    out[1] = n & 0xff;
    out[2] = n >> 8;
    out.writeUInt32LE(h, 3);
    return out;
  }

  decode(bytes: Uint8Array): unknown {
    if (bytes[0] !== TAG) {
      try {
        return v8.deserialize(bytes) as unknown;
      } catch (err) {
        throw corrupt(err);
      }
    }
    if (bytes.length < HEADER) throw corrupt(new Error('truncated header'));
    const n = bytes[1]! | (bytes[2]! << 8);
    const h = (bytes[3]! | (bytes[4]! << 8) | (bytes[5]! << 16) | (bytes[6]! << 24)) >>> 0;
    let packr = this.#packr;
    if (packr === undefined || (n !== 0 && !this.#matches(n, h))) {
      packr = this.#ready(false);
      if (n !== 0 && !this.#matches(n, h)) {
        // Not the structures this handle has: reload them if the segment's
        // list is not the one it has loaded, then decide.
        if (!this.#reloadIfChanged() || !this.#matches(n, h)) return MISS;
        packr = this.#packr!;
      }
    }
    const range = this.#range;
    range.end = bytes.length;
    try {
      return packr.unpack(bytes, range);
    } catch (err) {
      throw corrupt(err);
    }
  }

  /** Whether this handle's first `n` shared structures hash to `h`. */
  #matches(n: number, h: number): boolean {
    const list = this.#list;
    if (n > ((list as { sharedLength?: number }).sharedLength ?? 0)) return false;
    return this.#chain()[n] === h;
  }

  #setList(list: Structure[]): Structure[] {
    if (list !== this.#list) {
      this.#list = list;
      this.#hashes = [FNV_BASIS];
      this.#hashedLength = 0;
    }
    return list;
  }

  /** The hash of each prefix of the list: hashes[i] covers structures 0..i-1. */
  #chain(): number[] {
    const list = this.#list;
    const hashes = this.#hashes;
    const n = (list as { sharedLength?: number }).sharedLength ?? list.length;
    for (let i = this.#hashedLength; i < n; i++) {
      const s = list[i]!;
      let h = fnv(hashes[i]!, String(s.length));
      for (const k of s) h = fnv(fnv(h, '\0'), String(k));
      hashes[i + 1] = fnv(h, '\u0001');
    }
    if (n > this.#hashedLength) this.#hashedLength = n;
    return hashes;
  }

  /**
   * The Packr to use. Before an encode, checks (on a clear or reset, and once
   * a second) that the list is still the segment's, and puts this version's
   * entry back if it was evicted.
   */
  #ready(encoding: boolean): Packr {
    const store = this.#store;
    if (store === undefined) return (this.#packr ??= this.#makePackr([]));
    const s = store();
    if (this.#packr === undefined || s.generation() !== this.#generation) {
      this.#use(this.#load(s));
    } else if (encoding && (++this.#encodes & 63) === 0) {
      const now = Date.now();
      if (now - this.#checkedAt >= CHECK_MS) {
        this.#checkedAt = now;
        this.#check(s);
      }
    }
    return this.#packr!;
  }

  #check(s: StructureStore): void {
    const v = s.peek(POINTER_KEY);
    if (v !== this.#version) {
      this.#use(this.#load(s));
    } else if (this.#version !== 0 && this.#entry !== undefined && !s.has(entryKey(this.#version)) && s.writable()) {
      // Evicted while current: put it back as it was (the version is this
      // handle's, so its content is the one that version names).
      const entry = this.#entry;
      tryWrite(() => s.set(entryKey(this.#version), entry));
    }
  }

  /** Reloads when the segment's version is not the loaded one; returns whether it did. */
  #reloadIfChanged(): boolean {
    const store = this.#store;
    if (store === undefined) return false;
    const s = store();
    if (s.peek(POINTER_KEY) === this.#version && s.generation() === this.#generation) return false;
    this.#use(this.#load(s));
    return true;
  }

  #use(list: Structure[]): void {
    this.#packr = this.#makePackr(list);
  }

  #makePackr(list: Structure[]): Packr {
    (list as { sharedLength?: number }).sharedLength = list.length;
    this.#setList(list);
    if (this.#store === undefined) {
      // Values define their records inline: one that refers to a record id
      // it did not define is not one this codec wrote (msgpackr would read
      // the id as a number).
      return new Packr({
        ...PACKR_OPTIONS,
        maxSharedStructures: 0,
        structures: list,
        getStructures: () => {
          throw new Error('a record refers to an undefined structure');
        },
      });
    }
    return new Packr({
      ...PACKR_OPTIONS,
      structures: list,
      getStructures: () => {
        // msgpackr calls this after a declined save, before packing again;
        // while decoding, only for a record id no structure defines
        // (damaged bytes: the hash matched but the value lies).
        if (!this.#encoding) throw new Error('a record refers to an undefined structure');
        return this.#setList(this.#load(this.#store!()));
      },
      saveStructures: (structures: object[]) => this.#save(structures as Structure[]),
    });
  }

  /** The segment's current list (sets #version, #entry, #generation). */
  #load(s: StructureStore): Structure[] {
    this.#generation = s.generation();
    this.#checkedAt = Date.now();
    for (let attempt = 0; attempt < 4; attempt++) {
      const v = s.peek(POINTER_KEY);
      if (v === undefined) {
        this.#version = 0;
        this.#entry = undefined;
        return [];
      }
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
        // Not a version this codec wrote: drop it, a save starts over.
        tryWrite(() => s.delete(POINTER_KEY));
        this.#version = 0;
        this.#entry = undefined;
        return [];
      }
      const bytes = s.peek(entryKey(v));
      const list = parseEntry(bytes, v);
      if (list !== undefined) {
        this.#version = v;
        this.#entry = Buffer.from(bytes as Uint8Array);
        return list;
      }
      if (attempt < 3) {
        spin(); // its writer may be between the two steps of a save
        continue;
      }
      if (s.peek(POINTER_KEY) === v) {
        // Lost (evicted, damaged, or its writer died between the two
        // steps of a save): version v has no structures for this handle.
        this.#version = v;
        this.#entry = undefined;
        return [];
      }
    }
    this.#version = -1; // changing under us: the next check loads again
    this.#entry = undefined;
    return [];
  }

  /**
   * msgpackr's saveStructures: claims the next version with cas() on the
   * pointer (add() when there is none), then writes its entry. `false`
   * (another process saved first) makes msgpackr reload and pack again.
   */
  #save(list: Structure[]): boolean {
    try {
      return this.#trySave(list);
    } catch {
      // A read-only handle (PERMISSION), or the segment failing: the value
      // keeps its structure to itself, and the set() goes on to fail or not.
      return this.#keepLocal(list);
    }
  }

  #trySave(list: Structure[]): boolean {
    const s = this.#store!();
    if (!s.writable() || Date.now() < this.#noSharingUntil || this.#version < 0) return this.#keepLocal(list);
    const base = this.#version;
    let next: number;
    if (base === 0) {
      // A fresh list: a random version, so that a handle still holding a
      // list from before a clear or an eviction never takes it for this one.
      next = randomInt(1, 2 ** 40);
      if (!s.add(POINTER_KEY, next)) return this.#declined(list);
    } else {
      next = base + 1;
      if (!s.cas(POINTER_KEY, base, next)) return this.#declined(list);
    }
    const entry = entryBytes(list, next);
    s.set(entryKey(next), entry);
    if (base !== 0) s.delete(entryKey(base));
    this.#version = next;
    this.#entry = entry;
    this.#saveTries = 0;
    this.#setList(list);
    return true;
  }

  #declined(list: Structure[]): boolean {
    if (++this.#saveTries < MAX_SAVE_TRIES) return false;
    this.#noSharingUntil = Date.now() + CHECK_MS;
    return this.#keepLocal(list);
  }

  /**
   * Keeps a new structure in this handle only: its values then read as
   * misses elsewhere (their hash names structures no one else has), never
   * as other data. The next check loads the segment's list again.
   */
  #keepLocal(list: Structure[]): boolean {
    this.#saveTries = 0;
    this.#setList(list);
    this.#version = -1;
    this.#entry = undefined;
    return true;
  }
}

/** The 'msgpack' codec without a segment (no shared structures): what `codec: 'msgpack'` resolves to before a Cache binds it. */
export const msgpackCodec: Codec<unknown> = new MsgpackCodec();
