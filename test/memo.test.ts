import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { Cache } from '../esm/index.mjs';
import { setClockOffsetForTesting } from '../dist/testing.js';
import { code, fixtures, tempDir, verifyAndClose } from './helpers';

// The memo (option `memo`): a handle keeps strings it read and returns them
// after checking that their entry is still the live one. Each test reads
// through a memo handle (`m`) and changes the segment through a handle
// without one (`w`): a kept string that outlived its entry fails it.
const tmp = tempDir();
const open: Cache<any>[] = [];
function pair(size = '2MB'): { m: Cache<any>; w: Cache<any>; path: string } {
  const path = tmp.file();
  const w = new Cache<any>({ path, size, stamp: false });
  const m = new Cache<any>({ path, size, stamp: false, memo: '1MB' });
  open.push(m, w);
  return { m, w, path };
}
afterEach(() => {
  setClockOffsetForTesting(0);
  verifyAndClose(open);
});

describe('memo', () => {
  test('a kept string is dropped when another handle replaces, deletes or clears it', () => {
    const { m, w } = pair();
    w.set('k', 'one');
    w.set('u', 'ü is not ASCII');
    expect(m.get('k')).toBe('one');
    expect(m.get('k')).toBe('one');
    expect(m.get('u')).toBe('ü is not ASCII');
    w.set('k', 'two');
    expect(m.get('k')).toBe('two');
    w.set('k', 42);
    expect(m.get('k')).toBe(42);
    w.set('k', 'three');
    expect(m.get('k')).toBe('three');
    w.delete('k');
    expect(m.get('k')).toBeUndefined();
    expect(m.has('k')).toBe(false);
    w.set('k', 'four');
    expect(m.get('k')).toBe('four');
    expect(m.has('k')).toBe(true);
    w.clear();
    expect(m.get('k')).toBeUndefined();
    expect(m.get('u')).toBeUndefined();
  });

  test('writes to other keys of the same page leave a kept string valid and correct', () => {
    const { m, w } = pair();
    for (let i = 0; i < 50; i++) w.set(`k${i}`, `value ${i}`);
    for (let i = 0; i < 50; i++) expect(m.get(`k${i}`)).toBe(`value ${i}`);
    // Replacing the odd keys bumps the versions of the pages the even ones share.
    for (let i = 1; i < 50; i += 2) w.set(`k${i}`, `new ${i}`);
    for (let i = 0; i < 50; i++) expect(m.get(`k${i}`)).toBe(i % 2 ? `new ${i}` : `value ${i}`);
    for (let i = 0; i < 50; i++) expect(m.get(`k${i}`)).toBe(i % 2 ? `new ${i}` : `value ${i}`);
  });

  test('a page reused by bytes that mimic the kept entry header never brings it back', () => {
    const { m, w } = pair('1MB');
    // Four-byte keys: the values that follow them start 4-byte aligned, so
    // the forged words below land on the word the memo checks.
    const keys = Array.from({ length: 200 }, (_, i) => `k${String(i).padStart(3, '0')}`);
    for (const k of keys) w.set(k, `${k} `.padEnd(100, 'x'));
    for (const k of keys) expect(m.get(k)).toBe(`${k} `.padEnd(100, 'x'));
    // The header word of those entries while linked: key length 4, type
    // ASCII (6), flags live (1).
    const forged = Buffer.alloc(2000);
    for (let o = 0; o < forged.length; o += 4) forged.writeUInt32LE(4 | (6 << 16) | (1 << 24), o);
    // Fill the segment several times over, with small and large entries:
    // every page is evicted and reused, by either size class.
    for (let i = 0; i < 6000; i++) {
      w.set(`f${String(i % 1000).padStart(3, '0')}`, i % 2 ? forged.subarray(0, 200) : forged);
    }
    for (const k of keys) {
      expect(m.get(k)).toEqual(w.get(k));
      expect(m.has(k)).toBe(w.has(k));
    }
    expect(w.stats().evictions).toBeGreaterThan(200);
  });

  test('a kept string expires with its entry, and counts as a hit while it lives', () => {
    const { m, w } = pair();
    w.set('t', 'short-lived', { ttl: 1000 });
    const before = w.stats();
    for (let i = 0; i < 10; i++) expect(m.get('t')).toBe('short-lived');
    const after = w.stats();
    expect(after.hits - before.hits).toBe(10);
    expect(after.misses - before.misses).toBe(0);
    setClockOffsetForTesting(500);
    expect(m.get('t')).toBe('short-lived');
    setClockOffsetForTesting(1001);
    expect(m.get('t')).toBeUndefined();
    expect(m.has('t')).toBe(false);
  });

  test('a reset by a newer start-time stamp drops every kept string', () => {
    const path = tmp.file();
    const m = new Cache<any>({ path, stamp: 1, memo: '1MB' });
    open.push(m);
    m.set('k', 'before the reset');
    expect(m.get('k')).toBe('before the reset');
    const newer = new Cache<any>({ path, stamp: 2 });
    open.push(newer);
    newer.open();
    expect(newer.stats().resets).toBe(1);
    expect(m.get('k')).toBeUndefined();
  });

  test('a memo too small for a string keeps nothing and changes no result', () => {
    const path = tmp.file();
    const w = new Cache<any>({ path, stamp: false });
    const m = new Cache<any>({ path, stamp: false, memo: 64 });
    open.push(m, w);
    w.set('k', 'x'.repeat(100));
    expect(m.get('k')).toBe('x'.repeat(100));
    w.set('k', 'y');
    expect(m.get('k')).toBe('y');
  });

  test('a closed handle throws CLOSED instead of returning what it kept', () => {
    const { m, w } = pair();
    w.set('k', 'v');
    expect(m.get('k')).toBe('v');
    m.close();
    expect(code(() => m.get('k'))).toBe('ERR_SHMCACHE_CLOSED');
    expect(code(() => m.has('k'))).toBe('ERR_SHMCACHE_CLOSED');
  });

  test('bad memo sizes are INVALID_OPTION', () => {
    for (const memo of [-1, 1.5, '2GB', 'lots', {}, null]) {
      expect(code(() => new Cache({ path: tmp.file(), memo: memo as any }))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    }
    expect(new Cache({ path: tmp.file(), memo: '1GB' }).isOpen).toBe(false);
  });

  test("another process's reads through its memo never go back to an older value", async () => {
    const path = tmp.file();
    const w = new Cache<any>({ path, size: '1MB', stamp: false });
    open.push(w);
    w.set('n', '0:'.padEnd(100, 'v'));
    const child = spawn(process.execPath, [join(fixtures, 'memo-reader.mjs'), JSON.stringify({ path, key: 'n' })], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    expect(JSON.parse((await lines.next()).value)).toEqual({ ready: true });
    // Neighbours written in between move the page versions without touching
    // `n`, so the reader takes both of the memo's paths.
    for (let i = 1; i <= 20_000; i++) {
      w.set('n', `${i}:`.padEnd(100, 'v'));
      if (i % 3 === 0) w.set(`other${i % 40}`, 'x'.repeat(i % 200));
    }
    w.set('n', 'done');
    const report = JSON.parse((await lines.next()).value);
    expect(report.samples).toEqual([]);
    expect(report.backwards).toBe(0);
    expect(report.last).toBeLessThanOrEqual(20_000);
    expect(report.distinct).toBeGreaterThan(1);
    expect(report.reads).toBeGreaterThan(report.distinct);
  });
});
