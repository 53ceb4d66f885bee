import { afterEach, describe, expect, test } from 'vitest';
import { Cache } from '../esm/index.mjs';
import { code, tempDir, verifyAndClose } from './helpers';

const tmp = tempDir();
const open: Cache<any>[] = [];
function cache<V = any>(options: Record<string, unknown> = {}): Cache<V> {
  const c = new Cache<V>({ path: tmp.file(), size: '2MB', stamp: false, ...options });
  open.push(c as Cache<any>);
  return c;
}
afterEach(() => {
  verifyAndClose(open);
});

describe('get / set', () => {
  test('strings, numbers and byte arrays come back as the same type', () => {
    const c = cache();
    const values: [string, unknown][] = [
      ['s', 'hello'],
      ['empty', ''],
      ['unicode', 'naïve ☃ 😀 日本'],
      ['n', 42],
      ['neg', -0.5],
      ['nan', NaN],
      ['inf', -Infinity],
      ['buf', Buffer.from([0, 1, 2, 255])],
      ['emptybuf', Buffer.alloc(0)],
    ];
    for (const [k, v] of values) c.set(k, v);
    for (const [k, v] of values) expect(c.get(k)).toEqual(v);
    expect(typeof c.get('s')).toBe('string');
    expect(Buffer.isBuffer(c.get('buf'))).toBe(true);
    const u8 = new Uint8Array([9, 8, 7]).subarray(1);
    c.set('u8', u8);
    const back = c.get('u8');
    expect(Buffer.isBuffer(back)).toBe(true);
    expect([...back]).toEqual([8, 7]);
  });

  test('strings read back as their UTF-8 would (a lone surrogate as U+FFFD), at every length', () => {
    const c = cache();
    // Short strings are encoded by the addon, long ones (3 bytes per unit
    // past the 64 KiB value buffer) by JS: both must agree.
    const strings = ['a\uD800b', '\uDC00', '😀x'.repeat(3)];
    for (const n of [21_844, 21_845, 21_846, 40_000]) strings.push('é'.repeat(n), 'x'.repeat(n), `${'😀'.repeat(n / 2)}\uD83D`);
    for (const s of strings) {
      c.set('k', s);
      expect(c.get('k')).toBe(Buffer.from(s, 'utf8').toString('utf8'));
    }
  });

  test('a returned Buffer is a copy, not a view the next call overwrites', () => {
    const c = cache();
    c.set('a', Buffer.from('aaaa'));
    c.set('b', Buffer.from('bbbb'));
    const a = c.get('a');
    c.get('b');
    expect(a.toString()).toBe('aaaa');
    a.fill(0);
    expect(c.get('a').toString()).toBe('aaaa');
  });

  test('Buffers handed out from the read pool survive every later read, across pool refills', () => {
    const c = cache({ size: '8MB' });
    // Sizes around the pool's limits (4 KiB pooled, 32 KiB pools), with
    // strings, numbers and codec values read in between.
    const sizes = [1, 7, 8, 9, 100, 1000, 4095, 4096, 4097, 20_000, 32_768, 40_000];
    const kept: [Buffer, number][] = [];
    for (let round = 0; round < 40; round++) {
      for (const [j, n] of sizes.entries()) {
        const fill = (round * sizes.length + j) % 251;
        c.set(`b${j}`, Buffer.alloc(n, fill));
        c.set(`s${j}`, 'x'.repeat(n));
        c.set(`n${j}`, n + 0.5);
        c.set(`o${j}`, { n, data: new Uint8Array(n % 300).fill(fill) });
        const v = c.get(`b${j}`) as Buffer;
        expect(v.length).toBe(n);
        kept.push([v, fill]);
        expect(c.get(`s${j}`)).toHaveLength(n);
        expect(c.get(`n${j}`)).toBe(n + 0.5);
        expect(c.get(`o${j}`).data).toEqual(new Uint8Array(n % 300).fill(fill));
      }
    }
    for (const [v, fill] of kept) expect(v.every((b) => b === fill)).toBe(true);
  });

  test.each(['v8', 'msgpack'])('other values go through the codec (%s; msgpack by default)', (codec) => {
    const c = cache(codec === 'msgpack' ? {} : { codec });
    const v = { a: [1, 2, { b: null }], d: new Date(5), m: new Map([[1, 'x']]), big: 10n, t: true, u8: new Uint16Array([1, 2]) };
    c.set('obj', v);
    expect(c.get('obj')).toEqual(v);
    c.set('t', true);
    expect(c.get('t')).toBe(true);
    c.set('null', null);
    expect(c.get('null')).toBeNull();
  });

  test("the default codec is 'msgpack': a fresh cache with 3 objects has size 3, and only their keys", () => {
    const c = cache();
    c.set('a', { id: 1, at: new Date(1) });
    c.set('b', { id: 2, m: new Map([['k', [1n]]]) });
    c.set('c', [{ id: 3, name: 'x' }, { id: 4, name: 'y' }]);
    expect(c.size).toBe(3);
    expect(c.stats().entries).toBe(3);
    expect(c.keys().sort()).toEqual(['a', 'b', 'c']);
    expect([...c.entries()].map(([k]) => k).sort()).toEqual(['a', 'b', 'c']);
    expect([...c.values()]).toHaveLength(3);
    // What is stored is msgpack: a codec that hands back the bytes sees its tag.
    const raw = cache<Uint8Array>({ path: c.path, codec: { encode: () => new Uint8Array(), decode: (b: Uint8Array) => b } });
    for (const k of ['a', 'b', 'c']) expect(raw.get(k)![0], k).toBe(0xc1);
    const v8Handle = cache({ path: c.path, codec: 'v8' });
    v8Handle.set('d', { id: 5 });
    expect(raw.get('d')![0]).toBe(0xff);
  });

  test("values a 'v8' cache wrote are read by a cache with the default codec, and the other way", () => {
    const path = tmp.file();
    const cyclic: any = { name: 'loop' };
    cyclic.self = cyclic;
    const values: [string, unknown][] = [
      ['obj', { id: 1, name: 'one', tags: ['a', 'b'], at: new Date(5), m: new Map([[1, { x: 2n }]]), s: new Set(['q']) }],
      ['list', Array.from({ length: 50 }, (_, i) => ({ id: i, name: `r${i}`, score: i / 2 }))],
      ['cyclic', cyclic],
      ['err', new RangeError('boom')],
      ['negzero', { z: -0 }],
      ['u8', { bytes: new Uint8Array([1, 2, 3]) }],
      ['null', null],
      ['bool', false],
    ];
    const w = new Cache<any>({ path, size: '2MB', stamp: false, codec: 'v8' });
    for (const [k, v] of values) w.set(k, v);
    w.close();
    const r = cache({ path });
    for (const [k, v] of values) {
      const got = r.get(k);
      expect(got, k).toEqual(v);
      if (k === 'cyclic') expect(got.self).toBe(got);
      if (k === 'err') expect(got).toBeInstanceOf(RangeError);
      if (k === 'negzero') expect(Object.is(got.z, -0)).toBe(true);
    }
    expect(new Map(r.entries()).size).toBe(values.length);
    // The default codec's values, read by a 'v8' handle.
    for (const [k, v] of values) r.set(`d:${k}`, v);
    const back = cache({ path, codec: 'v8' });
    for (const [k, v] of values) expect(back.get(`d:${k}`), k).toEqual(v);
  });

  test.each(['v8', 'msgpack'])('a decoded typed array is not a view of the shared read buffer (%s)', (codec) => {
    const c = cache({ codec });
    c.set('x', { arr: new Float64Array([1, 2, 3]) });
    const first = c.get('x');
    c.set('y', { arr: new Float64Array([7, 7, 7]) });
    c.get('y');
    expect([...first.arr]).toEqual([1, 2, 3]);
  });

  test('the json codec, and a custom codec', () => {
    const j = cache({ codec: 'json' });
    j.set('o', { a: 1, b: [true, 'x'] });
    expect(j.get('o')).toEqual({ a: 1, b: [true, 'x'] });
    j.set('s', 'plain string stays a string');
    expect(j.get('s')).toBe('plain string stays a string');

    const calls: string[] = [];
    const custom = cache<{ n: number }>({
      codec: {
        encode: (v: { n: number }) => {
          calls.push('encode');
          return Uint8Array.of(v.n);
        },
        decode: (b: Uint8Array) => {
          calls.push('decode');
          return { n: b[0]! };
        },
      },
    });
    custom.set('x', { n: 7 });
    expect(custom.get('x')).toEqual({ n: 7 });
    expect(calls).toEqual(['encode', 'decode']);
  });

  test('set replaces, set(key, undefined) deletes, a miss is undefined', () => {
    const c = cache();
    expect(c.get('k')).toBeUndefined();
    c.set('k', 'one');
    c.set('k', 'two');
    expect(c.get('k')).toBe('two');
    c.set('k', undefined);
    expect(c.get('k')).toBeUndefined();
    expect(c.has('k')).toBe(false);
    expect(c.stats().entries).toBe(0);
  });

  test('keys of every length up to 1024 UTF-8 bytes, in any script', () => {
    const c = cache();
    const keys = ['a', 'x'.repeat(1024), 'é'.repeat(512), '😀'.repeat(256), 'key with spaces/and:colons'];
    keys.forEach((k, i) => c.set(k, i));
    keys.forEach((k, i) => expect(c.get(k)).toBe(i));
    expect(code(() => c.set('x'.repeat(1025), 1))).toBe('ERR_SHMCACHE_INVALID_KEY');
    expect(code(() => c.set('é'.repeat(513), 1))).toBe('ERR_SHMCACHE_INVALID_KEY');
    expect(code(() => c.get(42 as never))).toBe('ERR_SHMCACHE_INVALID_KEY');
    expect(code(() => c.has(undefined as never))).toBe('ERR_SHMCACHE_INVALID_KEY');
    expect(code(() => c.delete(''))).toBe('ERR_SHMCACHE_INVALID_KEY');
  });

  test('keys must be well-formed UTF-16: a lone surrogate is INVALID_KEY, never a second name for U+FFFD', () => {
    const c = cache();
    c.set('\ufffd', 'replacement char');
    for (const bad of ['\ud800', 'a\udc00', `${'x'.repeat(60)}\ud83d`, '\ud83d\ud83d\ude00'.slice(1, 2)]) {
      expect(code(() => c.get(bad)), JSON.stringify(bad)).toBe('ERR_SHMCACHE_INVALID_KEY');
      expect(code(() => c.set(bad, 1))).toBe('ERR_SHMCACHE_INVALID_KEY');
      expect(code(() => c.has(bad))).toBe('ERR_SHMCACHE_INVALID_KEY');
      expect(code(() => c.delete(bad))).toBe('ERR_SHMCACHE_INVALID_KEY');
      expect(code(() => c.keys(bad))).toBe('ERR_SHMCACHE_INVALID_KEY');
    }
    expect(c.keys()).toEqual(['\ufffd']);
    expect(c.get('\ufffd')).toBe('replacement char');
    // A well-formed pair is one code point, a fine key.
    c.set('😀', 'pair');
    expect(c.get('😀')).toBe('pair');
  });

  test('unknown per-call options throw INVALID_OPTION and change nothing', () => {
    const c = cache();
    c.set('k', 1);
    expect(code(() => c.set('k', 2, { tll: 5 } as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.add('new', 2, { ttl: 5, extra: 1 } as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.incr('k', 1, { initail: 3 } as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.set('k', undefined, { tll: 5 } as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(c.get('k')).toBe(1);
    expect(c.has('new')).toBe(false);
    return expect(c.remember('r', () => 1, { wiat: 5 } as never)).rejects.toMatchObject({ code: 'ERR_SHMCACHE_INVALID_OPTION' });
  });

  test('large values grow the shared buffers both ways', () => {
    const c = cache();
    const big = Buffer.alloc(c.open().maxValueSize, 0xab);
    c.set('big', big);
    expect(c.get('big').equals(big)).toBe(true);
    const s = 'é'.repeat(100_000);
    c.set('str', s);
    expect(c.get('str')).toBe(s);
  });

  test('set with a ttl option, and a bad ttl changes nothing', () => {
    const c = cache();
    c.set('a', 1, { ttl: 60_000 });
    expect(c.get('a')).toBe(1);
    const sets = c.stats().sets;
    expect(code(() => c.set('a', 2, { ttl: -5 }))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.set('a', 2, 5 as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(c.get('a')).toBe(1);
    expect(c.stats().sets).toBe(sets);
  });
});

describe('add / has / delete', () => {
  test('add stores only when there is no live entry', () => {
    const c = cache();
    expect(c.add('a', 'first')).toBe(true);
    expect(c.add('a', 'second')).toBe(false);
    expect(c.get('a')).toBe('first');
    expect(code(() => c.add('b', undefined))).toBe('ERR_SHMCACHE_ENCODE');
    expect(c.has('b')).toBe(false);
  });

  test('has does not count as a read; delete reports whether it removed', () => {
    const c = cache();
    c.set('a', 1);
    const before = c.stats();
    expect(c.has('a')).toBe(true);
    expect(c.has('zz')).toBe(false);
    const after = c.stats();
    expect(after.hits).toBe(before.hits);
    expect(after.misses).toBe(before.misses);
    expect(c.delete('a')).toBe(true);
    expect(c.delete('a')).toBe(false);
    expect(c.stats().deletes).toBe(1);
  });
});

describe('counters', () => {
  test('incr and decr, with by, initial and a created-only ttl', () => {
    const c = cache();
    expect(c.incr('n')).toBe(1);
    expect(c.incr('n', 10)).toBe(11);
    expect(c.decr('n')).toBe(10);
    expect(c.decr('n', 4)).toBe(6);
    expect(c.incr('m', 5, { initial: 100 })).toBe(105);
    expect(c.incr('m', 1, { initial: 100 })).toBe(106);
    expect(c.decr('d', 1, { initial: 0 })).toBe(-1);
    expect(c.get('n')).toBe(6);
    c.set('x', 7);
    expect(c.incr('x')).toBe(8);
  });

  test('incr on a non-integer is NOT_NUMBER and changes nothing', () => {
    const c = cache();
    c.set('s', 'text');
    c.set('f', 1.5);
    c.set('o', { a: 1 });
    for (const k of ['s', 'f', 'o']) expect(code(() => c.incr(k))).toBe('ERR_SHMCACHE_NOT_NUMBER');
    expect(c.get('s')).toBe('text');
    expect(c.get('f')).toBe(1.5);
  });

  test('leaving the safe integer range is RANGE and changes nothing', () => {
    const c = cache();
    c.set('big', Number.MAX_SAFE_INTEGER - 1);
    expect(c.incr('big')).toBe(Number.MAX_SAFE_INTEGER);
    expect(code(() => c.incr('big'))).toBe('ERR_SHMCACHE_RANGE');
    expect(c.get('big')).toBe(Number.MAX_SAFE_INTEGER);
    expect(code(() => c.decr('neg', 1, { initial: -Number.MAX_SAFE_INTEGER }))).toBe('ERR_SHMCACHE_RANGE');
    expect(c.has('neg')).toBe(false);
    expect(code(() => c.incr('x', 2 ** 53))).toBe('ERR_SHMCACHE_RANGE');
    expect(code(() => c.incr('x', 0.5))).toBe('ERR_SHMCACHE_RANGE');
    expect(code(() => c.incr('x', '1' as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.incr('x', 1, { initial: 0.5 }))).toBe('ERR_SHMCACHE_RANGE');
    expect(code(() => c.incr('x', 1, { ttl: -1 }))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(c.has('x')).toBe(false);
  });

  test('cas swaps integers only when equal, and never creates', () => {
    const c = cache();
    expect(c.cas('n', 0, 1)).toBe(false);
    expect(c.has('n')).toBe(false);
    c.set('n', 5);
    expect(c.cas('n', 4, 9)).toBe(false);
    expect(c.cas('n', 5, 9)).toBe(true);
    expect(c.get('n')).toBe(9);
    c.set('s', 'five');
    expect(c.cas('s', 5, 6)).toBe(false);
    c.set('f', 2.5);
    expect(c.cas('f', 2, 3)).toBe(false);
    expect(code(() => c.cas('f', 2.5, 3))).toBe('ERR_SHMCACHE_RANGE');
    expect(c.get('f')).toBe(2.5);
    expect(code(() => c.cas('n', 9, 2 ** 60))).toBe('ERR_SHMCACHE_RANGE');
    expect(code(() => c.cas('n', null as never, 1))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(c.get('n')).toBe(9);
  });
});

describe('keys / clear / stats / verify / close', () => {
  test('keys lists live keys, by prefix', () => {
    const c = cache();
    for (const k of ['user:1', 'user:2', 'post:1', 'usr']) c.set(k, 1);
    expect(c.keys().sort()).toEqual(['post:1', 'user:1', 'user:2', 'usr']);
    expect(c.keys('user:').sort()).toEqual(['user:1', 'user:2']);
    expect(c.keys('nothing')).toEqual([]);
    expect(c.keys('x'.repeat(2000))).toEqual([]);
    expect(code(() => c.keys(5 as never))).toBe('ERR_SHMCACHE_INVALID_KEY');
  });

  test('clear drops every entry of this segment only and bumps the generation', () => {
    const a = cache();
    const b = cache();
    a.set('k', 1);
    b.set('k', 2);
    const gen = a.stats().generation;
    a.clear();
    expect(a.get('k')).toBeUndefined();
    expect(a.keys()).toEqual([]);
    expect(a.stats()).toMatchObject({ entries: 0, used: 0, generation: gen + 1 });
    expect(b.get('k')).toBe(2);
  });

  test('stats has every documented field', () => {
    const c = cache();
    c.set('a', 'x');
    c.get('a');
    c.get('missing');
    const s = c.stats();
    for (const f of ['path', 'size', 'used', 'entries', 'hits', 'misses', 'sets', 'deletes', 'evictions', 'expired', 'repairs', 'resets', 'stamp', 'generation']) {
      expect(s).toHaveProperty(f);
    }
    expect(s).toMatchObject({ size: 2 * 1024 * 1024, entries: 1, hits: 1, misses: 1, sets: 1, deletes: 0 });
    expect(s.used).toBeGreaterThan(0);
    expect(s.path).toBe(c.path);
  });

  test('close is idempotent; every later call is CLOSED', () => {
    const c = cache();
    c.set('a', 1);
    c.close();
    c.close();
    expect(c.isOpen).toBe(false);
    for (const fn of [
      () => c.get('a'),
      () => c.set('a', 1),
      () => c.has('a'),
      () => c.open(),
      () => c.keys(),
      () => c.stats(),
      () => c.verify(),
      () => c.clear(),
      () => c.incr('a'),
    ]) {
      expect(code(fn)).toBe('ERR_SHMCACHE_CLOSED');
    }
    const never = cache();
    never.close();
    expect(code(() => never.get('a'))).toBe('ERR_SHMCACHE_CLOSED');
  });

  test('two handles on one path in one process share entries', () => {
    const path = tmp.file();
    const a = new Cache({ path, size: '1MB', stamp: false });
    const b = new Cache({ path, size: '1MB', stamp: false });
    a.set('k', 'v');
    expect(b.get('k')).toBe('v');
    b.close();
    expect(a.get('k')).toBe('v');
    a.close();
  });
});
