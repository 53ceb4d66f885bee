import * as fs from 'node:fs';
import { afterEach, describe, expect, test } from 'vitest';
import { Cache, type CacheStats } from '../esm/index.mjs';
import { setClockOffsetForTesting } from '../dist/testing.js';
import { tempDir } from './helpers';

const tmp = tempDir();
const MB = 1024 * 1024;
const open: Cache<any>[] = [];
function cache(size = '1MB', options: Record<string, unknown> = {}): Cache<any> {
  const c = new Cache({ path: tmp.file(), size, stamp: false, ...options });
  open.push(c);
  return c.open();
}
afterEach(() => {
  setClockOffsetForTesting(0);
  for (const c of open.splice(0)) {
    if (c.isOpen) expect(c.verify()).toEqual({ ok: true, problems: [] });
    c.close();
  }
});

const value100 = (i: number) => `${i}:`.padEnd(100, 'v');

describe('eviction', () => {
  test('filling 10x the segment evicts just enough, never everything', () => {
    const c = cache('1MB');
    const total = Math.ceil((10 * MB) / 100);
    let minEntriesAfterFull = Infinity;
    let full = false;
    for (let i = 0; i < total; i++) {
      c.set(`key:${i}`, value100(i));
      expect(c.get(`key:${i}`)).toBe(value100(i)); // a set never fails
      if (i % 1000 === 999) {
        const s = c.stats();
        if (s.evictions > 0) full = true;
        if (full) minEntriesAfterFull = Math.min(minEntriesAfterFull, s.entries);
      }
    }
    const s = c.stats();
    expect(s.evictions).toBeGreaterThan(total / 2);
    // Roughly 150 bytes an entry: a 1 MB segment holds about 6,000 of them.
    expect(minEntriesAfterFull).toBeGreaterThan(4000);
    expect(s.entries).toBeGreaterThan(4000);
    // The newest entries are the ones kept.
    for (let i = total - 1000; i < total; i++) expect(c.get(`key:${i}`)).toBe(value100(i));
    expect(c.get('key:0')).toBeUndefined();
    // Key and value bytes make up most of the segment.
    expect(s.used / s.size).toBeGreaterThan(0.6);
  });

  test('entries read since they were written get a second chance', () => {
    const c = cache('1MB');
    const hot = Array.from({ length: 50 }, (_, i) => `hot:${i}`);
    for (const k of hot) c.set(k, value100(0));
    for (let i = 0; i < 100_000; i++) {
      c.set(`cold:${i}`, value100(i));
      if (i % 200 === 0) for (const k of hot) c.get(k);
    }
    const kept = hot.filter((k) => c.get(k) !== undefined).length;
    expect(c.get('cold:0')).toBeUndefined();
    expect(kept).toBeGreaterThanOrEqual(45);
  });

  test('a scan of new keys, twice the cache, passes through the small FIFO: a read working set stays', () => {
    const c = cache('4MB');
    const hot = Array.from({ length: 5000 }, (_, i) => `hot:${i}`);
    // Full of entries first, the hot ones read (promoted to main).
    for (let i = 0; i < 40_000; i++) c.set(`old:${i}`, value100(i));
    for (let round = 0; round < 3; round++) {
      for (const k of hot) if (c.get(k) === undefined) c.set(k, value100(0));
    }
    const entries = c.stats().entries;
    for (let i = 0; i < 2 * entries; i++) c.set(`scan:${i}`, value100(i));
    const kept = hot.filter((k) => c.get(k) !== undefined).length;
    expect(kept).toBeGreaterThanOrEqual(4500);
    expect(c.stats().entries).toBeGreaterThan(entries / 2);
  });

  test('small and large entries never share a page, so small values stay dense', () => {
    const c = cache('4MB');
    const big = Buffer.alloc(1500, 1);
    for (let i = 0; i < 20_000; i++) {
      c.set(`s:${i}`, value100(i));
      c.set(`b:${i}`, big);
    }
    // Read the pages back from the file, as docs/design.md lays them out.
    const file = fs.readFileSync(c.path);
    const pageSize = file.readUInt32LE(32);
    const npages = file.readUInt32LE(36);
    const pagesOff = Number(file.readBigUInt64LE(64));
    const heapOff = Number(file.readBigUInt64LE(80));
    let small = 0;
    let large = 0;
    for (let p = 0; p < npages; p++) {
      const rec = pagesOff + p * 32;
      if (file.readUInt32LE(rec) === 0 || file.readUInt32LE(rec + 8) !== 1) continue; // free, or part of a span
      const used = file.readUInt32LE(rec + 12);
      const classes = new Set<number>();
      for (let off = 0; off < used; ) {
        const alloc = file.readUInt32LE(heapOff + p * pageSize + off + 16);
        classes.add(alloc <= 512 ? 0 : 1);
        off += alloc;
      }
      expect(classes.size).toBeLessThanOrEqual(1);
      if (classes.has(0)) small++;
      if (classes.has(1)) large++;
    }
    expect(small).toBeGreaterThan(0);
    expect(large).toBeGreaterThan(0);
  });

  test('values up to 1/8 of the segment fit, however fragmented the heap', () => {
    const c = cache('1MB');
    const max = c.maxValueSize;
    expect(max).toBe(MB / 8);
    // Fragment: fill with small values of mixed sizes, then punch holes.
    let n = 0;
    while (c.stats().evictions === 0) c.set(`small:${n++}`, 'x'.repeat(20 + (n % 400)));
    for (let i = 0; i < n; i += 2) c.delete(`small:${i}`);
    const big = Buffer.alloc(max, 1);
    c.set('big', big);
    expect(c.get('big').equals(big)).toBe(true);
    // Churn of every size, large ones included: every set succeeds.
    let seed = 7;
    const rand = (m: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % m);
    for (let i = 0; i < 3000; i++) {
      const size = rand(10) === 0 ? rand(max + 1) : rand(2000);
      const v = Buffer.alloc(size, i % 251);
      c.set(`churn:${rand(500)}`, v);
      c.set('last', v);
      expect(c.get('last').equals(v)).toBe(true);
    }
    expect(() => c.set('too-big', Buffer.alloc(max + 1))).toThrow(/larger than this cache's limit/);
  });

  // Sets and adds of three values just too large: each is VALUE_TOO_LARGE.
  function setTooLarge(c: Cache<any>): { before: CacheStats; after: CacheStats } {
    c.set('k', 'old');
    const before = c.stats();
    for (const v of [Buffer.alloc(c.maxValueSize + 1), 'x'.repeat(c.maxValueSize + 1), { s: 'y'.repeat(c.maxValueSize) }]) {
      expect(() => c.set('k', v)).toThrow(expect.objectContaining({ code: 'ERR_SHMCACHE_VALUE_TOO_LARGE' }));
      expect(() => c.add('new', v)).toThrow(expect.objectContaining({ code: 'ERR_SHMCACHE_VALUE_TOO_LARGE' }));
    }
    expect(c.get('k')).toBe('old');
    expect(c.has('new')).toBe(false);
    return { before, after: c.stats() };
  }

  test('a value larger than 1/8 is VALUE_TOO_LARGE and leaves the cache unchanged', () => {
    const c = cache('2MB');
    const { before, after } = setTooLarge(c);
    // The default codec (msgpack) may have saved the object's record
    // structure before its size was known: those are its own reserved
    // entries (not counted in entries), the only writes allowed here.
    expect(after.sets - before.sets).toBeLessThanOrEqual(2);
    expect(after.entries).toBe(before.entries);
    expect([...c.keys()]).toEqual(['k']);
  });

  test('a value larger than 1/8 changes nothing at all with the v8 codec', () => {
    const { before, after } = setTooLarge(cache('2MB', { codec: 'v8' }));
    expect(after.sets).toBe(before.sets);
    expect(after.entries).toBe(before.entries);
  });
});

describe('time to live', () => {
  test('an entry lives its ttl and not a millisecond longer', () => {
    const c = cache();
    c.set('a', 'x', { ttl: 1000 });
    c.set('forever', 'y');
    // The clock is only shifted, not frozen: real milliseconds still pass, so
    // the last live instant checked is well inside the ttl.
    setClockOffsetForTesting(500);
    expect(c.get('a')).toBe('x');
    expect(c.has('a')).toBe(true);
    setClockOffsetForTesting(1000);
    expect(c.get('a')).toBeUndefined();
    expect(c.has('a')).toBe(false);
    expect(c.keys()).toEqual(['forever']);
    expect(c.delete('a')).toBe(false);
    setClockOffsetForTesting(10 ** 9);
    expect(c.get('forever')).toBe('y');
  });

  test('the cache ttl is the default, a per-call ttl overrides it, 0 means none', () => {
    const c = cache('1MB', { ttl: 500 });
    c.set('default', 1);
    c.set('long', 2, { ttl: 5000 });
    c.set('none', 3, { ttl: 0 });
    setClockOffsetForTesting(600);
    expect(c.get('default')).toBeUndefined();
    expect(c.get('long')).toBe(2);
    expect(c.get('none')).toBe(3);
  });

  test('add over an expired entry stores; incr restarts an expired counter', () => {
    const c = cache();
    c.set('a', 'old', { ttl: 100 });
    c.incr('n', 5, { ttl: 100 });
    expect(c.incr('n', 1, { ttl: 100_000 })).toBe(6); // ttl only when created
    setClockOffsetForTesting(100);
    expect(c.add('a', 'new')).toBe(true);
    expect(c.get('a')).toBe('new');
    expect(c.incr('n', 1, { initial: 10 })).toBe(11);
    expect(c.cas('gone', 0, 1)).toBe(false);
  });

  test('expired entries are reclaimed incrementally by writers', () => {
    const c = cache();
    for (let i = 0; i < 1000; i++) c.set(`t:${i}`, value100(i), { ttl: 50 });
    setClockOffsetForTesting(50);
    for (let i = 0; i < 10_000; i++) c.set(`p:${i % 100}`, i);
    const s = c.stats();
    expect(s.expired).toBeGreaterThanOrEqual(900);
    expect(s.entries).toBeLessThan(300);
  });
});
