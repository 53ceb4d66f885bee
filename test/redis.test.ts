// shmcache/redis against a real standalone redis-server: the tier in this
// process (options, wire format, TTLs, the fill/invalidation race, a full or
// failing L1, close), then the multi-machine suite in child processes.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { Cache, ShmCacheError } from '../esm/index.mjs';
import { TieredCache, type TieredCacheOptions } from '../esm/redis.mjs';
import { setClockOffsetForTesting } from '../dist/testing.js';
import { tempDir, waitUntil } from './helpers';
import { hasRedis, HOST, useRedis, type RedisServer } from './redis-server';
import { tierSuite } from './redis-suite';

const recommended = { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 };

describe.skipIf(!hasRedis)('shmcache/redis, standalone', () => {
  const redisServer = useRedis();
  let server: RedisServer;
  const clients: Redis[] = [];
  const tiers: TieredCache<any>[] = [];
  const tmp = tempDir('shmcache-redis-');
  const client = (options: Record<string, unknown> = recommended): Redis => {
    const c = new Redis({ host: HOST, port: server.port, ...options });
    c.on('error', () => {});
    clients.push(c);
    return c;
  };
  const tier = <V = any>(options: Record<string, unknown> = {}): TieredCache<V> => {
    const t = new TieredCache<V>({ local: { path: tmp.file('l1'), size: '4MB', stamp: false }, redis: client(), prefix: 'u:', timeout: 2000, ...options } as any);
    tiers.push(t);
    return t;
  };
  const rejects = async (p: Promise<unknown>): Promise<ShmCacheError> => {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(ShmCacheError);
      return e as ShmCacheError;
    }
    throw new Error('did not reject');
  };
  const evalshaCalls = (): number => {
    // Scripts: EVALSHA, and EVAL for the fill (sent with its text, docs/redis.md).
    const stats = server.cli('info', 'commandstats');
    let n = 0;
    for (const m of stats.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)) n += Number(m[1]);
    return n;
  };
  /** The current L1 version of `key` (the tier's layout, docs/redis.md). */
  const versionOf = (t: TieredCache<any>, key: string): unknown => t.local.get('\u0000v' + t.prefix + key);
  /** The name of `key`'s current L1 copy: at the prefix's epoch and the key's version. */
  const copyOf = (t: TieredCache<any>, key: string): string =>
    '\u0000d' + t.prefix + key + '\u0000' + String(t.local.get('\u0000e' + t.prefix)) + '.' + String(versionOf(t, key));

  beforeAll(async () => {
    server = redisServer.server;
  });
  afterAll(async () => {
    for (const t of tiers) await t.close();
    for (const c of clients) c.disconnect();
  });

  it('importing the core never loads ioredis; shmcache/redis does not either until given a client', () => {
    const r = spawnSync(
      process.execPath,
      ['-e', "require('shmcache'); const a = Object.keys(require.cache).some((k) => k.includes('ioredis')); require('shmcache/redis'); const b = Object.keys(require.cache).some((k) => k.includes('ioredis')); console.log(JSON.stringify([a, b]))"],
      { cwd: `${__dirname}/..`, encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([false, false]);
  });

  it('rejects bad and unknown options with ERR_SHMCACHE_INVALID_OPTION, before any connection', () => {
    const redis = client();
    const local = { path: tmp.file('opt') };
    const bad: Record<string, unknown>[] = [
      { local, redis, nope: 1 },
      { local },
      { local, redis: {} },
      { redis },
      { local: 'x', redis },
      { local, redis, prefix: '' },
      { local, redis, prefix: '\u0000x' },
      { local, redis, prefix: 42 },
      { local, redis, ttl: -1 },
      { local, redis, localTtl: 0 },
      { local, redis, timeout: 1.5 },
      { local, redis, lockTtl: 0 },
      { local: { ...local, codec: 'json' }, redis, codec: 'json' },
      { local: { ...local, bogus: 1 }, redis },
      { local, redis: client({ keyPrefix: 'k:' }) },
    ];
    for (const o of bad) {
      let err: unknown;
      try {
        new TieredCache(o as any);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(Object.keys(o))).toBeInstanceOf(ShmCacheError);
      expect((err as ShmCacheError).code).toBe('ERR_SHMCACHE_INVALID_OPTION');
    }
  });

  it('keys and per-call options are checked', async () => {
    const t = tier();
    expect((await rejects(t.get(''))).code).toBe('ERR_SHMCACHE_INVALID_KEY');
    expect((await rejects(t.get('\ud800'))).code).toBe('ERR_SHMCACHE_INVALID_KEY');
    expect((await rejects(t.get('x'.repeat(999)))).code).toBe('ERR_SHMCACHE_INVALID_KEY');
    expect(await t.get('x'.repeat(998))).toBeUndefined();
    expect((await rejects(t.set('k', 1, { ttl: -1 }))).code).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect((await rejects(t.set('k', 1, { nope: 1 } as any))).code).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect((await rejects(t.remember('k', 1 as any))).code).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect((await rejects(t.remember('k', () => 1, { lockTtl: 0 }))).code).toBe('ERR_SHMCACHE_INVALID_OPTION');
    expect((await rejects(t.set('k', () => 1))).code).toBe('ERR_SHMCACHE_ENCODE');
  });

  it('values keep their type through Redis: one type byte, the TTL with PX in the same SET', async () => {
    const a = tier();
    const b = tier();
    await Promise.all([a.ready(), b.ready()]);
    const values: [string, unknown][] = [
      ['s', 'héllo ✓'],
      ['empty', ''],
      ['n', 42.5],
      ['nan', NaN],
      ['negzero', -0],
      ['inf', -Infinity],
      ['buf', Buffer.from([0, 1, 2, 255])],
      ['u8', new Uint8Array([9, 8, 7])],
      ['obj', { a: [1, { b: 2 }], m: new Map([['k', new Date(5)]]), big: 10n }],
      ['null', null],
    ];
    for (const [k, v] of values) await a.set(k, v, { ttl: 60_000 });
    const raw = client({});
    expect((await raw.getBuffer('u:s'))![0]).toBe(1);
    expect((await raw.getBuffer('u:buf'))![0]).toBe(2);
    expect((await raw.getBuffer('u:n'))!).toEqual(Buffer.concat([Buffer.from([3]), Buffer.from(new Float64Array([42.5]).buffer)]));
    expect((await raw.getBuffer('u:obj'))![0]).toBe(4);
    const pttl = await raw.pttl('u:s');
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(60_000);
    for (const [k, v] of values) {
      const got = await b.get(k); // from Redis
      const again = await b.get(k); // from B's L1
      for (const g of [got, again]) {
        if (v instanceof Uint8Array) {
          expect(Buffer.isBuffer(g)).toBe(true);
          expect([...(g as Buffer)]).toEqual([...v]);
        } else expect(g).toEqual(v);
      }
    }
    expect(Object.is(await b.get('negzero'), -0)).toBe(true);
    const jsonA = tier({ local: { path: tmp.file('json'), codec: 'json', stamp: false } });
    const jsonB = tier({ local: new Cache({ path: tmp.file('json'), codec: 'json', stamp: false }), codec: 'json' });
    await jsonA.set('j', { x: [1, 'two'] });
    expect(await jsonB.get('j')).toEqual({ x: [1, 'two'] });
    // A value no TieredCache wrote is not taken for one.
    await raw.set('u:foreign', 'plain');
    expect((await rejects(b.get('foreign'))).code).toBe('ERR_SHMCACHE_CORRUPT');
  });

  it("codec 'msgpack': values carry their records to Redis, so a machine whose segment shares other structures reads them", async () => {
    const opts = { prefix: 'mp:' };
    // Machine B's segment already shares structures of its own (other ids for other shapes).
    const bLocal = new Cache<any>({ path: tmp.file('mp-b'), size: '4MB', stamp: false, codec: 'msgpack' });
    for (let i = 0; i < 8; i++) bLocal.set(`own${i}`, { [`b${i}`]: i, other: [i] });
    const a = tier({ ...opts, local: { path: tmp.file('mp-a'), size: '4MB', stamp: false, codec: 'msgpack' } });
    const b = tier({ ...opts, local: bLocal }); // codec omitted: the Cache's ('msgpack')
    const v8Machine = tier({ ...opts, local: { path: tmp.file('mp-v8'), size: '4MB', stamp: false, codec: 'v8' } });
    const named = tier({ ...opts, local: new Cache({ path: tmp.file('mp-named'), size: '4MB', stamp: false, codec: 'msgpack' }), codec: 'msgpack' });
    await Promise.all([a.ready(), b.ready(), v8Machine.ready(), named.ready()]);
    const value = {
      when: new Date(1_700_000_000_123),
      m: new Map<string, unknown>([['k', { at: new Date(5), n: 1n }], ['s', new Set([1, 'x'])]]),
      rows: Array.from({ length: 5 }, (_, i) => ({ id: i, name: `r${i}`, seen: new Date(i) })),
    };
    await a.set('obj', value);
    const raw = client({});
    const bytes = (await raw.getBuffer('mp:obj'))!;
    expect(bytes[0]).toBe(4); // codec bytes
    expect(bytes[1]).toBe(0xc1); // msgpack
    expect(bytes[2]! | (bytes[3]! << 8)).toBe(0); // no shared structures named: self-contained
    for (const t of [b, v8Machine, named]) {
      expect(await t.get('obj')).toEqual(value); // from Redis
      expect(await t.get('obj')).toEqual(value); // from its L1
    }
    expect(b.local.size).toBeGreaterThan(8);
    for (let i = 0; i < 8; i++) expect(bLocal.get(`own${i}`)).toEqual({ [`b${i}`]: i, other: [i] });
    // The other way: B's values, encoded in its L1 against its structures, reach A whole.
    await b.set('fromB', { b0: 'x', other: [new Date(7)], extra: new Map([[1, 2]]) });
    expect(await a.get('fromB')).toEqual({ b0: 'x', other: [new Date(7)], extra: new Map([[1, 2]]) });
    // A machine on 'v8' writes v8 bytes; msgpack machines read them.
    await v8Machine.set('fromV8', value);
    expect((await raw.getBuffer('mp:fromV8'))![1]).toBe(0xff);
    expect(await a.get('fromV8')).toEqual(value);
    expect(await b.get('fromV8')).toEqual(value);
    // msgpack bytes that name shared structures: no tier writes them, CORRUPT rather than a miss.
    await raw.set('mp:named', Buffer.from([4, 0xc1, 1, 0, 0, 0, 0, 0, 0x40]));
    expect((await rejects(a.get('named'))).code).toBe('ERR_SHMCACHE_CORRUPT');
  });

  it("the codec defaults to the L1's; 'msgpack' is accepted beside an open Cache", async () => {
    const raw = client({});
    const fromOptions = tier({ prefix: 'dc:', local: { path: tmp.file('dc-o'), size: '4MB', stamp: false } });
    await fromOptions.set('o', { a: 1 });
    expect((await raw.getBuffer('dc:o'))![1]).toBe(0xc1); // the Cache's default, 'msgpack'
    const jsonCache = tier({ prefix: 'dc:', local: new Cache({ path: tmp.file('dc-j'), size: '4MB', stamp: false, codec: 'json' }) });
    await jsonCache.set('j', { a: 2 });
    expect((await raw.getBuffer('dc:j'))!.subarray(1).toString()).toBe('{"a":2}');
    const v8Cache = tier({ prefix: 'dc:', local: new Cache({ path: tmp.file('dc-v'), size: '4MB', stamp: false, codec: 'v8' }) });
    await v8Cache.set('v', { a: 3 });
    expect((await raw.getBuffer('dc:v'))![1]).toBe(0xff);
    expect(await fromOptions.get('v')).toEqual({ a: 3 });
    expect(await v8Cache.get('o')).toEqual({ a: 1 });
  });

  it("an L1 copy gets the TTL Redis has left, capped at localTtl", async () => {
    const a = tier({ localTtl: 5000 });
    const b = tier({ localTtl: 5000 });
    await b.ready();
    await a.set('short', 'v', { ttl: 2000 });
    await a.set('long', 'v', { ttl: 600_000 });
    expect(await b.get('short')).toBe('v');
    expect(await b.get('long')).toBe('v');
    const before = evalshaCalls();
    expect(await b.get('short')).toBe('v'); // L1 hits
    expect(await b.get('long')).toBe('v');
    expect(evalshaCalls()).toBe(before);
    try {
      // 2.5 s later (the addon's clock, in this process): the short copy is
      // gone from the L1 (Redis's TTL), the long one still there.
      setClockOffsetForTesting(2500);
      expect(b.local.get(copyOf(b, 'short'))).toBeUndefined();
      expect(b.local.get(copyOf(b, 'long'))).toBe('v');
      // 5.5 s later: the long copy is gone too (localTtl), and is read from Redis again.
      setClockOffsetForTesting(5500);
      const n = evalshaCalls();
      expect(await b.get('long')).toBe('v');
      expect(evalshaCalls()).toBe(n + 1);
    } finally {
      setClockOffsetForTesting(0);
    }
  });

  it('a fill that read Redis before another machine wrote never lands after the invalidation', async () => {
    const writer = tier();
    const reader = tier();
    await Promise.all([writer.ready(), reader.ready()]);
    const readerClient = reader.redis as Redis;
    await writer.set('race', 'old');
    // The reader asks Redis for the key; Redis answers 'old', but the answer
    // stays in the reader's socket (paused) while the writer writes 'new'
    // and the reader's bus connection delivers the invalidation.
    const calls = evalshaCalls();
    readerClient.stream.pause();
    const fill = reader.get('race');
    await waitUntil(() => evalshaCalls() > calls, 5000, 'Redis to answer the fill');
    const v0 = versionOf(reader, 'race');
    await writer.set('race', 'new');
    await waitUntil(() => versionOf(reader, 'race') !== v0, 5000, 'the invalidation');
    readerClient.stream.resume();
    expect(await fill).toBe('old'); // that read began before the write: fine
    expect(await reader.get('race')).toBe('new'); // but its copy never landed
    expect(await reader.get('race')).toBe('new');
  });

  it('a fill racing a write of another process of the same machine never lands after it', async () => {
    const path = tmp.file('same');
    const p1 = tier({ local: { path, stamp: false } });
    const p2 = tier({ local: { path, stamp: false } });
    await Promise.all([p1.ready(), p2.ready()]);
    await p1.set('same', 'old');
    await p1.local.delete('\u0000vu:same'); // no copy on this machine
    const p1Client = p1.redis as Redis;
    const calls = evalshaCalls();
    p1Client.stream.pause();
    const fill = p1.get('same');
    await waitUntil(() => evalshaCalls() > calls, 5000, 'Redis to answer the fill');
    await p2.set('same', 'new'); // no bus message is needed on its own machine
    p1Client.stream.resume();
    expect(await fill).toBe('old');
    expect(await p1.get('same')).toBe('new');
    expect(await p2.get('same')).toBe('new');
  });

  it('an L1 that is full or cannot be opened never makes a Redis write fail', async () => {
    const a = tier({ local: { path: tmp.file('small'), size: '1MB', stamp: false } });
    const b = tier();
    await b.ready();
    const big = Buffer.alloc(300 * 1024, 7); // over 1/8 of the L1
    await a.set('big', big);
    expect((await a.get('big'))!.length).toBe(big.length); // from Redis, each time
    expect((await b.get('big'))!.length).toBe(big.length);
    const broken = tmp.file('broken');
    writeFileSync(broken, 'not a segment, not empty'.repeat(100), { mode: 0o600 });
    const c = tier({ local: { path: broken, stamp: false } });
    await c.ready();
    await c.set('viaBroken', 'v');
    expect(await b.get('viaBroken')).toBe('v');
    expect(await c.get('viaBroken')).toBe('v');
    expect(await c.delete('viaBroken')).toBe(true);
    expect(await c.remember('viaBroken', () => 'made')).toBe('made');
    expect(await b.get('viaBroken')).toBe('made');
  });

  it('Redis unreachable: L1 hits served, misses and writes reject with ERR_SHMCACHE_REDIS (cause kept), L1 left without the key', async () => {
    const a = tier();
    await a.ready();
    await a.set('hit', 'v');
    expect(await a.get('hit')).toBe('v');
    const down = new Redis({ host: HOST, port: 1, ...recommended, retryStrategy: () => 1000 });
    down.on('error', () => {});
    clients.push(down);
    const t = tier({ local: new Cache({ path: (a.local as Cache).path, stamp: false }), redis: down, timeout: 200 });
    expect(await t.get('hit')).toBe('v'); // the machine's L1 copy
    const miss = await rejects(t.get('miss'));
    expect(miss.code).toBe('ERR_SHMCACHE_REDIS');
    expect(miss.cause).toBeInstanceOf(Error);
    expect((await rejects(t.set('hit', 'w'))).code).toBe('ERR_SHMCACHE_REDIS');
    expect(await t.get('hit').catch((e) => e.code)).toBe('ERR_SHMCACHE_REDIS'); // dropped on this machine
    expect(await a.get('hit')).toBe('v'); // Redis still has it
    expect((await rejects(t.delete('hit'))).code).toBe('ERR_SHMCACHE_REDIS');
    expect((await rejects(t.clear())).code).toBe('ERR_SHMCACHE_REDIS');
    expect((await rejects(t.ready())).code).toBe('ERR_SHMCACHE_REDIS');
    await t.close();
    t.local.close();
  });

  it('a client the caller closed: every Redis command rejects with ERR_SHMCACHE_REDIS, L1 hits still served', async () => {
    const c = client();
    const t = tier({ redis: c });
    await t.ready(); // its first subscription drops the machine's copies: before the set
    await t.set('k', 'v');
    expect(await t.get('k')).toBe('v');
    c.disconnect();
    await waitUntil(() => c.status === 'end', 5000, 'the client to end');
    expect(await t.get('k')).toBe('v');
    expect((await rejects(t.get('other'))).code).toBe('ERR_SHMCACHE_REDIS');
    expect((await rejects(t.set('k', 'w'))).code).toBe('ERR_SHMCACHE_REDIS');
    expect(c.status).toBe('end'); // the tier did not reconnect the caller's client
  });

  it('types: values keep V through every method; options are typed', () => {
    expectTypeOf<TieredCache<{ a: number }>['get']>().returns.toEqualTypeOf<Promise<{ a: number } | undefined>>();
    expectTypeOf<TieredCache<string>['remember']>().returns.toEqualTypeOf<Promise<string>>();
    expectTypeOf<TieredCache<string>['delete']>().returns.toEqualTypeOf<Promise<boolean>>();
    expectTypeOf<TieredCache<string>['local']>().toEqualTypeOf<Cache<string>>();
    expectTypeOf<TieredCacheOptions<string>['localTtl']>().toEqualTypeOf<number | undefined>();
  });

  it('remember(): a producer that throws stores nothing and rejects its own caller only; undefined stores nothing', async () => {
    const a = tier();
    const b = tier();
    const boom = new Error('boom');
    const first = a.remember('r:throw', async () => {
      await new Promise((r) => setTimeout(r, 50));
      throw boom;
    });
    await new Promise((r) => setTimeout(r, 10));
    const second = b.remember('r:throw', () => 'second');
    await expect(first).rejects.toBe(boom);
    expect(await second).toBe('second');
    expect(await a.get('r:throw')).toBe('second');
    expect(await a.remember('r:undef', () => undefined as any)).toBeUndefined();
    expect(await (a.redis as Redis).exists('u:r:undef')).toBe(0);
  });

  it('close(): quits its bus connection, leaves the client open, closes only an L1 it created', async () => {
    const busConnections = (): number => server.cli('client', 'list').split('\n').filter((l) => l.includes('name=shmcache-bus')).length;
    const given = new Cache({ path: tmp.file('given'), stamp: false });
    const owned = new TieredCache({ local: { path: tmp.file('owned'), stamp: false }, redis: client(), prefix: 'c:' });
    const notOwned = new TieredCache({ local: given, redis: client(), prefix: 'c:' });
    await Promise.all([owned.ready(), notOwned.ready()]);
    await owned.set('k', 'v');
    const n = busConnections();
    await owned.close();
    await notOwned.close();
    await owned.close(); // idempotent
    await waitUntil(() => busConnections() === n - 2, 5000, 'the bus connections to go');
    expect(owned.local.isOpen).toBe(false);
    expect(given.isOpen).toBe(true);
    expect(owned.redis.status).toBe('ready');
    expect(await owned.redis.get('c:k')).not.toBeNull();
    for (const p of [owned.get('k'), owned.set('k', 1), owned.delete('k'), owned.clear(), owned.remember('k', () => 1), owned.ready()]) {
      expect((await rejects(p)).code).toBe('ERR_SHMCACHE_CLOSED');
    }
    given.close();
  });

  it('works with a client left at ioredis defaults (offline queue on)', async () => {
    const c = client({});
    const a = new TieredCache({ local: { path: tmp.file('defaults'), stamp: false }, redis: c, prefix: 'd:' });
    tiers.push(a);
    await a.set('k', 'v');
    expect(await a.get('k')).toBe('v');
  });

  it('examples/two-machines runs against this redis-server', () => {
    const r = spawnSync(process.execPath, ['examples/two-machines/main.mjs'], {
      cwd: `${__dirname}/..`,
      encoding: 'utf8',
      env: { ...process.env, REDIS_PORT: String(server.port) },
      timeout: 30_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('a reads: hello from machine b');
    expect(r.stdout.match(/producer running/g)).toHaveLength(1);
    expect(r.stdout).toMatch(/all four got .* true/);
  });

  tierSuite('standalone', () => ({
    ports: [server.port],
    cluster: false,
    serverOf: () => server,
    restart: { kill: () => server.kill(), start: () => server.start() },
  }), true);
});
