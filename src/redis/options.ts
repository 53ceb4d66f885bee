import type { Cluster, Redis } from 'ioredis';
import { Cache, configuredCodec } from '../cache';
import { jsonCodec, v8Codec, type Codec } from '../codecs';
import { MISS, msgpackCodec, TAG as MSGPACK_TAG } from '../msgpack';
import { invalid, ShmCacheError } from '../errors';
import type { CacheOptions } from '../options';
import { parseTtl } from '../options';
import { isWellFormed } from '../strings';

/** Options of `new TieredCache()`. `local` and `redis` are required. */
export interface TieredCacheOptions<V = unknown> {
  /**
   * The machine's L1: options of a `Cache` the tier creates (and closes), or
   * an open `Cache` the caller owns (the tier never closes it). Every
   * process of a machine gives the same segment path.
   */
  local: CacheOptions<V> | Cache<V>;
  /**
   * An ioredis `Redis` or `Cluster`, owned by the caller: `close()` leaves it
   * open. The tier never reconfigures it; give it
   * `enableOfflineQueue: false` and `autoResendUnfulfilledCommands: false`
   * (docs/redis.md, "Your Redis client").
   */
  redis: Redis | Cluster;
  /**
   * Prefix of the Redis keys, and the name of the bus channel. Not empty,
   * not starting with U+0000. Default `'shmcache:'`.
   */
  prefix?: string;
  /** Default time to live in ms (in Redis; L1 copies live at most `localTtl`); `0`: none. Default `0`. */
  ttl?: number;
  /**
   * The longest an L1 copy lives, in ms: the bound on staleness when the bus
   * is cut. At least 1. Default `60000`.
   */
  localTtl?: number;
  /** The longest any Redis command may take, in ms, then `ERR_SHMCACHE_REDIS`. At least 1. Default `1000`. */
  timeout?: number;
  /**
   * How long `remember()`'s Redis lock lives, in ms: a producer that dies or
   * hangs loses it after that, and another machine takes over. Longer than
   * your slowest producer. At least 1. Default `10000`.
   */
  lockTtl?: number;
  /**
   * How values other than strings, numbers and byte arrays are encoded in
   * Redis: it must be the L1's codec. Only when `local` is an open `Cache`
   * (from `CacheOptions` the tier takes their `codec`). `'msgpack'` values
   * sent to Redis carry their record structures (another machine's segment
   * shares other ones). Default: the L1's codec (`'msgpack'` unless it was
   * given another).
   */
  codec?: 'msgpack' | 'v8' | 'json' | Codec<V>;
}

export interface ResolvedTierOptions<V> {
  local: Cache<V>;
  ownsLocal: boolean;
  redis: Redis | Cluster;
  prefix: string;
  ttl: number;
  localTtl: number;
  timeout: number;
  lockTtl: number;
  codec: Codec<V>;
}

const NAMES = ['local', 'redis', 'prefix', 'ttl', 'localTtl', 'timeout', 'lockTtl', 'codec'];

/** The longest prefix + key, in UTF-8 bytes: the L1 names add at most 19 bytes to it, within the core's 1024. */
export const MAX_NAME_BYTES = 1000;

function positive(value: unknown, name: string): number {
  const n = parseTtl(value, name);
  if (n < 1) throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a positive integer of milliseconds', name, value);
  return n;
}

/**
 * 'msgpack' on the wire: the segment-free codec, whose values define their
 * records inline (the L1's codec shares structures through its segment, and
 * another machine's segment has other ones). It reads v8 values too.
 */
const msgpackWire: Codec<unknown> = {
  encode: (value) => msgpackCodec.encode(value),
  decode(bytes) {
    const value = msgpackCodec.decode(bytes);
    // Only a value naming shared structures decodes to MISS here: no tier writes one.
    if (value === MISS) throw new Error('a msgpack value that refers to record structures of a segment');
    return value;
  },
};

/** 'v8' on the wire: writes v8, reads msgpack values too (a machine left on the other codec; the first byte tells them apart). */
const v8Wire: Codec<unknown> = {
  encode: (value) => v8Codec.encode(value),
  decode: (bytes) => (bytes[0] === MSGPACK_TAG ? msgpackWire.decode(bytes) : v8Codec.decode(bytes)),
};

/** The wire codec for a `codec` option, or for the codec a Cache was configured with. */
function codecOf<V>(value: unknown): Codec<V> {
  if (value === 'msgpack' || value === msgpackCodec) return msgpackWire as Codec<V>;
  if (value === 'v8' || value === v8Codec) return v8Wire as Codec<V>;
  if (value === 'json') return jsonCodec as Codec<V>;
  if (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Codec<V>).encode === 'function' &&
    typeof (value as Codec<V>).decode === 'function'
  ) {
    return value as Codec<V>;
  }
  throw invalid('ERR_SHMCACHE_INVALID_OPTION', "'msgpack', 'v8', 'json' or an object with encode and decode", 'codec', value);
}

function isClient(value: unknown): value is Redis | Cluster {
  if (typeof value !== 'object' || value === null) return false;
  const c = value as Record<string, unknown>;
  return (
    typeof c.callBuffer === 'function' &&
    typeof c.duplicate === 'function' &&
    typeof c.publish === 'function' &&
    typeof c.status === 'string' &&
    typeof c.isCluster === 'boolean'
  );
}

export function resolveTierOptions<V>(options: unknown): ResolvedTierOptions<V> {
  if (typeof options !== 'object' || options === null) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'an options object', 'options', options);
  }
  const o = options as Record<string, unknown>;
  for (const name of Object.keys(o)) {
    if (!NAMES.includes(name)) throw new ShmCacheError('ERR_SHMCACHE_INVALID_OPTION', `Unknown option ${JSON.stringify(name)}`);
  }
  if (!isClient(o.redis)) throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'an ioredis Redis or Cluster', 'redis', o.redis);
  const redis = o.redis;
  const clientOptions = (redis.isCluster ? (redis as Cluster).options.redisOptions : (redis as Redis).options) ?? {};
  if (clientOptions.keyPrefix) {
    throw new ShmCacheError(
      'ERR_SHMCACHE_INVALID_OPTION',
      'Expected a Redis client without keyPrefix for redis (the tier has its own prefix option)',
    );
  }
  const prefix = o.prefix === undefined ? 'shmcache:' : o.prefix;
  if (
    typeof prefix !== 'string' ||
    prefix.length === 0 ||
    prefix.charCodeAt(0) === 0 ||
    !isWellFormed(prefix) ||
    Buffer.byteLength(prefix, 'utf8') >= MAX_NAME_BYTES
  ) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a non-empty, well-formed string not starting with U+0000', 'prefix', prefix);
  }
  const ttl = o.ttl === undefined ? 0 : parseTtl(o.ttl, 'ttl');
  const localTtl = o.localTtl === undefined ? 60_000 : positive(o.localTtl, 'localTtl');
  const timeout = o.timeout === undefined ? 1000 : positive(o.timeout, 'timeout');
  const lockTtl = o.lockTtl === undefined ? 10_000 : positive(o.lockTtl, 'lockTtl');
  let local: Cache<V>;
  let ownsLocal: boolean;
  let codec: Codec<V>;
  if (o.local instanceof Cache) {
    local = o.local as Cache<V>;
    ownsLocal = false;
    codec = codecOf<V>(o.codec === undefined ? configuredCodec(local) : o.codec);
  } else if (typeof o.local === 'object' && o.local !== null) {
    if (o.codec !== undefined) {
      throw new ShmCacheError(
        'ERR_SHMCACHE_INVALID_OPTION',
        'Expected codec in the local options, not beside them (the L1 and Redis use the same codec)',
      );
    }
    local = new Cache<V>(o.local as CacheOptions<V>); // validates them
    codec = codecOf<V>(configuredCodec(local));
    ownsLocal = true;
  } else {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'Cache options or an open Cache', 'local', o.local);
  }
  return {
    local,
    ownsLocal,
    redis,
    prefix,
    ttl,
    localTtl,
    timeout,
    lockTtl,
    codec,
  };
}
