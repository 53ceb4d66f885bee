import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { Cache } from '../esm/index.mjs';
import { setClockOffsetForTesting } from '../dist/testing.js';
import { mapValueOk } from './fixtures/map-lib.mjs';
import { code, fixtures, isRoot, tempDir, verifyAndClose } from './helpers';

// getMany, setMany, deleteMany, peek, ttl, touch, info, size and capacity.
const tmp = tempDir();
const open: Cache<any>[] = [];
function cache(options: Record<string, unknown> = {}): Cache<any> {
  const c = new Cache<any>({ path: tmp.file(), size: '4MB', stamp: false, ...options });
  open.push(c);
  return c;
}
afterEach(() => {
  setClockOffsetForTesting(0);
  verifyAndClose(open);
});

describe('getMany', () => {
  test.each(['v8', 'msgpack'])('one result per key, in order, every value type, misses as undefined; counted as get() counts (%s)', (codec) => {
    const c = cache({ codec });
    c.set('s', 'text');
    c.set('u', 'ünïcode');
    c.set('n', 1.5);
    c.set('b', Buffer.from([1, 2, 3]));
    c.set('o', { deep: [1, { x: 'y' }] });
    const before = c.stats();
    expect(c.getMany(['s', 'missing', 'u', 'n', 'b', 'o', 's'])).toEqual([
      'text', undefined, 'ünïcode', 1.5, Buffer.from([1, 2, 3]), { deep: [1, { x: 'y' }] }, 'text',
    ]);
    const after = c.stats();
    expect(after.hits - before.hits).toBe(6);
    expect(after.misses - before.misses).toBe(1);
    expect(c.getMany([])).toEqual([]);
    expect(c.getMany(new Set(['n']))).toEqual([1.5]);
  });

  test('a bad key anywhere throws INVALID_KEY before anything is read', () => {
    const c = cache();
    c.set('a', 'x');
    const before = c.stats();
    for (const bad of ['', 'x'.repeat(1025), 'é'.repeat(513), '\ud800', 7, null]) {
      expect(code(() => c.getMany(['a', bad as string]))).toBe('ERR_SHMCACHE_INVALID_KEY');
    }
    expect(c.stats().hits).toBe(before.hits);
    expect(c.getMany(['é'.repeat(512)])).toEqual([undefined]);
  });

  test('values larger than the rest of the read pool, or than the pool, mid-batch; Buffers handed out are never overwritten', () => {
    const c = cache({ size: '16MB' });
    const keys: string[] = [];
    const want: unknown[] = [];
    for (let i = 0; i < 300; i++) {
      const k = `k${i}`;
      // 3 KB strings fill the 64 KB pool every ~20 keys; every 7th is a
      // Buffer, every 50th far larger than the pool.
      const v = i % 50 === 0 ? 'L'.repeat(200_000 + i) : i % 7 === 0 ? Buffer.alloc(3000 + i, i & 0xff) : `${i}:`.padEnd(3000, 'v');
      c.set(k, v);
      keys.push(k);
      want.push(v);
    }
    const got = c.getMany(keys);
    expect(got).toEqual(want);
    // Reads after it reuse the pool: the Buffers it returned stay as they were.
    for (let r = 0; r < 3; r++) c.getMany(keys);
    for (let i = 0; i < 300; i++) c.get(keys[i]!);
    expect(got).toEqual(want);
  });

  test('a codec whose decode() reads the cache (re-entrancy) gets no other key\'s value', () => {
    const codec = {
      encode: (v: unknown) => Buffer.from(JSON.stringify(v)),
      decode: (b: Uint8Array) => {
        const o = JSON.parse(Buffer.from(b).toString());
        if (o.ref) o.r = c.get(o.ref);
        if (o.refs) o.r = c.getMany(o.refs);
        return o;
      },
    };
    const c = cache({ codec });
    c.set('a', { ref: 'x' });
    c.set('b', 'B'.repeat(40));
    c.set('x', 'X'.repeat(200));
    c.set('m', { refs: ['x', 'b', 'n'] });
    c.set('n', 2.5);
    c.set('bytes', Buffer.from('bytes'));
    expect(c.getMany(['a', 'b'])).toEqual([{ ref: 'x', r: 'X'.repeat(200) }, 'B'.repeat(40)]);
    expect(c.getMany(['m', 'b', 'n', 'bytes', 'a', 'x'])).toEqual([
      { refs: ['x', 'b', 'n'], r: ['X'.repeat(200), 'B'.repeat(40), 2.5] }, 'B'.repeat(40), 2.5, Buffer.from('bytes'),
      { ref: 'x', r: 'X'.repeat(200) }, 'X'.repeat(200),
    ]);
    // Past the read pool: the keys packed for the next native call are the
    // caller's still (decode() packed 60 keys of its own over them).
    const misses = Array.from({ length: 60 }, (_, i) => `missing-${i}`);
    c.set('mm', { refs: misses });
    const keys: string[] = [];
    for (let i = 0; i < 40; i++) {
      c.set(`big${i}`, 'v'.repeat(3000) + i);
      keys.push(i % 3 === 0 ? 'mm' : `big${i}`);
    }
    const mm = { refs: misses, r: misses.map(() => undefined) };
    expect(c.getMany(keys)).toEqual(keys.map((k) => (k === 'mm' ? mm : 'v'.repeat(3000) + k.slice(3))));
  });

  test('a string is not a list of keys: INVALID_OPTION (getMany, deleteMany, setMany)', () => {
    const c = cache();
    c.set('a', 1);
    c.set('d', 2);
    expect(code(() => c.getMany('dd' as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.deleteMany('ad' as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.setMany('ab' as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.setMany(new String('ab') as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(c.getMany(['a', 'd'])).toEqual([1, 2]);
  });

  test('expired entries are misses', () => {
    const c = cache();
    c.set('short', 'x', { ttl: 100 });
    c.set('long', 'y');
    setClockOffsetForTesting(200);
    expect(c.getMany(['short', 'long'])).toEqual([undefined, 'y']);
  });
});

describe('setMany', () => {
  test('stores every pair, with the ttl option or the cache default; replaces', () => {
    const c = cache({ ttl: 0 });
    c.set('a', 'old');
    c.setMany([['a', 'A'], ['b', 2], ['c', Buffer.from('C')], ['d', { d: true }], ['é', 'ê']]);
    expect(c.getMany(['a', 'b', 'c', 'd', 'é'])).toEqual(['A', 2, Buffer.from('C'), { d: true }, 'ê']);
    expect(c.ttl('a')).toBe(0);
    c.setMany(new Map([['t', 'x']]), { ttl: 1000 });
    expect(c.ttl('t')).toBeGreaterThan(900);
    setClockOffsetForTesting(1001);
    expect(c.get('t')).toBeUndefined();
    c.setMany([]);
  });

  test('a bad key, a value too large, a codec failure or an undefined value anywhere stores none', () => {
    const c = cache();
    const big = Buffer.alloc(c.maxValueSize + 1);
    const cases: [unknown[], string][] = [
      [[['x1', 1], ['', 2]], 'ERR_SHMCACHE_INVALID_KEY'],
      [[['x1', 1], ['\udc00', 2]], 'ERR_SHMCACHE_INVALID_KEY'],
      [[['x1', 1], ['x2', big]], 'ERR_SHMCACHE_VALUE_TOO_LARGE'],
      [[['x1', 1], ['x2', () => 1]], 'ERR_SHMCACHE_ENCODE'],
      [[['x1', 1], ['x2', undefined]], 'ERR_SHMCACHE_ENCODE'],
      [[['x1', 1], 'not a pair'], 'ERR_SHMCACHE_INVALID_OPTION'],
    ];
    for (const [entries, want] of cases) {
      expect(code(() => c.setMany(entries as [string, unknown][]))).toBe(want);
      expect(c.has('x1')).toBe(false);
    }
    expect(code(() => c.setMany([['x1', 1]], { ttl: -1 }))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.setMany([['x1', 1]], { nope: 1 } as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.setMany(5 as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(c.size).toBe(0);
  });

  test('a value whose buffer is detached or shrunk while the batch is read stores nothing, never stale memory', () => {
    const c = cache();
    const secret = Buffer.from('SECRET-PASSWORD-'.repeat(64));
    type Resizable = ArrayBuffer & { resize(n: number): void };
    const resizable = (n: number) => new (ArrayBuffer as unknown as new (n: number, o: object) => Resizable)(n, { maxByteLength: 128 });
    const cases: ((ab: Resizable) => void)[] = [
      (ab) => void structuredClone(ab, { transfer: [ab] }),
      (ab) => ab.resize(0),
      (ab) => ab.resize(3),
    ];
    for (const [i, change] of cases.entries()) {
      for (const asBuffer of [false, true]) {
        const ab = resizable(64);
        const value = asBuffer ? Buffer.from(ab, 0, 64).fill(0x61) : new Uint8Array(ab, 0, 64).fill(0x61);
        function* entries(): Generator<[string, unknown]> {
          yield ['v', value];
          change(ab);
          void Buffer.from(secret); // heap memory around
          yield ['w', 'after'];
        }
        const err = code(() => c.setMany(entries()));
        const got = c.get('v') as Buffer | undefined;
        expect(got === undefined ? 'none' : got.toString('latin1'), `case ${i} ${asBuffer}`).toBe('none');
        expect(err).toBe('ERR_SHMCACHE_ENCODE');
        expect(c.has('w')).toBe(false);
      }
    }
    // Grown meanwhile: the bytes it had when checked.
    const ab = resizable(4);
    c.setMany((function* (): Generator<[string, unknown]> {
      yield ['g', new Uint8Array(ab, 0, 4).fill(0x62)];
      ab.resize(100);
      yield ['h', 'after'];
    })());
    expect(c.get('h')).toBe('after');
    expect(c.get('g')).toEqual(Buffer.from('bbbb'));
  });
});

describe('deleteMany', () => {
  test('counts the live entries it removed; a bad key removes none', () => {
    const c = cache();
    c.setMany([['a', 1], ['b', 2], ['c', 3]]);
    c.set('gone', 1, { ttl: 10 });
    setClockOffsetForTesting(20);
    expect(code(() => c.deleteMany(['a', '']))).toBe('ERR_SHMCACHE_INVALID_KEY');
    expect(c.has('a')).toBe(true);
    expect(c.deleteMany(['a', 'b', 'missing', 'gone', 'a'])).toBe(2);
    expect(c.getMany(['a', 'b', 'c'])).toEqual([undefined, undefined, 3]);
    expect(c.deleteMany([])).toBe(0);
  });
});

describe('peek', () => {
  test('returns what get() would, counting no hit or miss', () => {
    const c = cache();
    c.setMany([['s', 'x'], ['n', 3], ['b', Buffer.from('b')], ['o', [1]], ['big', 'z'.repeat(100_000)]]);
    const before = c.stats();
    expect([c.peek('s'), c.peek('n'), c.peek('b'), c.peek('o'), c.peek('missing')]).toEqual(['x', 3, Buffer.from('b'), [1], undefined]);
    expect(c.peek('big')).toBe('z'.repeat(100_000));
    const after = c.stats();
    expect([after.hits, after.misses]).toEqual([before.hits, before.misses]);
    c.set('t', 1, { ttl: 5 });
    setClockOffsetForTesting(10);
    expect(c.peek('t')).toBeUndefined();
    expect(code(() => c.peek(''))).toBe('ERR_SHMCACHE_INVALID_KEY');
  });

  test('leaves the access hint alone: peeked entries are evicted as if never read, read ones get a second chance', () => {
    // Fill a small segment with two sets of keys, read one set with get()
    // and the other with peek(), then overflow it: what survives is the set
    // that was read.
    const c = cache({ size: '1MB' });
    const v = 'v'.repeat(900);
    const n = 300;
    for (let i = 0; i < n; i++) c.set(`a${i}`, v);
    for (let i = 0; i < n; i++) c.set(`b${i}`, v);
    for (let i = 0; i < n; i++) {
      c.get(`a${i}`);
      c.peek(`b${i}`);
    }
    for (let i = 0; i < 500; i++) c.set(`f${i}`, v);
    let a = 0;
    let b = 0;
    for (let i = 0; i < n; i++) {
      if (c.has(`a${i}`)) a++;
      if (c.has(`b${i}`)) b++;
    }
    expect(a).toBeGreaterThan(b);
  });
});

describe('ttl, touch, info', () => {
  test('ttl(): ms left, 0 for none, undefined when missing or expired', () => {
    const c = cache();
    c.set('t', 'x', { ttl: 1000 });
    c.set('forever', 'x');
    expect(c.ttl('t')).toBeGreaterThan(900);
    expect(c.ttl('t')).toBeLessThanOrEqual(1000);
    expect(c.ttl('forever')).toBe(0);
    expect(c.ttl('missing')).toBeUndefined();
    setClockOffsetForTesting(1000);
    expect(c.ttl('t')).toBeUndefined();
  });

  test('touch() retimes a live entry in place: value kept, longer, shorter, none; false when missing or expired', () => {
    const c = cache();
    c.set('k', 'value', { ttl: 100 });
    const used = c.stats().used;
    expect(c.touch('k', 10_000)).toBe(true);
    setClockOffsetForTesting(5000);
    expect(c.get('k')).toBe('value');
    expect(c.ttl('k')).toBeLessThanOrEqual(10_000);
    expect(c.touch('k', 0)).toBe(true);
    expect(c.ttl('k')).toBe(0);
    setClockOffsetForTesting(1_000_000);
    expect(c.get('k')).toBe('value');
    expect(c.touch('k', 50)).toBe(true);
    setClockOffsetForTesting(1_000_100);
    expect(c.get('k')).toBeUndefined();
    expect(c.touch('k', 50)).toBe(false);
    expect(c.touch('never', 50)).toBe(false);
    expect(c.stats().used).toBeLessThanOrEqual(used);
    expect(code(() => c.touch('k', -1))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect(code(() => c.touch('k', undefined as never))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    // Expired entries it retimed are reclaimed by the sweep like any other.
    expect(c.verify().ok).toBe(true);
  });

  test('a touch that shortens a TTL is seen by a memo handle that kept the string (no memo outlives the new expiry)', () => {
    const path = tmp.file();
    const w = new Cache<any>({ path, size: '2MB', stamp: false });
    const m = new Cache<any>({ path, size: '2MB', stamp: false, memo: '1MB' });
    open.push(w, m);
    w.set('k', 'kept forever');
    w.set('other', 'in the same page');
    expect(m.get('k')).toBe('kept forever');
    expect(m.get('k')).toBe('kept forever'); // from the memo
    expect(m.get('other')).toBe('in the same page');
    expect(w.touch('k', 50)).toBe(true);
    expect(m.get('k')).toBe('kept forever');
    setClockOffsetForTesting(100);
    expect(m.get('k')).toBeUndefined();
    expect(m.has('k')).toBe(false);
    expect(m.get('other')).toBe('in the same page');
  });

  test('a touch in another process is seen by this process\'s memo', async () => {
    const path = tmp.file();
    const m = new Cache<any>({ path, size: '2MB', stamp: false, memo: '1MB' });
    open.push(m);
    m.set('k', 'v');
    expect(m.get('k')).toBe('v');
    expect(m.get('k')).toBe('v');
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      import { Cache } from ${JSON.stringify(join(fixtures, '../../esm/index.mjs'))};
      const c = new Cache({ path: ${JSON.stringify(path)}, stamp: false });
      process.stdout.write(String(c.touch('k', 30)) + '\\n');
      c.close();`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve));
    expect(line).toBe('true');
    setClockOffsetForTesting(1000);
    expect(m.get('k')).toBeUndefined();
  });

  test('info(): type, stored bytes and ttl, reading no value and counting nothing', () => {
    const c = cache();
    c.setMany([['s', 'héllo'], ['a', 'ascii'], ['n', 1], ['b', Buffer.alloc(10)], ['o', { x: 1 }]], { ttl: 1000 });
    c.set('forever', 'x');
    const before = c.stats();
    expect(c.info('s')).toMatchObject({ type: 'string', bytes: 6 });
    expect(c.info('a')).toMatchObject({ type: 'string', bytes: 5 });
    expect(c.info('n')).toMatchObject({ type: 'number', bytes: 8 });
    expect(c.info('b')).toMatchObject({ type: 'bytes', bytes: 10 });
    expect(c.info('o')!.type).toBe('object');
    expect(c.info('o')!.ttl).toBeGreaterThan(900);
    expect(c.info('forever')).toEqual({ type: 'string', bytes: 1, ttl: 0 });
    expect(c.info('missing')).toBeUndefined();
    expect(c.stats().hits).toBe(before.hits);
    setClockOffsetForTesting(2000);
    expect(c.info('s')).toBeUndefined();
  });

  test('remember() claims are not values: ttl, info, peek and touch see none', async () => {
    const c = cache();
    let release!: (v: string) => void;
    const p = c.remember('r', () => new Promise<string>((resolve) => (release = resolve)));
    await new Promise((r) => setTimeout(r, 10));
    expect([c.ttl('r'), c.info('r'), c.peek('r'), c.touch('r', 5), c.getMany(['r'])[0]]).toEqual([undefined, undefined, undefined, false, undefined]);
    release('done');
    expect(await p).toBe('done');
    expect(c.peek('r')).toBe('done');
  });
});

describe('size and capacity', () => {
  test('size counts entries (as stats().entries); capacity is the segment size, also before open', () => {
    const path = tmp.file();
    const c = new Cache<any>({ path, size: '2MB', stamp: false });
    open.push(c);
    expect(c.capacity).toBe(2 * 1024 * 1024);
    expect(c.isOpen).toBe(false);
    expect(c.size).toBe(0);
    c.setMany([['a', 1], ['b', 2]]);
    expect(c.size).toBe(2);
    expect(c.size).toBe(c.stats().entries);
    const other = new Cache<any>({ path, size: '8MB', stamp: false });
    open.push(other);
    expect(other.capacity).toBe(8 * 1024 * 1024);
    other.open();
    expect(other.capacity).toBe(2 * 1024 * 1024);
    expect(other.size).toBe(2);
  });
});

describe('while other processes write', () => {
  test('getMany never returns a torn or misplaced value while two processes set, setMany, deleteMany and touch the keys', async () => {
    const path = tmp.file();
    const c = new Cache<any>({ path, size: '8MB', stamp: false });
    open.push(c);
    c.open();
    const keys = Array.from({ length: 200 }, (_, i) => `w${i}`);
    const writers = [0, 1].map(() => spawn(process.execPath, [join(fixtures, 'map-writer.mjs'), JSON.stringify({ path, prefix: 'w', keys: 200, ms: 2500 })], { stdio: ['ignore', 'pipe', 'inherit'] }));
    await Promise.all(writers.map((w) => new Promise((resolve) => createInterface({ input: w.stdout! }).once('line', resolve))));
    const exited = Promise.all(writers.map((w) => new Promise<number | null>((resolve) => w.on('exit', resolve))));
    let batches = 0;
    let seen = 0;
    let bad = 0;
    const end = Date.now() + 2000;
    while (Date.now() < end) {
      const got = c.getMany(keys);
      batches++;
      got.forEach((v, i) => {
        if (v === undefined) return;
        seen++;
        if (!mapValueOk(keys[i]!, v)) bad++;
      });
      await new Promise((r) => setImmediate(r));
    }
    expect(await exited).toEqual([0, 0]);
    expect(bad).toBe(0);
    expect(batches).toBeGreaterThan(10);
    expect(seen).toBeGreaterThan(100);
    expect(c.verify()).toEqual({ ok: true, problems: [] });
  });
});

describe.runIf(isRoot)('a read-only segment', () => {
  const mnt = join(tmp.dir, 'ro-batch');
  beforeAll(() => {
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  });
  afterAll(() => {
    execFileSync('umount', [mnt]);
  });

  test('getMany, peek, ttl, info, size and entries read; setMany, deleteMany and touch throw PERMISSION and write nothing', () => {
    const path = join(mnt, 'ro.shm');
    const w = new Cache<any>({ path, size: '1MB', stamp: false });
    w.setMany([['a', 'A'], ['b', 2]], { ttl: 60_000 });
    w.close();
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    try {
      const before = readFileSync(path);
      const ro = new Cache<any>({ path, stamp: false });
      expect(ro.getMany(['a', 'b', 'c'])).toEqual(['A', 2, undefined]);
      expect(ro.peek('a')).toBe('A');
      expect(ro.ttl('a')).toBeGreaterThan(0);
      expect(ro.info('b')).toMatchObject({ type: 'number', bytes: 8 });
      expect(ro.size).toBe(2);
      expect(new Map(ro.entries())).toEqual(new Map<string, unknown>([['a', 'A'], ['b', 2]]));
      for (const write of [() => ro.setMany([['a', 'x']]), () => ro.deleteMany(['a']), () => ro.touch('a', 1)]) {
        let err: unknown;
        try {
          write();
        } catch (e) {
          err = e;
        }
        expect(err).toMatchObject({ code: 'ERR_SHMCACHE_PERMISSION', errno: 30 });
      }
      expect(ro.getMany(['a'])).toEqual(['A']);
      ro.close();
      expect(readFileSync(path).equals(before)).toBe(true);
    } finally {
      execFileSync('mount', ['-o', 'remount,rw', mnt]);
    }
  });
});
