// shmcache/redis: one shared L1 per machine (a shmcache segment) over Redis
// or a Redis Cluster. ioredis is an optional peer dependency: only this
// module needs it, and only for types (the caller passes the client in).
export { TieredCache } from './tier';
export type { TierRememberOptions, TierSetOptions } from './tier';
export type { TieredCacheOptions } from './options';
export type { BusMessage } from './wire';
