import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { Cache, ShmCacheError } from '../esm/index.mjs';
import { code, openInChild, tempDir } from './helpers';

const tmp = tempDir();

function optionError(options: unknown): ShmCacheError {
  try {
    new Cache(options as never);
  } catch (e) {
    expect(e).toBeInstanceOf(ShmCacheError);
    expect((e as ShmCacheError).code).toBe('ERR_SHMCACHE_INVALID_OPTION');
    return e as ShmCacheError;
  }
  throw new Error(`no error for ${JSON.stringify(options)}`);
}

describe('constructor options', () => {
  test('rejects a missing or bad options object and a bad path', () => {
    optionError(undefined);
    optionError(null);
    optionError('path');
    optionError({});
    optionError({ path: '' });
    optionError({ path: 42 });
    optionError({ path: 'a\0b' });
  });

  test('rejects unknown options by name', () => {
    expect(optionError({ path: tmp.file(), sise: '1MB' }).message).toMatch(/Unknown option "sise"/);
  });

  test('size: numbers and KB/MB/GB strings, 1MB to 16GB', () => {
    expect(new Cache({ path: tmp.file(), size: '1MB' }).capacity).toBe(1024 * 1024);
    expect(new Cache({ path: tmp.file(), size: '2048KB' }).capacity).toBe(2 * 1024 * 1024);
    expect(new Cache({ path: tmp.file(), size: '1gb' }).capacity).toBe(1024 ** 3);
    expect(new Cache({ path: tmp.file(), size: 3 * 1024 * 1024 }).capacity).toBe(3 * 1024 * 1024);
    expect(new Cache({ path: tmp.file() }).capacity).toBe(64 * 1024 * 1024);
    expect(optionError({ path: tmp.file(), size: '512KB' }).message).toBe(
      "Expected a size from 1MB to 16GB for size but received \"512KB\" of type string",
    );
    optionError({ path: tmp.file(), size: 1024 * 1024 - 1 });
    optionError({ path: tmp.file(), size: '17GB' });
    optionError({ path: tmp.file(), size: '64 MiB' });
    optionError({ path: tmp.file(), size: 1.5 * 1024 * 1024 + 0.5 });
    optionError({ path: tmp.file(), size: -1 });
    optionError({ path: tmp.file(), size: null });
  });

  test('ttl: a non-negative integer of ms', () => {
    expect(optionError({ path: tmp.file(), ttl: -1 }).message).toBe(
      'Expected a non-negative integer of milliseconds for ttl but received -1 of type number',
    );
    optionError({ path: tmp.file(), ttl: 1.5 });
    optionError({ path: tmp.file(), ttl: '10' });
    optionError({ path: tmp.file(), ttl: Infinity });
  });

  test('stamp: a non-negative integer or false', () => {
    optionError({ path: tmp.file(), stamp: -1 });
    optionError({ path: tmp.file(), stamp: true });
    optionError({ path: tmp.file(), stamp: 1.5 });
    optionError({ path: tmp.file(), stamp: 'soon' });
    new Cache({ path: tmp.file(), stamp: false });
    new Cache({ path: tmp.file(), stamp: 0 });
  });

  test('codec: msgpack, v8, json or an object with encode and decode', () => {
    optionError({ path: tmp.file(), codec: 'messagepack' });
    new Cache({ path: tmp.file(), codec: 'msgpack' });
    optionError({ path: tmp.file(), codec: { encode: () => new Uint8Array() } });
    optionError({ path: tmp.file(), codec: null });
    new Cache({ path: tmp.file(), codec: 'json' });
    new Cache({ path: tmp.file(), codec: { encode: () => new Uint8Array(), decode: () => 1 } });
  });

  test('a bad SHMCACHE_STAMP is an option error when no stamp is given', () => {
    const saved = process.env.SHMCACHE_STAMP;
    process.env.SHMCACHE_STAMP = 'yesterday';
    try {
      optionError({ path: tmp.file() });
      new Cache({ path: tmp.file(), stamp: 5 });
    } finally {
      if (saved === undefined) delete process.env.SHMCACHE_STAMP;
      else process.env.SHMCACHE_STAMP = saved;
    }
  });
});

describe('laziness', () => {
  test('constructing touches no file; the first operation creates it', () => {
    const path = tmp.file();
    const cache = new Cache({ path, size: '1MB' });
    expect(existsSync(path)).toBe(false);
    expect(existsSync(path + '.lock')).toBe(false);
    expect(cache.isOpen).toBe(false);
    expect(cache.get('k')).toBeUndefined();
    expect(cache.isOpen).toBe(true);
    expect(statSync(path).size).toBe(1024 * 1024);
    expect(existsSync(path + '.lock')).toBe(false);
    cache.close();
  });

  test('create: false attaches only: a missing file is NOT_FOUND and nothing is created', () => {
    const path = tmp.file();
    const cache = new Cache({ path, size: '1MB', create: false, stamp: false });
    expect(code(() => cache.get('k'))).toBe('ERR_SHMCACHE_NOT_FOUND');
    expect(existsSync(path)).toBe(false);
    try {
      cache.open();
    } catch (e) {
      expect((e as Error).message).toContain(path);
    }
    const maker = new Cache({ path, size: '1MB', stamp: false });
    maker.set('k', 'v');
    expect(cache.get('k')).toBe('v');
    expect(code(() => new Cache({ path, create: 'no' as never }))).toBe('ERR_SHMCACHE_INVALID_OPTION');
    maker.close();
    cache.close();
  });

  test('a path that is ill-formed or names a folder is an option error', () => {
    for (const path of ['/dev/shm/x\ud800.shm', '/dev/shm/x.shm/', 'dir/']) {
      expect(code(() => new Cache({ path })), JSON.stringify(path)).toBe('ERR_SHMCACHE_INVALID_OPTION');
    }
  });

  test('create: false never writes: an empty or unfinished file is NOT_FOUND, left as it was', () => {
    for (const bytes of [Buffer.alloc(0), Buffer.concat([Buffer.from('SHMCINIT', 'latin1'), Buffer.alloc(2 * 1024 * 1024 - 8)])]) {
      const path = tmp.file();
      writeFileSync(path, bytes, { mode: 0o600 });
      const c = new Cache({ path, size: '1MB', create: false, stamp: false });
      expect(code(() => c.open())).toBe('ERR_SHMCACHE_NOT_FOUND');
      expect(readFileSync(path).equals(bytes)).toBe(true);
    }
  });

  test('open() does the first-use work now and is idempotent', () => {
    const path = tmp.file();
    const cache = new Cache({ path, size: '1MB' });
    expect(cache.open()).toBe(cache);
    expect(existsSync(path)).toBe(true);
    cache.set('a', 1);
    cache.open();
    expect(cache.get('a')).toBe(1);
    cache.close();
  });

  test('a bad key is refused before the file is touched', () => {
    const path = tmp.file();
    const cache = new Cache({ path, size: '1MB' });
    expect(() => cache.set('', 1)).toThrow(ShmCacheError);
    expect(existsSync(path)).toBe(false);
  });

  test('a relative path resolves against the working directory at first use', async () => {
    const { mkdirSync } = await import('node:fs');
    const sub = join(tmp.dir, 'later');
    mkdirSync(sub);
    const r = await openInChild('rel.shm', { size: '1MB' }, [['set', 'a', 'b'], ['get', 'a']], {
      cwd: tmp.dir,
      env: { TEST_CHDIR: sub },
    });
    expect(r).toMatchObject({ ok: true, results: [null, 'b'] });
    expect(r.stats.path).toBe(join(sub, 'rel.shm'));
    expect(existsSync(join(sub, 'rel.shm'))).toBe(true);
    expect(existsSync(join(tmp.dir, 'rel.shm'))).toBe(false);
  });
});
