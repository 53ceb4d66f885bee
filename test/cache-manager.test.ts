import { afterAll, describe, expect, test } from 'vitest';
import Keyv from 'keyv';
import { createCache } from 'cache-manager';
import { KeyvShmcache } from '../esm/keyv.mjs';
import { runFixture, tempDir } from './helpers';

// cache-manager 7 over Keyv over KeyvShmcache: one store for every process
// of the machine.
const tmp = tempDir();
const path = tmp.file('cm');
const store = new KeyvShmcache({ path, size: '4MB', stamp: false });
const cache = createCache({ stores: [new Keyv({ store, namespace: 'cm' })] });
afterAll(() => cache.disconnect());

async function child(ops: unknown[][]): Promise<{ results: unknown[]; produced: number }> {
  const r = await runFixture('map-adapters.mjs', [JSON.stringify({ path, kind: 'cache-manager', ops })]);
  if (r.code !== 0 || r.messages.length !== 1) throw new Error(`map-adapters.mjs failed: ${r.stderr}`);
  return r.messages[0];
}

describe('cache-manager 7 with a KeyvShmcache store', () => {
  test('values set in one process are read in another, and deletes are seen', async () => {
    await cache.set('shared', { from: 'parent' }, 60_000);
    expect(await child([['get', 'shared'], ['set', 'back', 'from child']])).toEqual({ results: [{ from: 'parent' }, 'from child'], produced: 0 });
    expect(await cache.get('back')).toBe('from child');
    await cache.del('back');
    expect((await child([['get', 'back']])).results).toEqual([null]);
  });

  test('wrap(): the first process produces, the next process gets the stored value without producing', async () => {
    const first = await child([['wrap', 'report', 'made by the first']]);
    expect(first).toEqual({ results: ['made by the first'], produced: 1 });
    const second = await child([['wrap', 'report', 'made by the second']]);
    expect(second).toEqual({ results: ['made by the first'], produced: 0 });
    let calls = 0;
    expect(await cache.wrap('report', async () => (calls++, 'made here'))).toBe('made by the first');
    expect(calls).toBe(0);
  });

  test('TTLs reach the segment', async () => {
    await cache.set('ttl', 'x', 30_000);
    const left = store.cache.ttl('cm:ttl');
    expect(left).toBeGreaterThan(25_000);
    expect(left).toBeLessThanOrEqual(30_000);
    expect(await cache.ttl('ttl')).toBeGreaterThan(Date.now());
  });
});
