// The tier's multi-machine suite against a 3-master Redis Cluster on
// loopback, created by the test with `redis-cli --cluster create` (the kill
// and restart of the standalone suite left out: a stopped master is resumed).
import { beforeAll, describe } from 'vitest';
import { hasRedis, startCluster, type RedisCluster } from './redis-server';
import { tierSuite } from './redis-suite';

describe.skipIf(!hasRedis)('shmcache/redis, Cluster', () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startCluster();
  });
  tierSuite(
    'cluster',
    () => ({ ports: cluster.ports, cluster: true, serverOf: (key: string) => cluster.ownerOf(key) }),
    false,
  );
});
