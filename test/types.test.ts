import { describe, expectTypeOf, test } from 'vitest';
import shmcacheDefault, { Cache, ShmCacheError } from '../esm/index.mjs';
import type { CacheOptions, CacheStats, Codec, EntryInfo, ShmCacheErrorCode, VerifyResult } from '../esm/index.mjs';
import { KeyvShmcache } from '../esm/keyv.mjs';
import { shmcacheDriver, type ShmcacheL1Driver } from '../esm/bentocache.mjs';

describe('public types', () => {
  test('Cache is generic in its values', () => {
    const c = new Cache<{ id: number }>({ path: '/nonexistent/never-opened.shm' });
    expectTypeOf(c.get).returns.toEqualTypeOf<{ id: number } | undefined>();
    expectTypeOf(c.set).parameter(1).toEqualTypeOf<{ id: number } | undefined>();
    expectTypeOf(c.add).returns.toEqualTypeOf<boolean>();
    expectTypeOf(c.incr).returns.toEqualTypeOf<number>();
    expectTypeOf(c.cas).returns.toEqualTypeOf<boolean>();
    expectTypeOf(c.keys).returns.toEqualTypeOf<string[]>();
    expectTypeOf(c.stats).returns.toEqualTypeOf<CacheStats>();
    expectTypeOf(c.verify).returns.toEqualTypeOf<VerifyResult>();
    expectTypeOf(c.open).returns.toEqualTypeOf<Cache<{ id: number }>>();
    expectTypeOf(c.path).toEqualTypeOf<string>();
  });

  test('Map-like methods and properties', () => {
    const c = new Cache<{ id: number }>({ path: '/nonexistent/never-opened.shm' });
    type V = { id: number };
    expectTypeOf(c.getMany).parameter(0).toEqualTypeOf<Iterable<string>>();
    expectTypeOf(c.getMany).returns.toEqualTypeOf<(V | undefined)[]>();
    expectTypeOf(c.setMany).parameter(0).toEqualTypeOf<Iterable<readonly [string, V]>>();
    expectTypeOf(c.setMany).returns.toEqualTypeOf<void>();
    expectTypeOf(c.deleteMany).returns.toEqualTypeOf<number>();
    expectTypeOf(c.peek).returns.toEqualTypeOf<V | undefined>();
    expectTypeOf(c.ttl).returns.toEqualTypeOf<number | undefined>();
    expectTypeOf(c.touch).parameters.toEqualTypeOf<[string, number]>();
    expectTypeOf(c.touch).returns.toEqualTypeOf<boolean>();
    expectTypeOf(c.info).returns.toEqualTypeOf<EntryInfo | undefined>();
    expectTypeOf<EntryInfo['type']>().toEqualTypeOf<'string' | 'bytes' | 'number' | 'object'>();
    expectTypeOf(c.entries).returns.toEqualTypeOf<IterableIterator<[string, V]>>();
    expectTypeOf(c.values).returns.toEqualTypeOf<IterableIterator<V>>();
    expectTypeOf(c[Symbol.iterator]).returns.toEqualTypeOf<IterableIterator<[string, V]>>();
    expectTypeOf<Cache<V>['size']>().toEqualTypeOf<number>(); // (reading it would open the segment)
    expectTypeOf<Cache<V>['capacity']>().toEqualTypeOf<number>();
    expectTypeOf<Map<string, V>>().toEqualTypeOf<typeof c extends Iterable<[string, V]> ? Map<string, V> : never>();
  });

  test('adapters', () => {
    expectTypeOf(KeyvShmcache).constructorParameters.toEqualTypeOf<[Cache<any> | CacheOptions<any>]>();
    expectTypeOf<KeyvShmcache['getMany']>().returns.toEqualTypeOf<Promise<unknown[]>>();
    expectTypeOf<KeyvShmcache['iterator']>().returns.toEqualTypeOf<AsyncGenerator<[string, unknown], void>>();
    expectTypeOf<KeyvShmcache['cache']>().toEqualTypeOf<Cache<unknown>>();
    const factory = shmcacheDriver({ path: '/nonexistent/x.shm' });
    expectTypeOf(factory.factory).returns.toEqualTypeOf<ShmcacheL1Driver>();
    expectTypeOf<ShmcacheL1Driver['type']>().toEqualTypeOf<'l1'>();
    expectTypeOf<ShmcacheL1Driver['getRemainingTtl']>().returns.toEqualTypeOf<number | undefined>();
  });

  test('options and errors', () => {
    expectTypeOf<CacheOptions>().toHaveProperty('path').toEqualTypeOf<string>();
    expectTypeOf<CacheOptions['size']>().toEqualTypeOf<number | string | undefined>();
    expectTypeOf<CacheOptions['stamp']>().toEqualTypeOf<number | false | undefined>();
    expectTypeOf<CacheOptions<string>['codec']>().toEqualTypeOf<'msgpack' | 'v8' | 'json' | Codec<string> | undefined>();
    expectTypeOf<ShmCacheError['code']>().toEqualTypeOf<ShmCacheErrorCode>();
    expectTypeOf<ShmCacheError['errno']>().toEqualTypeOf<number | undefined>();
    expectTypeOf(new ShmCacheError('ERR_SHMCACHE_IO', 'x')).toMatchTypeOf<Error>();
    expectTypeOf(shmcacheDefault.Cache).toEqualTypeOf<typeof Cache>();
  });
});
