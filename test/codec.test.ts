import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import * as v8 from 'node:v8';
import { afterEach, describe, expect, test } from 'vitest';
import { Cache, ShmCacheError } from '../esm/index.mjs';
import { fixtures, runFixture, sharedShapes, tempDir, verifyAndClose } from './helpers';

const tmp = tempDir();
const open: Cache<any>[] = [];
function cache(path: string, options: Record<string, unknown> = {}): Cache<any> {
  const c = new Cache<any>({ path, size: '4MB', stamp: false, codec: 'msgpack', ...options });
  open.push(c);
  return c;
}
afterEach(() => {
  verifyAndClose(open);
});

const POINTER = '\0shmcache/msgpack';
const v8Clone = (v: unknown): unknown => v8.deserialize(v8.serialize(v));

/** What the child fixture sets: a new shape per (id, i). */
const shape = (id: string | number, i: number) => ({
  [`p${id}_${i}`]: i,
  list: [{ [`q${id}_${i}`]: `v${i}`, at: new Date(i) }],
  id,
  i,
});

describe('round trips: everything v8 does, both ways', () => {
  const err = new TypeError('boom');
  const cyclic: any = { a: 1 };
  cyclic.self = cyclic;
  const sharedObj = { x: 1 };
  const sparse = [1, , 3]; // eslint-disable-line no-sparse-arrays
  sparse.length = 6;
  const values: Record<string, unknown> = {
    object: { id: 1, name: 'user 1', tags: ['a', 'b', 'c'], active: true, score: 1.5 },
    list: Array.from({ length: 50 }, (_, i) => ({ id: i, name: `user ${i}`, tags: ['a'], active: i % 2 === 0, score: i * 1.5 })),
    date: new Date(1_700_000_000_123),
    invalidDate: { d: new Date(NaN) },
    map: new Map<unknown, unknown>([[1, 'a'], ['b', { c: 2 }]]),
    mapObjectKey: new Map([[{ k: 1 }, 'v']]),
    dateInMap: new Map([['d', new Date(5)]]),
    set: new Set([1, 'a', { z: 1 }, NaN]),
    bigint: { small: 123n, neg: -(2n ** 63n), huge: 2n ** 100n },
    typed: { u8: new Uint8Array([1, 2]), f64: new Float64Array([1.5, NaN, -0]), i16: new Int16Array([-1]), b64: new BigInt64Array([1n, -2n]) },
    nestedTyped: { t: [new Uint32Array([7]), { u: new Uint8ClampedArray([255]) }], m: new Map([['f', new Float32Array([0.5])]]) },
    buffer: { b: Buffer.from('hi'), sub: Buffer.from('abcdef').subarray(2, 4) },
    arrayBuffer: { ab: new Uint8Array([9, 8]).buffer, dv: new DataView(new Uint8Array([1, 2, 3]).buffer, 1, 2) },
    regexp: { r: /a\sb/gi },
    undefinedInArray: [1, undefined, 3],
    undefinedProperty: { a: undefined, b: 1 },
    numbers: { nan: NaN, inf: -Infinity, big: 2 ** 60, safe: Number.MAX_SAFE_INTEGER, float: 0.1, neg: -(2 ** 40) },
    negativeZero: { z: -0, list: [0, -0] },
    sparse,
    holesOnly: new Array(3),
    error: { e: err },
    rangeError: new RangeError('r'),
    cycle: cyclic,
    sharedIdentity: { a: sharedObj, b: sharedObj },
    boxed: { n: Object(3), s: Object('s'), b: Object(false) },
    protoKey: JSON.parse('{"__proto__": 1, "x": 2}'),
    loneSurrogate: { s: 'a\ud800b' },
    classInstance: new (class Point {
      x = 1;
      y = 2;
    })(),
    nullProto: Object.assign(Object.create(null), { a: 1 }),
    nul: null,
    bool: true,
    unicodeKeys: { ключ: '值', '😀': 1 },
    deep: JSON.parse('['.repeat(60) + ']'.repeat(60)),
  };

  /** What a v8 round trip gives, and the checks deep equality does not make. */
  function expectSame(got: unknown, want: unknown, name: string): void {
    expect(isDeepStrictEqual(got, want) || name === 'invalidDate', name).toBe(true);
    if (name === 'invalidDate') expect(Number.isNaN((got as { d: Date }).d.getTime())).toBe(true);
    if (name === 'negativeZero') {
      expect(Object.is((got as any).z, -0)).toBe(true);
      expect(Object.is((got as any).list[1], -0)).toBe(true);
    }
    if (name === 'typed') expect(Object.is((got as any).f64[2], -0)).toBe(true);
    if (name === 'sparse') {
      expect(1 in (got as unknown[])).toBe(false);
      expect((got as unknown[]).length).toBe(6);
    }
    if (name === 'holesOnly') expect(0 in (got as unknown[])).toBe(false);
    if (name === 'cycle') expect((got as any).self).toBe(got);
    if (name === 'sharedIdentity') expect((got as any).a).toBe((got as any).b);
    if (name === 'error') {
      const e = (got as any).e as Error;
      expect(e).toBeInstanceOf(TypeError);
      expect([e.name, e.message, e.stack]).toEqual([err.name, err.message, err.stack]);
    }
    if (name === 'boxed') expect((got as any).n).toBeInstanceOf(Number);
    if (name === 'protoKey') expect(Object.hasOwn(got as object, '__proto__')).toBe(true);
    if (name === 'loneSurrogate') expect((got as any).s).toBe('a\ud800b');
    if (name === 'buffer') expect(Buffer.isBuffer((got as any).b)).toBe(true);
  }

  for (const [writer, readers] of [
    ['msgpack', ['msgpack', 'v8']],
    ['v8', ['msgpack', 'v8']],
  ] as const) {
    test(`written with ${writer}, read with ${readers.join(' and ')}: as v8 gives it back`, () => {
      const path = tmp.file();
      const w = cache(path, { codec: writer });
      const rs = readers.map((codec) => cache(path, { codec }));
      for (const [k, v] of Object.entries(values)) w.set(k, v);
      for (const r of [w, ...rs]) {
        for (const [k, v] of Object.entries(values)) expectSame(r.get(k), v8Clone(v), `${k} (${writer} -> ${r === w ? writer : 'other'})`.split(' ')[0]!);
        // getMany, peek and entries() decode the same way.
        const keys = Object.keys(values);
        r.getMany(keys).forEach((got, i) => expectSame(got, v8Clone(values[keys[i]!]), keys[i]!));
        expectSame(r.peek('error'), v8Clone(values.error), 'error');
        const seen = new Map(r.entries());
        expect([...seen.keys()].sort()).toEqual(keys.sort());
        expectSame(seen.get('cycle'), v8Clone(values.cycle), 'cycle');
      }
    });
  }

  test('what msgpack stores with v8 (the values it cannot clone as v8 does), and what it stores itself', () => {
    const c = cache(tmp.file());
    // The first stored byte says which: 0xc1 msgpack, 0xff v8.
    const raw = cache(c.path, { codec: { encode: () => new Uint8Array(), decode: (b: Uint8Array) => b[0] } });
    const tag = (v: unknown) => {
      c.set('x', v);
      return raw.get('x');
    };
    expect(tag({ a: 1 })).toBe(0xc1);
    expect(tag([new Map([[1, new Set([2n])]])])).toBe(0xc1);
    expect(tag({ z: -0 })).toBe(0xff);
    expect(tag([1, , 2])).toBe(0xff); // eslint-disable-line no-sparse-arrays
    expect(tag({ e: new Error('x') })).toBe(0xff);
    expect(tag({ s: 'a\udc00' })).toBe(0xff);
    expect(tag(new (class A {})())).toBe(0xff);
  });

  test('what v8 cannot store fails the same way (ERR_SHMCACHE_ENCODE)', () => {
    const c = cache(tmp.file());
    for (const v of [{ f() {} }, { s: Symbol('x') }, { sab: new SharedArrayBuffer(2) }]) {
      expect(() => c.set('x', v)).toThrow(expect.objectContaining({ code: 'ERR_SHMCACHE_ENCODE' }));
    }
  });

  test('strings, numbers and Buffers are stored as before, whatever the codec', () => {
    const c = cache(tmp.file());
    c.set('s', 'str');
    c.set('n', -0);
    c.set('b', Buffer.from([1]));
    expect(c.get('s')).toBe('str');
    expect(Object.is(c.get('n'), -0)).toBe(true);
    expect(c.info('b')!.type).toBe('bytes');
  });
});

describe('values that share references', () => {
  test('a DAG and nested Array.fill() arrays (exponentially many paths) are checked and stored quickly, shared', () => {
    const c = cache(tmp.file());
    const { dag, arrays } = sharedShapes();
    let negzero: any = { z: -0 };
    for (let l = 0; l < 30; l++) negzero = { a: negzero, b: negzero };
    const started = Date.now();
    c.set('dag', dag);
    c.set('arrays', arrays);
    c.set('negzero', negzero); // stored with v8: -0 deep inside
    const d = c.get('dag');
    expect(d.k0).toBe(d.k59); // still shared
    expect(d.k0.k0.k0.k0.k0.k0).toEqual({ leaf: 1 });
    const a = c.get('arrays');
    expect(a[0]).toBe(a[49]);
    expect(a[0][0][0][0][0][0][0]).toEqual([1]);
    let z = c.get('negzero');
    expect(z.a).toBe(z.b);
    for (let l = 0; l < 30; l++) z = z.a;
    expect(Object.is(z.z, -0)).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('shared record structures', () => {
  test('stored under reserved keys that keys() and entries() leave out', () => {
    const c = cache(tmp.file());
    c.set('o', { a: 1, b: 2 });
    expect(c.keys()).toEqual(['o']);
    expect([...c.entries()].map(([k]) => k)).toEqual(['o']);
    const reserved = c.keys('\0');
    expect(reserved).toContain(POINTER);
    expect(typeof c.get(POINTER)).toBe('number');
    expect(reserved).toContain(`${POINTER}/${c.get(POINTER)}`);
    // Shared: the value names its structure instead of carrying it.
    const other = cache(c.path);
    c.set('o2', { a: 3, b: 4 });
    expect(c.info('o2')!.bytes).toBeLessThan(20);
    expect(other.get('o2')).toEqual({ a: 3, b: 4 });
  });

  test('size and stats().entries count the entries you stored, not the reserved ones', () => {
    const c = cache(tmp.file());
    expect(c.size).toBe(0);
    c.set('a', { id: 1, name: 'one', at: new Date(1) });
    c.set('b', { id: 2, tags: new Map([['x', 1]]) });
    c.set('c', [{ id: 3 }, { id: 4, more: true }]);
    expect(c.keys('\0shmcache/').length).toBeGreaterThanOrEqual(2); // the pointer and its list
    expect(c.size).toBe(3);
    expect(c.stats().entries).toBe(3);
    expect(c.keys().sort()).toEqual(['a', 'b', 'c']);
    expect([...c.entries()].map(([k]) => k).sort()).toEqual(['a', 'b', 'c']);
    // Another handle (it loads the structures, adds some) counts the same.
    const other = cache(c.path);
    other.set('d', { fresh: 1, shape: 2 });
    expect(other.size).toBe(4);
    expect(c.size).toBe(4);
    expect(other.stats().entries).toBe(4);
    c.delete('d');
    expect(c.size).toBe(3);
    // A read-only handle counts the same.
    const ro = cache(c.path, { readOnly: true });
    expect(ro.size).toBe(3);
    expect(ro.stats().entries).toBe(3);
  });

  test('size leaves out what a save that died half-way leaves (the pointer moved, the old list still there)', () => {
    const c = cache(tmp.file());
    c.set('a', { x: 1 });
    const v = c.get(POINTER) as number;
    expect(c.has(`${POINTER}/${v}`)).toBe(true);
    // Claimed version v + 1, died before writing its list and dropping v's.
    expect(c.cas(POINTER, v, v + 1)).toBe(true);
    expect(c.size).toBe(1);
    expect(c.stats().entries).toBe(1);
  });

  test("size leaves out the Redis tier's machine id", async () => {
    const { MACHINE_KEY } = await import('../dist/redis/local.js');
    const c = cache(tmp.file(), { codec: 'v8' });
    c.set('k', 1);
    c.set(MACHINE_KEY, 'abc binding'); // as the tier does
    expect(c.keys()).toEqual(['k']);
    expect(c.size).toBe(1);
    expect(c.stats().entries).toBe(1);
    c.set('o', { a: 1 });
    expect(c.size).toBe(2);
  });

  test('after clear(), a handle still holding the old structures never decodes against the new ones', () => {
    const path = tmp.file();
    const a = cache(path);
    const b = cache(path);
    a.set('x', { old: 1 }); // structure 0 = [old] for a and b
    expect(b.get('x')).toEqual({ old: 1 });
    b.clear();
    b.set('y', { fresh: 2 }); // a new list: structure 0 = [fresh]
    expect(a.get('y')).toEqual({ fresh: 2 }); // a reloads: the hash was not its own
    const c = cache(path);
    c.set('z', { third: 3 });
    // A handle that has not looked since writes against its own list: read
    // elsewhere it is a miss or the right value, never { fresh: ... }.
    const stale = cache(path);
    stale.set('w', { fresh: 9, extra: 1 });
    b.clear();
    stale.set('v', { old: 5 });
    for (const h of [a, b, c, cache(path)]) {
      const v = h.get('v');
      expect(v === undefined || isDeepStrictEqual(v, { old: 5 })).toBe(true);
    }
  });

  test('a stamp reset between two processes: values read right or as a miss', async () => {
    const path = tmp.file();
    const a = new Cache<any>({ path, size: '4MB', stamp: 1, codec: 'msgpack' });
    open.push(a);
    for (let i = 0; i < 5; i++) a.set(`a:${i}`, shape('a', i));
    // Another process resets the segment (a newer stamp) and defines its own structures.
    const r = await runFixture('open.mjs', [path, JSON.stringify({ stamp: 2, codec: 'msgpack' }), JSON.stringify([['open']])]);
    expect(r.messages[0]?.ok, r.stderr).toBe(true);
    expect(r.messages[0].stats.resets).toBeGreaterThan(0);
    await childSet(path, [['b:0', 'b', 0], ['b:1', 'b', 1]]);
    expect(a.get('a:0')).toBeUndefined(); // gone with the reset
    a.set('a:9', shape('a', 9)); // against a's old list
    const seen = await childCheck(path, [['b:0', 'b', 0], ['b:1', 'b', 1], ['a:9', 'a', 9]]);
    expect(seen.filter(([, s]) => s === 'wrong')).toEqual([]);
    expect(seen.slice(0, 2)).toEqual([['b:0', 'ok'], ['b:1', 'ok']]);
    expect(a.get('b:1')).toEqual(shape('b', 1));
  });

  test('two processes defining structures at the same moment: every value reads right', async () => {
    const path = tmp.file();
    cache(path).open();
    const start = Date.now() + 300;
    const results = await Promise.all(
      [1, 2, 3].map((id) => runFixture('msgpack-child.mjs', [path, 'define', JSON.stringify({ id, n: 40, start })])),
    );
    for (const r of results) expect(r.messages, r.stderr).toEqual([{ wrong: 0, misses: expect.any(Number) }]);
    const keys: [string, number, number][] = [];
    for (const id of [1, 2, 3]) for (let i = 0; i < 40; i++) keys.push([`${id}:${i}`, id, i]);
    const seen = await childCheck(path, keys);
    expect(seen.filter(([, s]) => s === 'wrong')).toEqual([]);
    // Misses only where a lost race left a value against a list no one keeps.
    expect(seen.filter(([, s]) => s === 'ok').length).toBeGreaterThan(keys.length / 2);
    const r = cache(path);
    expect(r.verify().ok).toBe(true);
  });

  test('a process killed while defining structures leaves nothing that decodes wrong, and others go on', async () => {
    const path = tmp.file();
    cache(path).open();
    for (let round = 0; round < 4; round++) {
      const child = spawn(process.execPath, [join(fixtures, 'msgpack-child.mjs'), path, 'loop', JSON.stringify({ id: `k${round}` })], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise((resolve) => child.stdout.once('data', resolve));
      await new Promise((resolve) => setTimeout(resolve, 5 + round * 7));
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    const c = cache(path);
    for (const [k, v] of c.entries()) {
      expect(k).toMatch(/^k\d:\d+$/);
      expect(typeof v).toBe('object');
    }
    // New structures still get defined and shared.
    await childSet(path, [['after', 'z', 1]]);
    expect(c.get('after')).toEqual(shape('z', 1));
    c.set('mine', { brandNew: 1 });
    expect((await childCheck(path, [['after', 'z', 1]]))[0]).toEqual(['after', 'ok']);
  });

  test('a version claimed by a writer that died before writing its entry', () => {
    const path = tmp.file();
    const a = cache(path);
    a.set('x', { a: 1 });
    const v = a.get(POINTER);
    expect(a.cas(POINTER, v, v + 1)).toBe(true); // as if a writer claimed v + 1 and died
    const b = cache(path);
    expect(b.get('x')).toBeUndefined(); // b cannot get a's structures: a miss
    expect(a.get('x')).toEqual({ a: 1 }); // a still has them
    b.set('y', { b: 2 });
    expect(b.get(POINTER)).toBe(v + 2);
    expect(a.get('y')).toEqual({ b: 2 }); // a reloads
    expect(cache(path).get('y')).toEqual({ b: 2 });
  });

  test('the structures entry evicted or deleted: a miss, then put back by the handle that has it', async () => {
    const path = tmp.file();
    const a = cache(path);
    a.set('x', { a: 1 });
    const entry = `${POINTER}/${a.get(POINTER)}`;
    expect(a.delete(entry)).toBe(true);
    expect(cache(path).get('x')).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 1100));
    for (let i = 0; i < 64; i++) a.set(`n${i}`, { a: i }); // a's once-a-second check
    expect(a.has(entry)).toBe(true);
    expect(cache(path).get('x')).toEqual({ a: 1 });
    // The pointer lost: a fresh, random version; nothing decodes against the old one.
    expect(a.delete(POINTER)).toBe(true);
    const b = cache(path);
    b.set('y', { b: 1 });
    expect(b.get(POINTER)).toEqual(expect.any(Number));
    expect(a.get('y')).toEqual({ b: 1 });
  });

  test('hostile bytes: a damaged entry or pointer is a miss; a damaged value throws ERR_SHMCACHE_CORRUPT or misses', () => {
    const path = tmp.file();
    const a = cache(path);
    a.set('x', { a: 1 });
    const entry = `${POINTER}/${a.get(POINTER)}`;
    const bytes: Buffer = a.get(entry);
    for (const damaged of [Buffer.from('junk'), Buffer.concat([bytes.subarray(0, 16), Buffer.from('[[1]]')]), Buffer.from(bytes).fill(0xff, 20)]) {
      a.set(entry, damaged);
      expect(cache(path).get('x')).toBeUndefined();
    }
    for (const damaged of ['a string', { an: 'object' }, -5, 1.5]) {
      a.set(POINTER, damaged);
      const b = cache(path);
      expect(b.get('x')).toBeUndefined();
      b.set('y', { fresh: 1 });
      expect(cache(path).get('y')).toEqual({ fresh: 1 });
    }
    // Values: random bytes behind the msgpack header with every hash, and plain junk.
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    // A handle whose codec writes the junk as a codec value.
    let junk = Buffer.alloc(1);
    const w = cache(path, { codec: { encode: () => junk, decode: () => null } });
    const r = cache(path);
    let thrown = 0;
    for (let i = 0; i < 1000; i++) {
      junk = Buffer.from(Array.from({ length: 1 + (i % 40) }, rand));
      if (i % 2 === 0) junk[0] = 0xc1;
      if (i % 4 === 0 && junk.length >= 7) junk.fill(0, 1, 7); // no shared structures: reaches msgpackr
      w.set('junk', { any: 1 });
      try {
        r.get('junk');
      } catch (e) {
        expect(e).toBeInstanceOf(ShmCacheError);
        expect((e as ShmCacheError).code).toBe('ERR_SHMCACHE_CORRUPT');
        thrown++;
      }
    }
    expect(thrown).toBeGreaterThan(0);
  });
});

describe('read-only handles', () => {
  test('read msgpack values; a damaged pointer they cannot drop is a miss, not a throw', () => {
    const path = tmp.file();
    const w = cache(path);
    w.set('o', { a: 1, when: new Date(2) });
    const ro = cache(path, { readOnly: true });
    expect(ro.get('o')).toEqual({ a: 1, when: new Date(2) });
    w.set(POINTER, 'damaged'); // a read-only reader cannot drop it: a miss, no throw
    expect(cache(path, { readOnly: true }).get('o')).toBeUndefined();
  });
});

async function childSet(path: string, keys: [string, string | number, number][]): Promise<void> {
  const r = await runFixture('msgpack-child.mjs', [path, 'set', JSON.stringify({ keys })]);
  expect(r.messages, r.stderr).toEqual([{ done: true }]);
}

async function childCheck(path: string, keys: [string, string | number, number][]): Promise<[string, string][]> {
  const r = await runFixture('msgpack-child.mjs', [path, 'check', JSON.stringify({ keys })]);
  expect(r.messages.length, r.stderr).toBe(1);
  return r.messages[0].values;
}
