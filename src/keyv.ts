import { EventEmitter } from 'node:events';
import { adapterEntries, adapterTtl, deletePrefix, expiredTtl, storedKey, unwrap, wrap } from './adapter-keys';
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

  /** The prefix of the keys Keyv hands down (`<namespace>:`), or ''. */
  get #prefix(): string {
    return this.namespace ? `${this.namespace}:` : '';
  }

  async get(key: string): Promise<unknown> {
    const s = storedKey(key, this.#prefix);
    return unwrap(s, key, this.cache.get(s.key));
  }

  /** One native call for the batch. */
  async getMany(keys: string[]): Promise<unknown[]> {
    const prefix = this.#prefix;
    const stored = keys.map((k) => storedKey(k, prefix));
    const values = this.cache.getMany(stored.map((s) => s.key));
    return values.map((v, i) => unwrap(stored[i]!, keys[i]!, v));
  }

  /**
   * `ttl` in ms (none when undefined or 0): the segment expires the entry.
   * A negative (or NaN) one has expired already: the key is deleted.
   */
  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    const s = storedKey(key, this.#prefix);
    if (expiredTtl(ttl)) this.cache.delete(s.key);
    else this.cache.set(s.key, wrap(s, key, value), { ttl: adapterTtl(ttl) ?? 0 });
    return true;
  }

  /**
   * The last entry of each key wins (as `set()` one by one). Every entry is
   * checked before any is stored (one native call for the batch, under the
   * longest TTL in it; entries of shorter TTLs are then retimed in place).
   * Entries with a negative TTL delete their key.
   */
  async setMany(entries: { key: string; value: unknown; ttl?: number }[]): Promise<boolean[]> {
    const prefix = this.#prefix;
    const last = new Map<string, [unknown, number]>(); // stored key -> [what to store, ttl or -1]
    for (const { key, value, ttl } of entries) {
      const s = storedKey(key, prefix);
      last.delete(s.key); // in the order of its last entry
      last.set(s.key, [wrap(s, key, value), expiredTtl(ttl) ? -1 : (adapterTtl(ttl) ?? 0)]);
    }
    const live: [string, unknown][] = [];
    const expired: string[] = [];
    let longest = -1;
    for (const [k, [v, ttl]] of last) {
      if (ttl < 0) {
        expired.push(k);
        continue;
      }
      live.push([k, v]);
      if (longest !== 0 && (ttl === 0 || ttl > longest)) longest = ttl;
    }
    if (live.length > 0) {
      this.cache.setMany(live, { ttl: longest });
      for (const [k, [, ttl]] of last) if (ttl >= 0 && ttl !== longest) this.cache.touch(k, ttl);
    }
    if (expired.length > 0) this.cache.deleteMany(expired);
    return entries.map(() => true);
  }

  async delete(key: string): Promise<boolean> {
    return this.cache.delete(storedKey(key, this.#prefix).key);
  }

  /** `true` when every key had a live entry to remove (as Keyv's own fallback answers). */
  async deleteMany(keys: string[]): Promise<boolean> {
    const prefix = this.#prefix;
    const unique = [...new Set(keys.map((k) => storedKey(k, prefix).key))];
    return this.cache.deleteMany(unique) === unique.length;
  }

  async has(key: string): Promise<boolean> {
    const s = storedKey(key, this.#prefix);
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
