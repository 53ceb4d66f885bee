import * as vitest from 'vitest';
import { afterAll, describe, expect, test, vi } from 'vitest';
import Keyv from 'keyv';
import { keyvApiTests, keyvIteratorTests, keyvNamespaceTest, keyvValueTests } from '@keyv/test-suite';
import { Cache } from '../esm/index.mjs';
import { KeyvShmcache } from '../esm/keyv.mjs';
import { setClockOffsetForTesting } from '../dist/testing.js';
import { tempDir } from './helpers';

// shmcache/keyv: the official @keyv/test-suite groups that apply to a
// store (its compression group tests compression adapters, not stores),
// then what the suite does not check: TTLs in the segment, the namespace
// scope of clear(), ownership, keys a segment cannot hold as they are.
const tmp = tempDir();
const shared = new Cache<unknown>({ path: tmp.file('keyv'), size: '8MB', stamp: false });
afterAll(() => shared.close());
const store = () => new KeyvShmcache(shared);

/**
 * Keyv 5 wires `keyv.iterator()` only to stores of its own dialects (a
 * whitelist: sqlite, postgres, mysql, mongo, redis, valkey, etcd). This Keyv
 * wires it to any store with an iterator, as Keyv does for those, so that
 * the suite's iterator group runs against KeyvShmcache.iterator().
 */
class IteratingKeyv extends Keyv {
  constructor(options?: ConstructorParameters<typeof Keyv>[0]) {
    super(options);
    const s = this.store as KeyvShmcache;
    if (typeof s.iterator === 'function') {
      this.iterator = (this as unknown as { generateIterator(fn: unknown): Keyv['iterator'] }).generateIterator(s.iterator.bind(s));
    }
  }
}

describe('@keyv/test-suite: keyvApiTests', () => keyvApiTests(vitest, Keyv, store));
describe('@keyv/test-suite: keyvValueTests', () => keyvValueTests(vitest, Keyv, store));
describe('@keyv/test-suite: keyvNamespaceTest', () => keyvNamespaceTest(vitest, Keyv, store));
describe('@keyv/test-suite: keyvIteratorTests', () => keyvIteratorTests(vitest, IteratingKeyv as typeof Keyv, store));

describe('KeyvShmcache', () => {
  test('TTLs are the segment\'s: the entry expires in shmcache, not only in Keyv\'s wrapper', async () => {
    const keyv = new Keyv({ store: store(), namespace: 'ttl' });
    await keyv.set('short', 'v', 1000);
    await keyv.set('forever', 'v');
    expect(shared.ttl('ttl:short')).toBeGreaterThan(900);
    expect(shared.ttl('ttl:forever')).toBe(0);
    setClockOffsetForTesting(1500);
    try {
      expect(shared.has('ttl:short')).toBe(false);
      expect(shared.get('ttl:forever')).toBeDefined();
    } finally {
      setClockOffsetForTesting(0);
    }
  });

  test('getMany, setMany, deleteMany and has are the store\'s own, one native batch each', async () => {
    const s = store();
    const keyv = new Keyv({ store: s, namespace: 'batch' });
    const getMany = vi.spyOn(shared, 'getMany');
    const setMany = vi.spyOn(shared, 'setMany');
    const deleteMany = vi.spyOn(shared, 'deleteMany');
    try {
      await keyv.setMany([{ key: 'a', value: 1 }, { key: 'b', value: 2, ttl: 5000 }, { key: 'c', value: 3, ttl: 5000 }]);
      expect(setMany).toHaveBeenCalledTimes(1); // one batch, shorter TTLs retimed in place
      expect(shared.ttl('batch:a')).toBe(0);
      expect(shared.ttl('batch:b')).toBeGreaterThan(4000);
      expect(await keyv.getMany(['a', 'b', 'x'])).toEqual([1, 2, undefined]);
      expect(getMany).toHaveBeenCalledTimes(1);
      expect(await keyv.has('c')).toBe(true);
      expect(await keyv.delete(['a', 'b'])).toBe(true);
      expect(deleteMany).toHaveBeenCalledTimes(1);
      expect(await keyv.get(['a', 'b', 'c'])).toEqual([undefined, undefined, 3]);
    } finally {
      vi.restoreAllMocks();
    }
  });

  test('clear() empties only its namespace; without one, the segment', async () => {
    const a = new Keyv({ store: store(), namespace: 'ns-a' });
    const b = new Keyv({ store: store(), namespace: 'ns-b' });
    await a.set('k', 1);
    await b.set('k', 2);
    shared.set('ns-a-not-a-namespace', 'x');
    await a.clear();
    expect(await a.get('k')).toBeUndefined();
    expect(await b.get('k')).toBe(2);
    expect(shared.get('ns-a-not-a-namespace')).toBe('x');
    const all = new Keyv({ store: store(), namespace: undefined as unknown as string });
    await all.clear();
    expect(await b.get('k')).toBeUndefined();
    expect(shared.size).toBe(0);
  });

  test('keys too long or ill-formed for a segment: stored under a digest, read, iterated with their own name, deleted, cleared', async () => {
    const s = store();
    const keyv = new Keyv({ store: s, namespace: 'long' });
    const long = 'k'.repeat(5000);
    const lone = 'bad\ud800key';
    const marked = 'has\u0000#mark';
    await keyv.set(long, 'L');
    await keyv.set(lone, 'S', 10_000);
    await keyv.set(marked, 'M');
    await keyv.set('short', 'plain');
    expect(await keyv.get(long)).toBe('L');
    expect(await keyv.get('k'.repeat(4999))).toBeUndefined();
    expect(await keyv.get(lone)).toBe('S');
    expect(await keyv.get('bad\udc00key')).toBeUndefined(); // another lone surrogate, another key
    expect(await keyv.get(marked)).toBe('M');
    expect(await keyv.has(long)).toBe(true);
    expect(await keyv.getMany([long, lone, 'short'])).toEqual(['L', 'S', 'plain']);
    const seen = new Map<string, unknown>();
    for await (const [k, v] of s.iterator('long')) seen.set(k as string, v);
    expect([...seen.keys()].sort()).toEqual([`long:${long}`, `long:${lone}`, `long:${marked}`, 'long:short'].sort());
    expect(JSON.parse(seen.get(`long:${long}`) as string).value).toBe('L');
    for (const k of shared.keys('long:')) expect(Buffer.byteLength(k)).toBeLessThanOrEqual(1024);
    expect(await keyv.delete(long)).toBe(true);
    expect(await keyv.get(long)).toBeUndefined();
    await keyv.clear();
    expect(await keyv.get(lone)).toBeUndefined();
    expect(shared.keys('long:')).toEqual([]);
  });

  test('keys whose namespace part cannot start a key are still the namespace\'s: iterated and cleared (a lone surrogate, over 512 bytes)', async () => {
    const s = store();
    const kv = new Keyv({ store: s, namespace: 'other' });
    const neighbour = new Keyv({ store: store(), namespace: 'other2' });
    await neighbour.set('\uD800:z', 'n');
    const long = 'é'.repeat(300) + ':' + 'q'.repeat(2000);
    await kv.set('\uD800:z', 'v1');
    await kv.set(long, 'v2');
    await kv.set('plain', 'v3');
    expect(await kv.get('\uD800:z')).toBe('v1');
    expect(await kv.has(long)).toBe(true);
    expect(await kv.getMany(['\uD800:z', long, 'plain'])).toEqual(['v1', 'v2', 'v3']);
    const seen: string[] = [];
    for await (const [k] of s.iterator('other')) seen.push(k);
    expect(seen.sort()).toEqual(['other:\uD800:z', `other:${long}`, 'other:plain'].sort());
    await kv.clear();
    expect(await kv.getMany(['\uD800:z', long, 'plain'])).toEqual([undefined, undefined, undefined]);
    expect(shared.keys('other:')).toEqual([]);
    expect(await neighbour.get('\uD800:z')).toBe('n');
    await neighbour.clear();
  });

  test.each([
    ['a MARK', 'a\u0000#b'],
    ['a lone surrogate', 'lone\uD800'],
    ['over 1024 bytes', 'n'.repeat(1100)],
    ['over 512 bytes', 'é'.repeat(300)],
    ['a U+0000 first', '\u0000shmcache'],
  ])('a namespace with %s: set, get, iterate and clear() its keys, no other namespace\'s, no error', async (_, ns) => {
    const s = store();
    const kv = new Keyv({ store: s, namespace: ns });
    const other = new Keyv({ store: store(), namespace: 'bystander' });
    await other.set('k', 'stays');
    const errors: unknown[] = [];
    kv.on('error', (e) => errors.push(e));
    const keys = ['k', 'x'.repeat(2000), 'a:\uD800:b', 'c:d'];
    for (const [i, k] of keys.entries()) expect(await kv.set(k, `v${i}`)).toBe(true);
    expect(await kv.getMany(keys)).toEqual(keys.map((_k, i) => `v${i}`));
    expect(await kv.has('k')).toBe(true);
    const seen: string[] = [];
    for await (const [k] of s.iterator(ns)) seen.push(k);
    expect(seen.sort()).toEqual(keys.map((k) => `${ns}:${k}`).sort());
    for (const k of shared.keys()) expect(k.startsWith('\u0000shmcache')).toBe(false);
    await kv.clear();
    expect(await kv.getMany(keys)).toEqual(keys.map(() => undefined));
    expect(errors).toEqual([]);
    expect(await other.get('k')).toBe('stays');
    expect(shared.keys().filter((k) => k !== 'bystander:k')).toEqual([]);
    await other.clear();
  });

  test('setMany: the last entry of a key wins whatever the TTLs; a bad entry anywhere stores none', async () => {
    const s = store();
    s.namespace = 'lww';
    await s.setMany([{ key: 'lww:a', value: '1', ttl: 5000 }, { key: 'lww:a', value: '2' }, { key: 'lww:a', value: '3', ttl: 5000 }]);
    expect(await s.get('lww:a')).toBe('3');
    expect(shared.ttl('lww:a')).toBeGreaterThan(4000);
    await s.setMany([{ key: 'lww:b', value: '1' }, { key: 'lww:b', value: '2', ttl: 5000 }, { key: 'lww:c', value: 'c', ttl: 9000 }]);
    expect(await s.get('lww:b')).toBe('2');
    expect(shared.ttl('lww:b')).toBeLessThanOrEqual(5000);
    expect(shared.ttl('lww:b')).toBeGreaterThan(4000);
    expect(shared.ttl('lww:c')).toBeGreaterThan(8000);
    const big = 'x'.repeat(shared.maxValueSize + 1);
    await expect(s.setMany([{ key: 'lww:d', value: 'd', ttl: 1000 }, { key: 'lww:e', value: big }])).rejects.toMatchObject({ code: 'ERR_SHMCACHE_VALUE_TOO_LARGE' });
    await expect(s.setMany([{ key: 'lww:e', value: big }, { key: 'lww:d', value: 'd', ttl: 1000 }])).rejects.toMatchObject({ code: 'ERR_SHMCACHE_VALUE_TOO_LARGE' });
    expect(shared.has('lww:d')).toBe(false);
    await s.clear();
  });

  test('a negative (or NaN) TTL has expired already: the key is deleted, not stored forever (set and setMany)', async () => {
    const keyv = new Keyv({ store: store(), namespace: 'neg' });
    await keyv.set('a', 'old');
    await keyv.set('a', 'v', -5);
    expect(await keyv.has('a')).toBe(false);
    expect(shared.has('neg:a')).toBe(false);
    await keyv.set('n', 'v', Number.NaN);
    expect(shared.has('neg:n')).toBe(false);
    await keyv.set('b', 'old');
    await keyv.setMany([{ key: 'b', value: 'v', ttl: -1 }, { key: 'c', value: 'v', ttl: -Infinity }, { key: 'd', value: 'v' }]);
    expect(await keyv.has('b')).toBe(false);
    expect(shared.has('neg:c')).toBe(false);
    expect(await keyv.get('d')).toBe('v');
    await keyv.set('f', 'v', Infinity);
    expect(shared.ttl('neg:f')).toBe(0);
    await keyv.clear();
  });

  test('keys starting with U+0000 are shmcache\'s: a Keyv key never lands on one, and iterator() leaves them out', async () => {
    const s = store();
    shared.set('\u0000internal', 'x');
    await s.set('\u0000shmcache/evil', 'v');
    expect(shared.get('\u0000shmcache/evil')).toBeUndefined();
    expect(await s.get('\u0000shmcache/evil')).toBe('v');
    const seen: string[] = [];
    for await (const [k] of s.iterator()) seen.push(k);
    expect(seen).toEqual(['\u0000shmcache/evil']);
    expect(await s.deleteMany(['\u0000shmcache/evil', '\u0000shmcache/evil'])).toBe(true);
    expect(await s.deleteMany(['\u0000shmcache/evil'])).toBe(false);
    shared.delete('\u0000internal');
  });

  test('given a Cache it does not own it; given options it opens and closes its own', async () => {
    const mine = new KeyvShmcache(shared);
    await mine.disconnect();
    expect(shared.isOpen).toBe(true);
    const path = tmp.file('owned');
    const owned = new KeyvShmcache({ path, size: '1MB', stamp: false });
    const keyv = new Keyv({ store: owned });
    await keyv.set('x', 'y');
    expect(owned.cache.isOpen).toBe(true);
    await keyv.disconnect();
    expect(owned.cache.isOpen).toBe(false);
    const again = new Cache({ path, stamp: false });
    expect(again.get('keyv:x')).toBe(JSON.stringify({ value: 'y' }));
    again.close();
    expect(() => new KeyvShmcache({ path, nope: 1 } as never)).toThrow(expect.objectContaining({ code: 'ERR_SHMCACHE_INVALID_OPTION' }));
  });

  test('errors reach Keyv as its store errors do (a read-only or closed cache)', async () => {
    const c = new Cache({ path: tmp.file('closed'), size: '1MB', stamp: false });
    c.close();
    const keyv = new Keyv({ store: new KeyvShmcache(c) });
    const errors: unknown[] = [];
    keyv.on('error', (e) => errors.push(e));
    expect(await keyv.set('a', 1)).toBe(false);
    expect(errors[0]).toMatchObject({ code: 'ERR_SHMCACHE_CLOSED' });
  });
});
