// shmcache/redis failure modes against a standalone redis-server of its own
// (this file stops it with SIGSTOP and pauses it: the other files' servers
// are not touched). Each test is one row of docs/redis.md's failure table.
import { copyFileSync } from 'node:fs';
import Redis from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cache, ShmCacheError } from '../esm/index.mjs';
import { TieredCache } from '../esm/redis.mjs';
import { tempDir, waitUntil } from './helpers';
import { hasRedis, HOST, useRedis, type RedisServer } from './redis-server';

const recommended = { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


/** Watches this event loop: stop() gives the longest gap between 5 ms ticks. */
function lagMonitor(): { stop(): number } {
  let lag = 0;
  let last = Date.now();
  const iv = setInterval(() => {
    const n = Date.now();
    lag = Math.max(lag, n - last);
    last = n;
  }, 5);
  return {
    stop() {
      clearInterval(iv);
      return lag;
    },
  };
}

describe.skipIf(!hasRedis)('shmcache/redis, failure modes', () => {
  const redisServer = useRedis();
  let server: RedisServer;
  const clients: Redis[] = [];
  const tiers: TieredCache<any>[] = [];
  const tmp = tempDir('shmcache-redisf-');
  const client = (options: Record<string, unknown> = recommended): Redis => {
    const c = new Redis({ host: HOST, port: server.port, ...options });
    c.on('error', () => {});
    clients.push(c);
    return c;
  };
  const tier = <V = any>(machine: string, options: Record<string, unknown> = {}): TieredCache<V> => {
    const t = new TieredCache<V>({ local: { path: tmp.file(machine), size: '8MB', stamp: false }, redis: client(), prefix: 'x:', timeout: 1000, ...options } as any);
    tiers.push(t);
    return t;
  };
  const codeOf = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(ShmCacheError);
      return (e as ShmCacheError).code;
    }
    return 'resolved';
  };
  /** Runs `fn` with the server stopped (SIGSTOP), resuming it whatever happens. */
  const stopped = async <T>(fn: () => Promise<T>): Promise<T> => {
    server.signal('SIGSTOP');
    try {
      return await fn();
    } finally {
      server.signal('SIGCONT');
    }
  };
  let raw: Redis;

  beforeAll(async () => {
    server = redisServer.server;
    raw = client({});
  });
  afterAll(async () => {
    server.signal('SIGCONT');
    for (const t of tiers) await t.close();
    for (const c of clients) c.disconnect();
  });

  it('Redis hung: once a command is overdue, new ones fail fast unsent; the backlog stays bounded; a later acknowledged write wins everywhere', async () => {
    const a = tier('h-A', { timeout: 200 });
    const b = tier('h-B', { timeout: 1000 });
    await Promise.all([a.ready(), b.ready()]);
    await a.set('k', 'v0');
    await a.set('f0', 'old');
    expect(await b.get('k')).toBe('v0');
    expect(await b.get('f0')).toBe('old'); // B holds a copy of f0
    const aClient = a.redis as Redis;
    const big = 'z'.repeat(5000);
    await stopped(async () => {
      // The first round is in flight when the hang begins (it may land later);
      // every later one is refused at once, never sent.
      for (let round = 0; round < 5; round++) {
        const t0 = Date.now();
        const codes = await Promise.all(Array.from({ length: 100 }, (_, i) => codeOf(a.set('f' + i, big + round))));
        expect(new Set(codes)).toEqual(new Set(['ERR_SHMCACHE_REDIS']));
        if (round > 0) expect(Date.now() - t0).toBeLessThan(150);
      }
      expect(aClient.commandQueue.length).toBeLessThanOrEqual(100);
      const t0 = Date.now();
      expect(await codeOf(a.set('k', 'A-rejected'))).toBe('ERR_SHMCACHE_REDIS');
      expect(await codeOf(a.get('never'))).toBe('ERR_SHMCACHE_REDIS');
      expect(Date.now() - t0).toBeLessThan(150);
    });
    // Another machine's write, acknowledged once Redis is back.
    for (let i = 0; ; i++) {
      if ((await codeOf(b.set('k', 'B-acked'))) === 'resolved') break;
      expect(i).toBeLessThan(100);
      await sleep(20);
    }
    await waitUntil(() => aClient.commandQueue.length === 0, 10_000, "A's backlog to drain");
    await sleep(300);
    expect((await raw.get('x:k'))!.slice(1)).toBe('B-acked');
    expect(await b.get('k')).toBe('B-acked');
    expect(await a.get('k')).toBe('B-acked');
    // f0's write was in flight and landed late: B is told, and reads it.
    const landed = big + '0';
    expect((await raw.get('x:f0'))!.slice(1)).toBe(landed);
    for (let i = 0; (await b.get('f0')) !== landed; i++) {
      expect(i).toBeLessThan(200);
      await sleep(10);
    }
    // A's link works again.
    await a.set('after', 'ok');
    expect(await b.get('after')).toBe('ok');
  });

  it('Redis hung: 20 concurrent remember() of one key in a process all reject with ERR_SHMCACHE_REDIS within about timeout', async () => {
    const a = tier('r-A', { timeout: 300 });
    await a.ready();
    const results = await stopped(async () => {
      const t0 = Date.now();
      return Promise.all(
        Array.from({ length: 20 }, () => codeOf(a.remember('r4', () => 'x')).then((code) => ({ code, ms: Date.now() - t0 }))),
      );
    });
    for (const r of results) expect(r.code).toBe('ERR_SHMCACHE_REDIS');
    expect(Math.max(...results.map((r) => r.ms))).toBeLessThan(300 + 700);
    await waitUntil(() => (a.redis as Redis).commandQueue.length === 0, 10_000, 'the backlog to drain');
    // The lock the hung acquire took when Redis woke up was freed: no wait for lockTtl.
    const t0 = Date.now();
    expect(await a.remember('r4', () => 'made')).toBe('made');
    expect(Date.now() - t0).toBeLessThan(500);
  });

  it('a bus message that failed (the write is in Redis) is sent again once Redis takes it: the other machines drop their copies', async () => {
    // A's user may not PUBLISH (B's, the default user, is not touched).
    expect(server.cli('acl', 'setuser', 'nopub', 'on', '>pw', '~*', '&*', '+@all', '-publish')).toBe('OK');
    const a = tier('bus-A', { timeout: 300, redis: client({ ...recommended, username: 'nopub', password: 'pw' }) });
    const b = tier('bus-B');
    await Promise.all([a.ready(), b.ready()]);
    await b.set('k', 'v1');
    expect(await b.get('k')).toBe('v1');
    expect(await codeOf(a.set('k', 'v2'))).toBe('ERR_SHMCACHE_REDIS');
    expect(await b.get('k')).toBe('v1'); // not told
    expect(server.cli('acl', 'setuser', 'nopub', '+publish')).toBe('OK');
    expect((await raw.get('x:k'))!.slice(1)).toBe('v2');
    for (let i = 0; (await b.get('k')) !== 'v2'; i++) {
      expect(i).toBeLessThan(300);
      await sleep(10);
    }
  });

  it('CLIENT PAUSE WRITE (as FAILOVER does): reads that miss the L1 are still served', async () => {
    const a = tier('p-A');
    await a.ready();
    await raw.set('x:paused', Buffer.from('\x01value'));
    expect(server.cli('client', 'pause', '1500', 'WRITE')).toBe('OK');
    try {
      const t0 = Date.now();
      expect(await a.get('paused')).toBe('value');
      expect(await a.get('paused-missing')).toBeUndefined();
      expect(Date.now() - t0).toBeLessThan(500);
    } finally {
      server.cli('client', 'unpause');
    }
  });

  it('delete() or clear() while a remember() producer runs: its value, computed before, is not stored over the newer producer', async () => {
    const a = tier('d-A');
    const b = tier('d-B');
    await Promise.all([a.ready(), b.ready()]);
    for (const [key, write] of [['r1', () => b.delete('r1')], ['r2', () => b.clear()]] as const) {
      const runs: string[] = [];
      const pa = a.remember(key, async () => {
        runs.push('A');
        await sleep(400);
        return 'A-old';
      });
      await sleep(100);
      await write();
      const pb = b.remember(key, async () => {
        runs.push('B');
        await sleep(400);
        return 'B-new';
      });
      expect(await pa).toBe('A-old'); // its own caller gets it
      expect(await pb).toBe('B-new');
      expect(runs).toEqual(['A', 'B']);
      expect((await raw.get('x:' + key))!.slice(1)).toBe('B-new');
      expect(await a.get(key)).toBe('B-new');
      expect(await b.get(key)).toBe('B-new');
    }
  });

  it('a remember() lock without a TTL (not written by a tier) is taken over, not polled forever', async () => {
    const a = tier('l-A');
    await raw.set('x:fl', Buffer.from([0, 1, 2, 3]));
    const t0 = Date.now();
    expect(await a.remember('fl', () => 'taken', { wait: 1000 })).toBe('taken');
    expect(Date.now() - t0).toBeLessThan(500);
  });

  it('ready() pending when close() is called rejects with ERR_SHMCACHE_CLOSED', async () => {
    const down = new Redis({ host: HOST, port: 1, ...recommended, retryStrategy: () => 1000 });
    down.on('error', () => {});
    clients.push(down);
    const t = new TieredCache({ local: { path: tmp.file('closed'), stamp: false }, redis: down, timeout: 2000 });
    const pending = codeOf(t.ready());
    await t.close();
    const t0 = Date.now();
    expect(await pending).toBe('ERR_SHMCACHE_CLOSED');
    expect(Date.now() - t0).toBeLessThan(500);
  });

  it('a bus message naming too many keys drops the whole L1 of the machine instead of blocking it', async () => {
    const a = tier('m-A');
    const b = tier('m-B');
    await Promise.all([a.ready(), b.ready()]);
    await a.set('held', 'v1');
    expect(await b.get('held')).toBe('v1');
    await raw.set('x:held', Buffer.from('\x01v2')); // a write B was not told of
    const keys = Array.from({ length: 200_000 }, (_, i) => 'key' + i);
    const loop = lagMonitor();
    await raw.publish('x:', JSON.stringify({ v: 1, m: 'someone', i: 'huge', k: keys }));
    for (let i = 0; (await b.get('held')) !== 'v2'; i++) {
      expect(i).toBeLessThan(200);
      await sleep(10);
    }
    const lag = loop.stop();
    expect(lag).toBeLessThan(150);
  });

  it("a process that starts drops the machine's copies without blocking its event loop, and none of them is served after", async () => {
    const path = tmp.file('big');
    const a = tier('big', { local: { path, size: '64MB', stamp: false } });
    await a.ready();
    await a.set('stale', 'old');
    expect(await a.get('stale')).toBe('old');
    // Many copies on the machine (written as the tier lays them out: versions).
    const c = a.local as Cache<unknown>;
    for (let i = 0; i < 60_000; i++) c.set('\u0000vx:k' + i, 1000 + i, { ttl: 120_000 });
    await raw.set('x:stale', Buffer.from('\x01new')); // a write this machine missed
    const loop = lagMonitor();
    const second = tier('big', { local: { path, size: '64MB', stamp: false } });
    await second.ready();
    await sleep(50);
    const lag = loop.stop();
    expect(lag).toBeLessThan(100);
    expect(await a.get('stale')).toBe('new');
    expect(await second.get('stale')).toBe('new');
  });

  it('a copied segment (an image, a file copied to another machine) gets its own machine id', async () => {
    const first = tmp.file('img');
    const local = (path: string): Record<string, unknown> => ({ local: { path, size: '8MB', stamp: false } });
    const img = tier('img', local(first));
    await img.ready();
    await img.set('warm', 'w');
    await img.close();
    const copy = tmp.file('img-copy');
    copyFileSync(first, copy);
    const a = tier('img', local(first));
    const b = tier('img-copy', local(copy));
    await Promise.all([a.ready(), b.ready()]);
    await a.set('k', 'v1');
    expect(await b.get('k')).toBe('v1');
    await a.set('k', 'v2');
    for (let i = 0; (await b.get('k')) !== 'v2'; i++) {
      expect(i).toBeLessThan(100);
      await sleep(10);
    }
  });
});
