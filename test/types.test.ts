import { describe, expectTypeOf, test } from 'vitest';
import shmcacheDefault, { Cache, ShmCacheError } from '../esm/index.mjs';
import type { CacheOptions, CacheStats, Codec, ShmCacheErrorCode, VerifyResult } from '../esm/index.mjs';

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

  test('options and errors', () => {
    expectTypeOf<CacheOptions>().toHaveProperty('path').toEqualTypeOf<string>();
    expectTypeOf<CacheOptions['size']>().toEqualTypeOf<number | string | undefined>();
    expectTypeOf<CacheOptions['stamp']>().toEqualTypeOf<number | false | undefined>();
    expectTypeOf<CacheOptions<string>['codec']>().toEqualTypeOf<'v8' | 'json' | Codec<string> | undefined>();
    expectTypeOf<ShmCacheError['code']>().toEqualTypeOf<ShmCacheErrorCode>();
    expectTypeOf<ShmCacheError['errno']>().toEqualTypeOf<number | undefined>();
    expectTypeOf(new ShmCacheError('ERR_SHMCACHE_IO', 'x')).toMatchTypeOf<Error>();
    expectTypeOf(shmcacheDefault.Cache).toEqualTypeOf<typeof Cache>();
  });
});
