// The tier's multi-machine suite against a 3-master Redis Cluster on
// loopback, created by the test with `redis-cli --cluster create` (the kill
// and restart of the standalone suite left out: a stopped master is resumed).
import { describe } from 'vitest';
import { hasRedis, useCluster } from './redis-server';
import { tierSuite } from './redis-suite';

describe.skipIf(!hasRedis)('shmcache/redis, Cluster', () => {
  const c = useCluster();
  tierSuite(
    'cluster',
    () => ({ ports: c.cluster.ports, cluster: true, serverOf: (key: string) => c.cluster.ownerOf(key) }),
    false,
  );
});
