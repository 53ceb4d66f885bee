import { EventEmitter } from 'node:events';
import { adapterEntries, adapterTtl, deletePrefix, storedKey, unwrap, wrap } from './adapter-keys';
import { Cache } from './cache';
import type { CacheOptions } from './options';

/**
 * A Keyv 5 storage adapter over a shmcache segment: every process of the
 * machine that opens the same path shares one store.
 *
 * ```ts
 * import Keyv from 'keyv';
 * import { KeyvShmcache } from 'shmcache/keyv';
 * const keyv = new Keyv({ store: new KeyvShmcache({ path: '/dev/shm/app.shm' }) });
 * ```
 *
 * Given a `Cache`, the adapter uses it and leaves it open on `disconnect()`;
 * given options, it opens its own and closes it on `disconnect()`. Keyv
 * hands it keys with their namespace in front (`keyv:foo`) and sets its
 * `namespace`; `clear()` removes only the keys of that namespace (all of the
 * segment when there is none). TTLs go down to the segment, which expires
 * the entries itself. Keys a segment cannot hold as they are (over 1024
 * UTF-8 bytes, lone surrogates) are stored under a SHA-256 digest, the key
 * kept beside the value.
 */
export class KeyvShmcache extends EventEmitter {
  /** What Keyv reads off a store. */
  readonly opts: { dialect: 'shmcache'; url: string };
  /** Set by Keyv: the prefix of the keys it hands down, without the colon. */
  namespace?: string | undefined;
  /** The segment's cache handle. */
  readonly cache: Cache<unknown>;
  readonly #owned: boolean;

  /**
   * @param cacheOrOptions an open (or unopened) `Cache`, which the adapter
   *   does not own, or `Cache` options, for a handle it owns.
   * @throws {ShmCacheError} INVALID_OPTION for bad options.
   */
  constructor(cacheOrOptions: Cache<any> | CacheOptions<any>) {
    super();
    if (cacheOrOptions instanceof Cache) {
      this.cache = cacheOrOptions as Cache<unknown>;
      this.#owned = false;
    } else {
      this.cache = new Cache<unknown>(cacheOrOptions as CacheOptions<unknown>);
      this.#owned = true;
    }
    this.opts = { dialect: 'shmcache', url: `shmcache://${this.cache.path}` };
  }

  async get(key: string): Promise<unknown> {
    const s = storedKey(key);
    return unwrap(s, key, this.cache.get(s.key));
  }

  /** One native call for the batch. */
  async getMany(keys: string[]): Promise<unknown[]> {
    const stored = keys.map(storedKey);
    const values = this.cache.getMany(stored.map((s) => s.key));
    return values.map((v, i) => unwrap(stored[i]!, keys[i]!, v));
  }

  /** `ttl` in ms (none when undefined or 0): the segment expires the entry. */
  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    const s = storedKey(key);
    this.cache.set(s.key, wrap(s, key, value), { ttl: adapterTtl(ttl) ?? 0 });
    return true;
  }

  /** One native call per distinct TTL in the batch; every entry is checked before any is stored. */
  async setMany(entries: { key: string; value: unknown; ttl?: number }[]): Promise<boolean[]> {
    const byTtl = new Map<number, [string, unknown][]>();
    for (const { key, value, ttl } of entries) {
      const s = storedKey(key);
      const t = adapterTtl(ttl) ?? 0;
      let list = byTtl.get(t);
      if (list === undefined) byTtl.set(t, (list = []));
      list.push([s.key, wrap(s, key, value)]);
    }
    for (const [ttl, list] of byTtl) this.cache.setMany(list, { ttl });
    return entries.map(() => true);
  }

  async delete(key: string): Promise<boolean> {
    return this.cache.delete(storedKey(key).key);
  }

  /** `true` when every key had a live entry to remove (as Keyv's own fallback answers). */
  async deleteMany(keys: string[]): Promise<boolean> {
    const unique = [...new Set(keys.map((k) => storedKey(k).key))];
    return this.cache.deleteMany(unique) === unique.length;
  }

  async has(key: string): Promise<boolean> {
    const s = storedKey(key);
    return s.hashed ? (await this.get(key)) !== undefined : this.cache.has(s.key);
  }

  async hasMany(keys: string[]): Promise<boolean[]> {
    return Promise.all(keys.map((k) => this.has(k)));
  }

  /** Removes the keys of this store's namespace (`<namespace>:`), or every entry of the segment without one. */
  async clear(): Promise<void> {
    if (this.namespace) deletePrefix(this.cache, `${this.namespace}:`);
    else this.cache.clear();
  }

  /**
   * The live `[key, value]` pairs of `namespace` (keys as Keyv handed them
   * down, namespace included), shard by shard. Keyv 5 itself only wires
   * `keyv.iterator()` to the stores of its own dialects (sqlite, postgres,
   * mysql, mongo, redis, valkey, etcd); call this one directly otherwise
   * (docs/integrations.md).
   */
  async *iterator(namespace?: string): AsyncGenerator<[string, unknown], void> {
    const ns = namespace ?? this.namespace;
    for (const pair of adapterEntries(this.cache, ns ? `${ns}:` : '')) yield pair;
  }

  /** Closes the cache if this adapter opened it. */
  async disconnect(): Promise<void> {
    if (this.#owned) this.cache.close();
  }
}
