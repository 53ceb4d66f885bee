/**
 * Looking at entries without disturbing them, through one adapter over the
 * Cache API: `peek()` and `info()` (DESIGN §1) when the core has them; until
 * then `get()` (which counts a hit and marks the entry used) with the type
 * taken from the value and the TTL unknown (null).
 */
import { Buffer } from 'node:buffer';
import { deserialize, serialize } from 'node:v8';
import type { Cache } from '../index';
import { MISS, MsgpackCodec, TAG as MSGPACK_TAG, type StructureStore } from '../msgpack';
import { visible } from './format';

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
    return { key, ...info, preview: undecodable('v8', err), truncated: false };
  }
  if (value === undefined) return undefined; // gone meanwhile
  if (info.type === 'object' && value instanceof Uint8Array) {
    // A handle with RAW_CODEC: the stored bytes, decoded here.
    const d = decodeStored(cache, value);
    if ('undecodable' in d) return { key, ...info, preview: d.undecodable, truncated: false };
    value = d.value;
  }
  return { key, ...info, ...preview(value) };
}

/**
 * The stored bytes of an object value (a RAW_CODEC handle's), decoded the
 * way the built-in codecs read them: a msgpack value (first byte 0xc1) with
 * a msgpack codec bound to `cache`'s shared structures, read-only (see
 * readOnlyStructures), anything else with v8.deserialize. Values are a
 * tenant's: msgpackr and v8 throw on declared lengths past the end and on
 * nesting deeper than the stack (no allocation of what a length declares,
 * no recursion past the stack limit), which reads as `undecodable`; a
 * value whose structures are gone or differ reads as "structures gone",
 * never as other data. A fresh codec each time: a hostile value's inline
 * record definitions never stay for the next value.
 */
export function decodeStored(cache: Cache, bytes: Uint8Array): { value: unknown } | { undecodable: string } {
  if (bytes[0] === MSGPACK_TAG) {
    let value: unknown;
    try {
      value = new MsgpackCodec(() => readOnlyStructures(cache)).decode(bytes);
    } catch (err) {
      return { undecodable: undecodable('msgpack', (err as Error)?.cause ?? err) };
    }
    if (value === MISS) {
      return { undecodable: '(cannot decode with the msgpack codec: structures gone: the record structures it was written with are no longer in the segment, or differ)' };
    }
    return { value };
  }
  try {
    return { value: deserialize(bytes) as unknown };
  } catch (err) {
    return { undecodable: undecodable('v8', err) };
  }
}

/** "(cannot decode with the <codec> codec: <why>)", the reason cut and with control and bidi characters escaped (msgpackr quotes the value). */
function undecodable(codec: string, err: unknown): string {
  const why = String((err as Error)?.message ?? err);
  return `(cannot decode with the ${codec} codec: ${visible(why.length > 200 ? why.slice(0, 200) + '…' : why)})`;
}

/**
 * The msgpack codec's reserved-key reads on `cache` (peek and has: no hit
 * or miss counted, nothing marked used) and no write: the tools attach
 * read-only and never define, save, put back or drop structures, even for
 * a damaged pointer (the codec's attempts throw here and it goes on
 * without them).
 */
function readOnlyStructures(cache: Cache): StructureStore {
  const refuse = (): never => {
    throw new Error('the tools never write the msgpack structures');
  };
  return {
    peek: (key) => cache.peek(key),
    has: (key) => cache.has(key),
    add: refuse,
    set: refuse,
    cas: refuse,
    delete: refuse,
    generation: () => 0,
    writable: () => false,
  };
}

/** A value for people: strings cut, bytes as a hex dump, objects through the budgeted walker. */
export function preview(value: unknown): { preview: string; truncated: boolean } {
  if (typeof value === 'string') return cut(value, PREVIEW_CHARS);
  if (typeof value === 'number') return { preview: String(value), truncated: false };
  if (value instanceof Uint8Array) {
    const b = Buffer.from(value.buffer, value.byteOffset, Math.min(value.byteLength, PREVIEW_BYTES));
    return { preview: hexDump(b), truncated: value.byteLength > PREVIEW_BYTES };
  }
  return boundedInspect(value);
}

/** What the preview walker may spend: nodes visited, and characters written. */
export interface Budget {
  nodes: number;
  bytes: number;
}

/** The page's, the entry route's and `get`'s on a terminal. */
export const PREVIEW_BUDGET: Readonly<Budget> = { nodes: 2000, bytes: 4096 };
/** `get --json`'s: more, still bounded. */
export const JSON_BUDGET: Readonly<Budget> = { nodes: 20_000, bytes: 256 * 1024 };

const MAX_ITEMS = 100;
const MAX_STRING = 500;
const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** A string in single quotes, control and bidi characters written as escapes. */
function quote(s: string): string {
  const more = s.length > MAX_STRING ? `... ${s.length - MAX_STRING} more characters` : '';
  return `'${visible(s.slice(0, MAX_STRING).replace(/\\/g, '\\\\').replace(/'/g, "\\'"))}'${more}`;
}

class Walk {
  nodes: number;
  bytes: number;
  truncated = false;
  constructor(budget: Budget) {
    this.nodes = budget.nodes;
    this.bytes = budget.bytes;
  }
  /** Takes one node and `n` characters; false (and truncated) when the budget is spent. */
  take(n: number): boolean {
    if (this.nodes <= 0 || this.bytes < n) {
      this.truncated = true;
      return false;
    }
    this.nodes--;
    this.bytes -= n;
    return true;
  }
}

/**
 * A value as text in the manner of util.inspect, within a budget of nodes
 * and characters whatever the value's shape: a cycle is [Circular], a
 * shared object is walked again at each reference but every visit is paid
 * for, so a DAG that would expand to billions of nodes stops at the budget.
 * Strings and keys have control and bidi characters written as escapes.
 */
export function boundedInspect(value: unknown, budget: Budget = PREVIEW_BUDGET): { preview: string; truncated: boolean } {
  const w = new Walk(budget);
  const stack = new Set<object>();
  const text = inspectNode(value, w, stack, '');
  return { preview: w.truncated ? text + ' …(truncated)' : text, truncated: w.truncated };
}

function keyText(k: string): string {
  return IDENTIFIER.test(k) ? k : quote(k);
}

/** Bits past which a bigint is not written in decimal: V8's conversion is superlinear (a 2 MB bigint, a tenant's value, took 4 s). */
const BIGINT_DECIMAL_BITS = 10_000;

/** A bigint in decimal, or past BIGINT_DECIMAL_BITS bits its first hex digits and its size (in time linear in its size). */
export function bigintText(v: bigint): string {
  const a = v < 0n ? -v : v;
  if (a < 1n << BigInt(BIGINT_DECIMAL_BITS)) return v.toString();
  let hi = BIGINT_DECIMAL_BITS * 2;
  while (1n << BigInt(hi) <= a) hi *= 2;
  let lo = BIGINT_DECIMAL_BITS;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (1n << BigInt(mid) <= a) lo = mid + 1;
    else hi = mid;
  }
  const top = (a >> BigInt(Math.max(0, lo - 64) & ~3)).toString(16);
  return `${v < 0n ? '-' : ''}0x${top}… (a bigint of ${lo} bits)`;
}

function leaf(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return quote(value);
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value);
    case 'bigint':
      return bigintText(value) + 'n';
    case 'boolean':
      return String(value);
    case 'undefined':
      return 'undefined';
    case 'symbol':
      return visible(String(value));
    case 'function':
      return `[Function ${visible(value.name || '(anonymous)')}]`;
  }
  if (value === null) return 'null';
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (value instanceof RegExp) return visible(String(value));
  if (value instanceof Error) return `[${visible(value.name)}: ${visible(value.message.slice(0, MAX_STRING))}]`;
  if (ArrayBuffer.isView(value)) {
    const b = Buffer.from(value.buffer, value.byteOffset, Math.min(value.byteLength, 50));
    const name = value instanceof Buffer ? 'Buffer' : value.constructor?.name ?? 'TypedArray';
    return `<${visible(String(name))} ${[...b].map((x) => x.toString(16).padStart(2, '0')).join(' ')}${value.byteLength > 50 ? ` ... ${value.byteLength - 50} more bytes` : ''}>`;
  }
  if (value instanceof ArrayBuffer) return `ArrayBuffer { byteLength: ${value.byteLength} }`;
  return undefined;
}

function inspectNode(value: unknown, w: Walk, stack: Set<object>, indent: string): string {
  const l = leaf(value);
  if (l !== undefined) return w.take(l.length) ? l : '…';
  const obj = value as object;
  if (stack.has(obj)) return w.take(10) ? '[Circular]' : '…';
  if (!w.take(2)) return '…';
  stack.add(obj);
  try {
    const inner = indent + '  ';
    const parts: string[] = [];
    let open = '{';
    let close = '}';
    let total = 0;
    const add = (k: string | undefined, v: unknown, sep = ': '): boolean => {
      if (parts.length >= MAX_ITEMS || w.nodes <= 0 || w.bytes <= 0) {
        w.truncated = true;
        return false;
      }
      const kt = k === undefined ? '' : k + sep;
      if (!w.take(kt.length + inner.length + 2)) return false; // the key, the indentation and ",\n"
      parts.push(kt + inspectNode(v, w, stack, inner));
      return true;
    };
    if (Array.isArray(value)) {
      open = '[';
      close = ']';
      total = value.length;
      for (let i = 0; i < value.length; i++) if (!add(undefined, value[i])) break;
    } else if (value instanceof Map) {
      open = `Map(${value.size}) {`;
      total = value.size;
      for (const [k, v] of value) if (!add(inspectNode(k, w, stack, inner), v, ' => ')) break;
    } else if (value instanceof Set) {
      open = `Set(${value.size}) {`;
      total = value.size;
      for (const v of value) if (!add(undefined, v)) break;
    } else {
      const keys = Object.keys(obj);
      total = keys.length;
      const name = Object.getPrototypeOf(obj) === null ? '[Object: null prototype] ' : '';
      open = name + '{';
      for (const k of keys) {
        let v: unknown;
        try {
          v = (obj as Record<string, unknown>)[k];
        } catch {
          v = '[getter threw]';
        }
        if (!add(keyText(k), v)) break;
      }
    }
    if (parts.length < total) parts.push(`... ${total - parts.length} more ${parts.length === 0 && total === 1 ? 'item' : 'items'}`);
    if (parts.length === 0) return open + close;
    const flat = `${open} ${parts.join(', ')} ${close}`;
    if (flat.length <= 72 && !flat.includes('\n')) return flat;
    return `${open}\n${parts.map((p) => inner + p).join(',\n')}\n${indent}${close}`;
  } finally {
    stack.delete(obj);
  }
}

/**
 * A value as something JSON.stringify can write, within a budget: bigint
 * as a string, Map as an object, Set as an array, bytes as { base64 }, a
 * cycle as "[Circular]"; truncated when the budget ran out (containers
 * cut short end with a "…" item or key).
 */
export function boundedJson(value: unknown, budget: Budget = JSON_BUDGET): { value: unknown; truncated: boolean } {
  const w = new Walk(budget);
  const stack = new Set<object>();
  const out = jsonNode(value, w, stack, 0);
  return { value: out, truncated: w.truncated };
}

function jsonNode(value: unknown, w: Walk, stack: Set<object>, depth: number): unknown {
  // The indentation `get --json` writes: two spaces a level, on the line
  // that opens a container and the one that closes it (a deep chain of
  // small arrays must not print megabytes of spaces).
  const indent = 4 * depth;
  if (w.bytes < indent) {
    w.truncated = true;
    return '…';
  }
  w.bytes -= indent;
  switch (typeof value) {
    case 'string':
      return w.take(value.length + 2) ? value : '…';
    case 'number':
    case 'boolean':
      return w.take(8) ? value : null;
    case 'bigint': {
      const t = bigintText(value);
      return w.take(t.length + 2) ? t : null;
    }
    case 'undefined':
    case 'function':
    case 'symbol':
      return w.take(4) ? null : null;
  }
  if (value === null) return w.take(4) ? null : null;
  if (value instanceof Date) return w.take(26) ? (Number.isNaN(value.getTime()) ? null : value.toISOString()) : null;
  if (ArrayBuffer.isView(value)) {
    const n = Math.ceil(value.byteLength / 3) * 4 + 16;
    if (!w.take(n)) return '…';
    return { base64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  }
  const obj = value as object;
  if (stack.has(obj)) return w.take(12) ? '[Circular]' : '…';
  if (!w.take(2)) return '…';
  stack.add(obj);
  try {
    if (Array.isArray(value) || value instanceof Set) {
      const out: unknown[] = [];
      for (const v of value as Iterable<unknown>) {
        if (w.nodes <= 0 || w.bytes <= 0) {
          w.truncated = true;
          out.push('…');
          break;
        }
        out.push(jsonNode(v, w, stack, depth + 1));
      }
      return out;
    }
    const entries: Iterable<[unknown, unknown]> = value instanceof Map ? value : Object.entries(obj);
    const out: Record<string, unknown> = {};
    for (const [k, v] of entries) {
      const key = typeof k === 'string' ? k : String(k);
      if (w.nodes <= 0 || !w.take(key.length + 3)) {
        w.truncated = true;
        out['…'] = '…';
        break;
      }
      Object.defineProperty(out, key, { value: jsonNode(v, w, stack, depth + 1), enumerable: true, writable: true, configurable: true });
    }
    return out;
  } finally {
    stack.delete(obj);
  }
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

/** A codec that hands over the stored bytes of an object value undecoded (the tools decode them themselves, or not at all). */
export const RAW_CODEC = {
  encode: (): Uint8Array => {
    throw Object.assign(new Error('the raw codec only reads'), { code: 'ERR_SHMCACHE_ENCODE' });
  },
  decode: (b: Uint8Array): unknown => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
};

/** The `n` smallest keys of `keys`, sorted, and how many there were: a bounded max-heap, no global sort. */
export function sortedWindow(keys: Iterable<string>, n: number): { keys: string[]; total: number } {
  const heap = new KeyHeap(n);
  let total = 0;
  for (const k of keys) {
    total++;
    heap.push(k);
  }
  return { keys: heap.sorted(), total };
}

/**
 * sortedWindow() over `cache.entries(prefix)` in slices: at most `sliceMs`
 * of work between two turns of the event loop (setImmediate), so that a
 * segment of millions of keys never blocks the server for long. The
 * handle's codec should not decode (RAW_CODEC): values are not looked at.
 */
export async function scanWindow(cache: Cache, prefix: string, n: number, sliceMs = 10): Promise<{ keys: string[]; total: number }> {
  const heap = new KeyHeap(n);
  let total = 0;
  await turn();
  try {
    let sliceStart = Date.now();
    for (const [key] of cache.entries(prefix)) {
      total++;
      heap.push(key);
      if ((total & 255) === 0 && Date.now() - sliceStart >= sliceMs) {
        pass();
        await new Promise((r) => setImmediate(r));
        await turn();
        sliceStart = Date.now();
      }
    }
  } finally {
    pass();
  }
  return { keys: heap.sorted(), total };
}

// Scans take turns, one slice per turn of the event loop between them all:
// several at once cost the other requests no more than one does.
let scanning = false;
const waiting: (() => void)[] = [];
function turn(): Promise<void> {
  if (!scanning) {
    scanning = true;
    return Promise.resolve();
  }
  return new Promise((r) => waiting.push(r));
}
function pass(): void {
  const next = waiting.shift();
  if (next) setImmediate(next);
  else scanning = false;
}

/** A max-heap of the `cap` smallest strings seen. */
class KeyHeap {
  readonly #a: string[] = [];
  constructor(readonly cap: number) {}
  push(k: string): void {
    const a = this.#a;
    if (this.cap <= 0) return;
    if (a.length < this.cap) {
      a.push(k);
      let i = a.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (a[p]! >= a[i]!) break;
        [a[p], a[i]] = [a[i]!, a[p]!];
        i = p;
      }
      return;
    }
    if (k >= a[0]!) return;
    a[0] = k;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && a[l]! > a[m]!) m = l;
      if (r < a.length && a[r]! > a[m]!) m = r;
      if (m === i) break;
      [a[m], a[i]] = [a[i]!, a[m]!];
      i = m;
    }
  }
  sorted(): string[] {
    return [...this.#a].sort();
  }
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

/**
 * What the segment says of damage, for a warning: the problems verify()
 * finds (a read-only handle only reports them) when the segment holds at
 * most `verifyUpTo` entries, and the repairs counter.
 */
export function damageNote(cache: Cache, verifyUpTo: number): string | undefined {
  const s = cache.stats();
  const repaired = s.repairs > 0 ? `; it has repaired damage ${s.repairs} ${s.repairs === 1 ? 'time' : 'times'} before` : '';
  if (s.entries <= verifyUpTo) {
    const r = cache.verify();
    if (!r.ok) {
      return `${visible(s.path)} is damaged: ${r.problems.length} ${r.problems.length === 1 ? 'problem' : 'problems'} (shmcache verify lists them; nothing was repaired)${repaired}`;
    }
  }
  return repaired === '' ? undefined : `${visible(s.path)}${repaired.replace(/^; it/, '')} (shmcache verify checks it now)`;
}

