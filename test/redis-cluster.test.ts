// The tier's multi-machine suite against a 3-master Redis Cluster on
// loopback, created by the test with `redis-cli --cluster create` (the kill
// and restart of the standalone suite left out: a stopped master is resumed).
import Redis from 'ioredis';
import { describe, expect, it } from 'vitest';
import { ShmCacheError } from '../esm/index.mjs';
import { TieredCache } from '../esm/redis.mjs';
import { tempDir } from './helpers';
import { hasRedis, HOST, useCluster } from './redis-server';
import { tierSuite } from './redis-suite';

describe.skipIf(!hasRedis)('shmcache/redis, Cluster', () => {
  const c = useCluster();
  tierSuite(
    'cluster',
    () => ({ ports: c.cluster.ports, cluster: true, serverOf: (key: string) => c.cluster.ownerOf(key) }),
    false,
  );

  it('cluster: clear() rejects with ERR_SHMCACHE_REDIS when an UNLINK of its pipeline fails (an ACL without UNLINK)', async () => {
    for (const s of c.cluster.servers) expect(s.cli('acl', 'setuser', 'nounlink', 'on', '>pw', '~*', '&*', '+@all', '-unlink')).toBe('OK');
    const redis = new Redis.Cluster(
      c.cluster.ports.map((port) => ({ host: HOST, port })),
      { enableOfflineQueue: false, redisOptions: { username: 'nounlink', password: 'pw', autoResendUnfulfilledCommands: false } },
    );
    redis.on('error', () => {});
    const tmp = tempDir('shmcache-cl-acl-');
    const t = new TieredCache({ local: { path: tmp.file('acl'), stamp: false }, redis, prefix: 'acl:' });
    try {
      await t.ready();
      for (let i = 0; i < 20; i++) await t.set('k' + i, 'v' + i);
      let err: unknown;
      await t.clear().catch((e) => (err = e));
      expect(err).toBeInstanceOf(ShmCacheError);
      expect((err as ShmCacheError).code).toBe('ERR_SHMCACHE_REDIS');
      expect((err as ShmCacheError).cause).toBeInstanceOf(Error);
      expect(String(((err as ShmCacheError).cause as Error).message)).toMatch(/NOPERM|unlink/i);
      // The keys are still there, and so they are read (L1 dropped: from Redis).
      expect(await t.get('k3')).toBe('v3');
    } finally {
      await t.close();
      redis.disconnect();
    }
  });
});
