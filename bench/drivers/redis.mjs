// Redis 7 through ioredis on loopback. `pipelined` turns on ioredis's
// auto-pipelining and keeps many requests in flight; otherwise each request
// is awaited before the next.
import Redis from 'ioredis';

export const shared = true;
export const async = true;
export async function open({ redisPort, pipelined = false }) {
  const client = new Redis({ port: redisPort, host: '127.0.0.1', enableAutoPipelining: pipelined, lazyConnect: true });
  await client.connect();
  const encode = (v) => (typeof v === 'string' || Buffer.isBuffer(v) ? v : JSON.stringify(v));
  return {
    get: (k) => client.getBuffer(k),
    set: (k, v) => client.set(k, encode(v)),
    close: () => client.quit(),
  };
}
