// One worker process of one machine: MACHINE names the machine (its L1
// segment), REDIS_PORT the shared Redis. Driven by its parent over IPC.
import Redis from 'ioredis';
import { TieredCache } from 'shmcache/redis';

const machine = process.env.MACHINE;
const redis = new Redis({
  host: '127.0.0.1',
  port: Number(process.env.REDIS_PORT),
  enableOfflineQueue: false, // fail fast while Redis is down
  autoResendUnfulfilledCommands: false, // never replay a write the tier reported as failed
});
const cache = new TieredCache({
  local: { path: `${process.env.L1_DIR}/machine-${machine}.shm`, size: '16MB' },
  redis,
  prefix: 'example:',
  ttl: 60_000,
  localTtl: 30_000,
});
await cache.ready(); // subscribed to the bus

const ops = {
  set: ({ key, value }) => cache.set(key, value),
  get: ({ key }) => cache.get(key),
  remember: ({ key }) =>
    cache.remember(key, async () => {
      process.send({ producing: `${machine}/${process.pid}` });
      await new Promise((r) => setTimeout(r, 200)); // a slow database query
      return { id: 42, name: 'Ada', by: machine };
    }),
  exit: async () => {
    await cache.close();
    redis.disconnect(); // the client is ours to close, not the tier's
    setImmediate(() => process.exit(0));
  },
};
process.on('message', async ({ id, op, ...args }) => {
  try {
    process.send({ id, value: await ops[op](args) });
  } catch (e) {
    process.send({ id, error: `${e.code}: ${e.message}` });
  }
});
process.send({ ready: machine });
