import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, test } from 'vitest';
import { Cache } from '../esm/index.mjs';
import { setClockOffsetForTesting } from '../dist/testing.js';
import { mapValueOk } from './fixtures/map-lib.mjs';
import { code, fixtures, tempDir, verifyAndClose } from './helpers';

// entries(), values() and [Symbol.iterator]: shard by shard, no lock held
// between steps, never a torn entry.
const tmp = tempDir();
const open: Cache<any>[] = [];
function cache(options: Record<string, unknown> = {}): Cache<any> {
  const c = new Cache<any>({ path: tmp.file(), size: '8MB', stamp: false, ...options });
  open.push(c);
  return c;
}
afterEach(() => {
  setClockOffsetForTesting(0);
  verifyAndClose(open);
});

describe('entries, values, iterator', () => {
  test('every live pair once, of every type, like a Map; values() and for...of agree', () => {
    const c = cache();
    const want = new Map<string, unknown>();
    for (let i = 0; i < 3000; i++) want.set(`k${i}`, i % 4 === 0 ? i : i % 4 === 1 ? `s${i}` : i % 4 === 2 ? Buffer.from(`b${i}`) : { i });
    want.set('ü', 'ünï');
    c.setMany(want);
    const seen = [...c.entries()];
    expect(seen.length).toBe(want.size);
    expect(new Map(seen)).toEqual(want);
    expect(new Map(c)).toEqual(want);
    expect([...c.values()].length).toBe(want.size);
    expect(c[Symbol.iterator]().next().done).toBe(false);
  });

  test('a prefix keeps only keys starting with it; a bad prefix throws when called', () => {
    const c = cache();
    c.setMany([['user:1', 'a'], ['user:2', 'b'], ['users', 'c'], ['post:1', 'd'], ['üser:1', 'e']]);
    expect(new Map(c.entries('user:'))).toEqual(new Map([['user:1', 'a'], ['user:2', 'b']]));
    expect([...c.values('üser')]).toEqual(['e']);
    expect([...c.entries('nothing')]).toEqual([]);
    expect([...c.entries('x'.repeat(2000))]).toEqual([]);
    expect(code(() => c.entries('\ud800'))).toBe('ERR_SHMCACHE_INVALID_KEY');
    expect(code(() => c.values(3 as never))).toBe('ERR_SHMCACHE_INVALID_KEY');
  });

  test('skips expired entries and remember() claims', async () => {
    const c = cache();
    c.set('short', 1, { ttl: 100 });
    c.set('long', 2, { ttl: 100_000 });
    let release!: (v: number) => void;
    const p = c.remember('claimed', () => new Promise<number>((r) => (release = r)));
    await new Promise((r) => setTimeout(r, 10));
    setClockOffsetForTesting(200);
    expect(new Map(c)).toEqual(new Map([['long', 2]]));
    release(3);
    await p;
    expect(new Map(c)).toEqual(new Map([['long', 2], ['claimed', 3]]));
  });

  test('values larger than a chunk, and many of them in one bucket chain', () => {
    const c = cache({ size: '32MB' });
    const big = new Map<string, string>();
    for (let i = 0; i < 40; i++) big.set(`big${i}`, String(i).repeat(150_000 + i));
    c.setMany(big);
    const got = new Map(c);
    expect(got.size).toBe(40);
    for (const [k, v] of big) expect(got.get(k) === v).toBe(true);
  });

  test('holds no lock between steps: this process writes and deletes every key mid-walk without waiting', () => {
    const c = cache();
    for (let i = 0; i < 2000; i++) c.set(`k${i}`, i);
    const seen = new Set<string>();
    const t0 = Date.now();
    for (const [k] of c) {
      seen.add(k);
      // Every shard, from inside the loop: a lock held across the yield
      // would make these time out (or deadlock).
      c.set(`new${seen.size}`, 1);
      c.delete(`k${(seen.size * 7) % 2000}`);
      if (seen.size === 50) c.clear();
    }
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(seen.size).toBeGreaterThanOrEqual(50);
  });

  test('a generator left open holds nothing; close() ends it with CLOSED', () => {
    const c = cache();
    for (let i = 0; i < 5000; i++) c.set(`k${i}`, `v${i}`);
    const it = c.entries();
    it.next();
    c.set('k1', 'again');
    c.close();
    expect(() => {
      for (let i = 0; i < 10_000; i++) it.next();
    }).toThrow(expect.objectContaining({ code: 'ERR_SHMCACHE_CLOSED' }));
  });

  test('a shard dropped mid-walk (damage) is left out, not returned in part', () => {
    const c = cache();
    for (let i = 0; i < 1000; i++) c.set(`k${i}`, i);
    const it = c.entries();
    const first = it.next();
    expect(first.done).toBe(false);
    c.clear();
    const rest = [...it];
    // What was copied before the clear may come; nothing written after.
    for (const [k, v] of rest) expect(v).toBe(Number(k.slice(1)));
    expect(rest.length).toBeLessThan(1000);
  });
});

describe('while other processes write', () => {
  test('entries() walks while two processes set, setMany, deleteMany and touch: nothing torn, misplaced or invented, stable keys all seen once', async () => {
    const path = tmp.file();
    const c = new Cache<any>({ path, size: '16MB', stamp: false });
    open.push(c);
    const stable = new Map<string, string>();
    for (let i = 0; i < 500; i++) stable.set(`stable${i}`, `value ${i}`);
    c.setMany(stable);
    const writers = [0, 1].map(() => spawn(process.execPath, [join(fixtures, 'map-writer.mjs'), JSON.stringify({ path, prefix: 'w', keys: 300, ms: 3000 })], { stdio: ['ignore', 'pipe', 'inherit'] }));
    await Promise.all(writers.map((w) => new Promise((resolve) => createInterface({ input: w.stdout! }).once('line', resolve))));
    const exited = Promise.all(writers.map((w) => new Promise<number | null>((resolve) => w.on('exit', resolve))));
    const end = Date.now() + 2500;
    let walks = 0;
    let written = 0;
    while (Date.now() < end) {
      const counts = new Map<string, number>();
      let steps = 0;
      for (const [k, v] of c) {
        counts.set(k, (counts.get(k) ?? 0) + 1);
        if (k.startsWith('stable')) expect(v).toBe(stable.get(k));
        else {
          expect(k).toMatch(/^w\d+$/);
          expect(mapValueOk(k, v)).toBe(true);
          written++;
        }
        // Let the writers in between steps.
        if (++steps % 100 === 0) await new Promise((r) => setImmediate(r));
      }
      for (const k of stable.keys()) expect(counts.get(k)).toBe(1);
      walks++;
    }
    expect(await exited).toEqual([0, 0]);
    expect(walks).toBeGreaterThan(1);
    expect(written).toBeGreaterThan(0);
  });
});
