import { randomBytes, randomInt } from 'node:crypto';
import type { Cache } from '../cache';

/**
 * The tier's layout in the L1 segment (docs/redis.md, "Inside the L1").
 *
 * A user key `k` under prefix `p` has two L1 entries, both in a namespace that
 * starts with U+0000 (a prefix may not start with it, so no key written
 * through the tier, and no key of another prefix, can collide with them):
 *
 * - its version `"\0v" + p + k`, an integer;
 * - its copy at version n, `"\0d" + p + k + "\0" + n` (n in decimal: the last
 *   U+0000 splits the name unambiguously).
 *
 * A read looks up the version, then the copy at that version. Dropping a key
 * bumps its version: the copy becomes unreachable at once, and so does any
 * copy that a fill which read the old version stores later, however late it
 * lands. That is how a fill that raced an invalidation never lands after it.
 * A version that is missing (evicted, expired, dropped) is re-created at a
 * random 48-bit value, so an old version never comes back.
 *
 * A bus message another process of the machine has applied is marked
 * `"\0m" + p + <message id>` (TTL localTtl), so that the machine drops a key
 * once per message, not once per process (a second drop would throw away a
 * copy filled after the first).
 *
 * The machine id, `"\0shmcache/redis machine"`, is a random string kept in the
 * segment: every process of the machine reads the same one, a restart keeps
 * it, a new or reset segment gets a new one.
 */
export const MACHINE_KEY = '\u0000shmcache/redis machine';

/** How many keys' entry names get() keeps (then it starts over). */
const NAMES_KEPT = 10_000;

const freshVersion = (): number => randomInt(0, 2 ** 48 - 1);

export class LocalLayer<V> {
  readonly #cache: Cache<unknown>;
  readonly #vp: string;
  readonly #dp: string;
  readonly #mp: string;
  readonly #localTtl: number;
  readonly #versionTtl: number;
  /** Per key: the name of its version entry, and of its copy at the version last seen. */
  readonly #names = new Map<string, { version: string; n: number; copy: string }>();
  /** The id used when the segment cannot hold one (an L1 that cannot be opened). */
  readonly #processId = randomBytes(8).toString('hex');

  constructor(cache: Cache<V>, prefix: string, localTtl: number) {
    this.#cache = cache as Cache<unknown>;
    this.#vp = '\u0000v' + prefix;
    this.#dp = '\u0000d' + prefix;
    this.#mp = '\u0000m' + prefix;
    this.#localTtl = localTtl;
    // A version outlives its copies (whose TTL is at most localTtl) for a while.
    this.#versionTtl = Math.min(localTtl * 2, Number.MAX_SAFE_INTEGER);
  }

  /** The TTL of an L1 copy of a value with `ttl` ms left in Redis (0: none). */
  copyTtl(ttl: number): number {
    return ttl > 0 && ttl < this.#localTtl ? ttl : this.#localTtl;
  }

  /** The live L1 copy of `key`, or undefined (also when the L1 fails). */
  get(key: string): V | undefined {
    try {
      // The names of a key's entries are kept (flat strings, hashed once)
      // while its version stays: a hit builds no string.
      let names = this.#names.get(key);
      if (names === undefined) {
        if (this.#names.size >= NAMES_KEPT) this.#names.clear();
        names = { version: this.#vp + key, n: -1, copy: '' };
        this.#names.set(key, names);
      }
      const n = this.#cache.get(names.version);
      if (typeof n !== 'number') return undefined;
      if (names.n !== n) {
        names.n = n;
        names.copy = this.#dp + key + '\u0000' + n;
      }
      return this.#cache.get(names.copy) as V | undefined;
    } catch {
      return undefined;
    }
  }

  /** The L1 key of `key`'s copy at version `n` (remember()'s local claim is on it). */
  copyKey(key: string, n: number): string {
    return this.#dp + key + '\u0000' + n;
  }

  /** The current version of `key`, created when missing; undefined when the L1 fails. */
  version(key: string): number | undefined {
    const c = this.#cache;
    const vk = this.#vp + key;
    try {
      let n = c.get(vk);
      if (typeof n === 'number') return n;
      n = freshVersion();
      if (c.add(vk, n, { ttl: this.#versionTtl })) return n as number;
      n = c.get(vk);
      return typeof n === 'number' ? n : undefined;
    } catch {
      return undefined;
    }
  }

  /** Bumps `key`'s version (creating it when missing); returns the new one, undefined when the L1 fails. */
  bump(key: string): number | undefined {
    try {
      return this.#cache.incr(this.#vp + key, 1, { initial: freshVersion(), ttl: this.#versionTtl });
    } catch {
      try {
        // Not an integer (never written so by the tier), or a failing L1:
        // make the version go away at least.
        this.#cache.delete(this.#vp + key);
      } catch {}
      return undefined;
    }
  }

  /** Drops `key` for a message: bumps its version if it has one (nothing to drop otherwise). */
  drop(key: string): void {
    const c = this.#cache;
    const vk = this.#vp + key;
    try {
      const n = c.get(vk);
      // A failed cas means another process moved the version meanwhile:
      // dropped either way.
      if (typeof n === 'number') c.cas(vk, n, n + 1);
    } catch {}
  }

  /**
   * After this machine's write reached Redis: if no one moved the version
   * since `n` (the one its write began with), moves it to n + 1 and stores
   * `value` there; otherwise bumps it (another write or a message came in
   * between: which of the two is last is unknown, so no copy).
   */
  commit(key: string, n: number | undefined, value: V, ttl: number): void {
    if (n === undefined) {
      this.bump(key);
      return;
    }
    try {
      if (this.#cache.cas(this.#vp + key, n, n + 1)) {
        this.store(key, n + 1, value, ttl);
        return;
      }
    } catch {}
    this.bump(key);
  }

  /** Stores a copy at version `n` (reachable only while `n` is current). An L1 that fails or is full stores nothing. */
  store(key: string, n: number, value: V, ttl: number): void {
    try {
      this.#cache.set(this.#dp + key + '\u0000' + n, value, { ttl: this.copyTtl(ttl) });
    } catch {}
  }

  /** Drops every key under the prefix: versions first (that alone makes every copy unreachable), then the copies. */
  dropAll(): void {
    const c = this.#cache;
    for (const p of [this.#vp, this.#dp]) {
      try {
        for (const k of c.keys(p)) c.delete(k);
      } catch {}
    }
  }

  /**
   * Whether another process of this machine has applied bus message `id`
   * already: then a copy filled since is fresh, and must not be dropped again.
   */
  applied(id: string): boolean {
    try {
      return this.#cache.has(this.#mp + id);
    } catch {
      return false;
    }
  }

  /** Marks bus message `id` as applied on this machine (after applying it: a process that dies between the two costs a second drop, never a missed one). */
  markApplied(id: string): void {
    try {
      this.#cache.set(this.#mp + id, 1, { ttl: this.#localTtl });
    } catch {}
  }

  /** This machine's id, kept in the segment (a per-process one when the L1 fails). */
  machineId(): string {
    const c = this.#cache;
    try {
      let id = c.get(MACHINE_KEY);
      if (typeof id === 'string') return id;
      id = randomBytes(8).toString('hex');
      if (c.add(MACHINE_KEY, id)) return id as string;
      id = c.get(MACHINE_KEY);
      if (typeof id === 'string') return id;
    } catch {}
    return this.#processId;
  }
}
