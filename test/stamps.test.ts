import { describe, expect, test } from 'vitest';
import { Cache } from '../esm/index.mjs';
import { openInChild, tempDir } from './helpers';

const tmp = tempDir();

function at(path: string, stamp: number | false): Cache<any> {
  return new Cache({ path, size: '1MB', stamp }).open();
}

describe('start-time stamps', () => {
  test('a newer stamp resets once; older and equal stamps attach as they are', () => {
    const path = tmp.file();
    const a = at(path, 100);
    a.set('k', 'from 100');
    expect(a.stats()).toMatchObject({ stamp: 100, resets: 0 });

    const older = at(path, 50);
    expect(older.get('k')).toBe('from 100');
    expect(older.stats()).toMatchObject({ stamp: 100, resets: 0 });

    const newer = at(path, 200);
    expect(newer.get('k')).toBeUndefined();
    expect(newer.stats()).toMatchObject({ stamp: 200, resets: 1 });
    newer.set('k', 'from 200');

    const same = at(path, 200);
    expect(same.get('k')).toBe('from 200');
    const olderAgain = at(path, 100);
    expect(olderAgain.get('k')).toBe('from 200');
    expect(olderAgain.stats().resets).toBe(1);

    // The old handle sees the reset at once, never a value from before it.
    expect(a.get('k')).toBe('from 200');
    for (const c of [a, older, newer, same, olderAgain]) c.close();
  });

  test('stamp false never resets, and a segment it creates is stamped 0', () => {
    const path = tmp.file();
    const p = at(path, false);
    p.set('k', 1);
    expect(p.stats().stamp).toBe(0);
    const q = at(path, 5);
    expect(q.get('k')).toBeUndefined();
    q.set('k', 2);
    const r = at(path, false);
    expect(r.get('k')).toBe(2);
    expect(r.stats()).toMatchObject({ stamp: 5, resets: 1 });
    for (const c of [p, q, r]) c.close();
  });

  test('SHMCACHE_STAMP overrides the default and the stamp option overrides it', async () => {
    const path = tmp.file();
    const c = at(path, 1000);
    c.set('k', 'v');
    let r = await openInChild(path, {}, [['get', 'k']], { env: { SHMCACHE_STAMP: '999' } });
    expect(r).toMatchObject({ ok: true, results: ['v'], stats: { stamp: 1000 } });
    r = await openInChild(path, { stamp: 5 }, [['get', 'k']], { env: { SHMCACHE_STAMP: '5000' } });
    expect(r).toMatchObject({ ok: true, results: ['v'], stats: { stamp: 1000 } });
    r = await openInChild(path, {}, [['get', 'k']], { env: { SHMCACHE_STAMP: '2000' } });
    expect(r).toMatchObject({ ok: true, results: [null], stats: { stamp: 2000, resets: 1 } });
    c.close();
  });

  test('the default stamp is this process group leader start time, shared by children', async () => {
    const path = tmp.file();
    const saved = process.env.SHMCACHE_STAMP;
    delete process.env.SHMCACHE_STAMP;
    try {
      const c = new Cache({ path, size: '1MB' });
      c.set('k', 'parent');
      const stamp = c.stats().stamp;
      expect(stamp).toBeGreaterThan(1_500_000_000_000); // ms since the epoch
      expect(stamp).toBeLessThanOrEqual(Date.now());
      const r = await openInChild(path, {}, [['get', 'k']], { env: { SHMCACHE_STAMP: undefined } });
      expect(r).toMatchObject({ ok: true, results: ['parent'], stats: { stamp, resets: 0 } });
      c.close();
    } finally {
      if (saved !== undefined) process.env.SHMCACHE_STAMP = saved;
    }
  });
});
