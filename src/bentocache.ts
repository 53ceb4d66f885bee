import { adapterTtl, deletePrefix, storedKey, unwrap, wrap, type StoredKey } from './adapter-keys';
import { Cache } from './cache';
import type { CacheOptions } from './options';

/**
 * shmcacheDriver(): a bentocache L1 driver over a shmcache segment, so that
 * every process of a machine shares one L1 instead of keeping one each:
 *
 * ```ts
 * import { BentoCache, bentostore } from 'bentocache';
 * import { shmcacheDriver } from 'shmcache/bentocache';
 * const bento = new BentoCache({
 *   default: 'app',
 *   stores: { app: bentostore().useL1Layer(shmcacheDriver({ path: '/dev/shm/app/l1.shm', size: '256MB' })) },
 * });
 * ```
 *
 * The types below are bentocache's (`L1CacheDriver`, `CreateDriverResult`),
 * written out so that this module needs nothing from bentocache at run time.
 */
export interface ShmcacheDriverOptions extends Partial<CacheOptions<unknown>> {
  /** A cache to use instead of opening one from the options (it stays open on `disconnect()`). */
  cache?: Cache<any>;
  /** Key prefix; bentocache passes its own (`'bentocache'` by default, or the store's). */
  prefix?: string;
}

/** bentocache's L1 driver contract (synchronous). */
export interface ShmcacheL1Driver {
  type: 'l1';
  namespace(namespace: string): ShmcacheL1Driver;
  get(key: string): any;
  pull(key: string): any;
  set(key: string, value: any, ttl?: number): boolean;
  getRemainingTtl(key: string): number | undefined;
  clear(): void;
  delete(key: string): boolean;
  deleteMany(keys: string[]): boolean;
  disconnect(): void;
}

/** What a bentocache driver factory returns. */
export interface ShmcacheDriverFactory {
  options: ShmcacheDriverOptions;
  factory: (config: ShmcacheDriverOptions & { logger?: unknown }) => ShmcacheL1Driver;
}

const CACHE_OPTIONS = ['path', 'size', 'stamp', 'ttl', 'codec', 'create', 'memo'] as const;

/** The L1 driver factory for `bentostore().useL1Layer(...)`. */
export function shmcacheDriver(options: ShmcacheDriverOptions): ShmcacheDriverFactory {
  return { options, factory: (config) => ShmcacheDriver.create({ ...options, ...config }) };
}

interface Shared {
  cache: Cache<unknown>;
  owned: boolean;
}

/** Trailing colons dropped, as bentocache's own drivers do. */
const sanitize = (prefix: string | undefined): string => (prefix ? prefix.replace(/:+$/, '') : '');

export class ShmcacheDriver implements ShmcacheL1Driver {
  readonly type = 'l1' as const;
  readonly prefix: string;
  readonly #shared: Shared;

  static create(config: ShmcacheDriverOptions & { logger?: unknown }): ShmcacheDriver {
    if (config.cache instanceof Cache) return new ShmcacheDriver({ cache: config.cache as Cache<unknown>, owned: false }, config.prefix);
    const options: Record<string, unknown> = {};
    for (const k of CACHE_OPTIONS) if ((config as Record<string, unknown>)[k] !== undefined) options[k] = (config as Record<string, unknown>)[k];
    return new ShmcacheDriver({ cache: new Cache<unknown>(options as unknown as CacheOptions<unknown>), owned: true }, config.prefix);
  }

  private constructor(shared: Shared, prefix: string | undefined) {
    this.#shared = shared;
    this.prefix = sanitize(prefix);
  }

  /** The cache handle under the driver. */
  get cache(): Cache<unknown> {
    return this.#shared.cache;
  }

  #key(key: string): string {
    return this.prefix ? `${this.prefix}:${key}` : key;
  }

  /** How `key` is stored: under this driver's prefix, even one that cannot start a key as it is. */
  #stored(key: string): [full: string, stored: StoredKey] {
    const full = this.#key(key);
    return [full, storedKey(full, this.prefix ? `${this.prefix}:` : '')];
  }

  /** A driver on the same segment whose keys are under `<prefix>:<namespace>:`. */
  namespace(namespace: string): ShmcacheDriver {
    return new ShmcacheDriver(this.#shared, this.prefix ? `${this.prefix}:${namespace}` : namespace);
  }

  get(key: string): any {
    const [full, s] = this.#stored(key);
    return unwrap(s, full, this.cache.get(s.key));
  }

  pull(key: string): any {
    const value = this.get(key);
    this.delete(key);
    return value;
  }

  /** `ttl` in ms; without one the entry never expires. */
  set(key: string, value: any, ttl?: number): boolean {
    const [full, s] = this.#stored(key);
    this.cache.set(s.key, wrap(s, full, value), { ttl: adapterTtl(ttl) ?? 0 });
    return true;
  }

  /** ms left; `undefined` when missing or without expiry. */
  getRemainingTtl(key: string): number | undefined {
    const [, s] = this.#stored(key);
    const left = s.hashed ? (this.get(key) === undefined ? undefined : this.cache.ttl(s.key)) : this.cache.ttl(s.key);
    return left === 0 ? undefined : left;
  }

  /** Removes the keys under this driver's prefix (and its namespaces'); without a prefix, every entry of the segment. */
  clear(): void {
    if (this.prefix) deletePrefix(this.cache, `${this.prefix}:`);
    else this.cache.clear();
  }

  delete(key: string): boolean {
    return this.cache.delete(this.#stored(key)[1].key);
  }

  deleteMany(keys: string[]): boolean {
    if (keys.length > 0) this.cache.deleteMany([...new Set(keys.map((k) => this.#stored(k)[1].key))]);
    return true;
  }

  /** Closes the cache if the driver opened it (namespaces share it: any of them closes it). */
  disconnect(): void {
    if (this.#shared.owned) this.cache.close();
  }
}
