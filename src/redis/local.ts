import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Cache } from '../cache';

/**
 * The tier's layout in the L1 segment (docs/redis.md, "Inside the L1").
 *
 * A user key `k` under prefix `p` has two L1 entries, both in a namespace that
 * starts with U+0000 (a prefix may not start with it, so no key written
 * through the tier, and no key of another prefix, can collide with them):
 *
 * - its version `"\0v" + p + k`, an integer;
 * - its copy at epoch e and version n, `"\0d" + p + k + "\0" + e + "." + n`
 *   (e and n in decimal: the last U+0000 splits the name unambiguously).
 *
 * The epoch `"\0e" + p` is one integer for the whole prefix: dropping every
 * key (a reconnect, a clear) moves it, which makes every copy unreachable at
 * once, in O(1); the copies left go by their TTL (at most localTtl) or by
 * eviction (they are never read again).
 *
 * A read looks up the epoch and the version, then the copy at both. Dropping a key
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

/** Where a key's copy lives: the epoch and the key's version, both read before Redis is. */
export interface Ver {
  e: number;
  n: number;
}

/** What ties a machine id to this machine and this file: a copied segment (an image, another host, another path) gets a new one. */
function bindingOf(path: string): string {
  let boot = '';
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {}
  let file = '';
  try {
    const st = statSync(path);
    file = `${st.dev}:${st.ino}`;
  } catch {}
  // Not the host name: containers of one host that share a segment differ in it.
  return `${boot === '' ? hostname() : boot}/${file}`;
}

export class LocalLayer<V> {
  readonly #cache: Cache<unknown>;
  readonly #vp: string;
  readonly #dp: string;
  readonly #mp: string;
  readonly #ep: string;
  readonly #localTtl: number;
  readonly #versionTtl: number;
  /** Per key: the name of its version entry, and of its copy at the epoch and version last seen. */
  readonly #names = new Map<string, { version: string; e: number; n: number; copy: string }>();
  /** The id used when the segment cannot hold one (an L1 that cannot be opened). */
  readonly #processId = randomBytes(8).toString('hex');

  constructor(cache: Cache<V>, prefix: string, localTtl: number) {
    this.#cache = cache as Cache<unknown>;
    this.#vp = '\u0000v' + prefix;
    this.#dp = '\u0000d' + prefix;
    this.#mp = '\u0000m' + prefix;
    this.#ep = '\u0000e' + prefix;
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
        names = { version: this.#vp + key, e: -1, n: -1, copy: '' };
        this.#names.set(key, names);
      }
      const e = this.#cache.get(this.#ep);
      if (typeof e !== 'number') return undefined;
      const n = this.#cache.get(names.version);
      if (typeof n !== 'number') return undefined;
      if (names.n !== n || names.e !== e) {
        names.e = e;
        names.n = n;
        names.copy = this.#dp + key + '\u0000' + e + '.' + n;
      }
      return this.#cache.get(names.copy) as V | undefined;
    } catch {
      return undefined;
    }
  }

  /** The L1 key of `key`'s copy at `v` (remember()'s local claim is on it). */
  copyKey(key: string, v: Ver): string {
    return this.#dp + key + '\u0000' + v.e + '.' + v.n;
  }

  /** The current epoch, created when missing (at a random value: an old one never comes back). */
  #epoch(): number | undefined {
    const c = this.#cache;
    let e = c.get(this.#ep);
    if (typeof e === 'number') return e;
    if (c.add(this.#ep, freshVersion())) e = c.get(this.#ep);
    else e = c.get(this.#ep);
    return typeof e === 'number' ? e : undefined;
  }

  /** The current epoch and version of `key`, created when missing; undefined when the L1 fails. */
  version(key: string): Ver | undefined {
    const c = this.#cache;
    const vk = this.#vp + key;
    try {
      const e = this.#epoch();
      if (e === undefined) return undefined;
      let n = c.get(vk);
      if (typeof n === 'number') return { e, n };
      n = freshVersion();
      if (c.add(vk, n, { ttl: this.#versionTtl })) return { e, n: n as number };
      n = c.get(vk);
      return typeof n === 'number' ? { e, n } : undefined;
    } catch {
      return undefined;
    }
  }

  /** Bumps `key`'s version (creating it when missing); returns the new one, undefined when the L1 fails. */
  bump(key: string): Ver | undefined {
    try {
      const e = this.#epoch();
      const n = this.#cache.incr(this.#vp + key, 1, { initial: freshVersion(), ttl: this.#versionTtl });
      return e === undefined ? undefined : { e, n };
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
  commit(key: string, v: Ver | undefined, value: V, ttl: number): void {
    if (v === undefined) {
      this.bump(key);
      return;
    }
    try {
      if (this.#cache.cas(this.#vp + key, v.n, v.n + 1)) {
        // At the epoch read as the write began: a drop of every key since
        // then leaves this copy unreachable.
        this.store(key, { e: v.e, n: v.n + 1 }, value, ttl);
        return;
      }
    } catch {}
    this.bump(key);
  }

  /** Stores a copy at `v` (reachable only while `v` is current). An L1 that fails or is full stores nothing. */
  store(key: string, v: Ver, value: V, ttl: number): void {
    try {
      this.#cache.set(this.copyKey(key, v), value, { ttl: this.copyTtl(ttl) });
    } catch {}
  }

  /**
   * Drops every key under the prefix at once, in O(1): moves the epoch, so
   * that no copy stored before is reachable (nor one that a fill or a write
   * begun before stores later). The copies go by their TTL or by eviction.
   */
  dropAll(): void {
    const c = this.#cache;
    try {
      c.incr(this.#ep, 1, { initial: freshVersion() });
    } catch {
      try {
        // Not an integer, or a failing L1: without an epoch nothing is read.
        c.delete(this.#ep);
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

  /** The stored machine id entry last parsed, and its id. */
  #raw = '';
  #id = '';
  /** This process's binding (host, boot, the segment file): computed once. */
  #binding: string | undefined;

  /**
   * This machine's id, kept in the segment as `"<id> <binding>"` (a
   * per-process one when the L1 fails). The binding is the boot id (the
   * host name where there is none) and the segment file's device and inode: a segment copied to
   * another host or path, or kept over a reboot, no longer matches, and
   * the first process that sees that makes a new id (the processes of a
   * machine read the id every time, so they agree on the new one).
   */
  machineId(): string {
    const c = this.#cache;
    try {
      let raw = c.get(MACHINE_KEY);
      if (typeof raw === 'string' && raw === this.#raw) return this.#id;
      if (this.#binding === undefined) this.#binding = bindingOf(this.#cache.path);
      if (typeof raw === 'string') {
        const space = raw.indexOf(' ');
        if (space > 0 && raw.slice(space + 1) === this.#binding) {
          this.#raw = raw;
          this.#id = raw.slice(0, space);
          return this.#id;
        }
        // Another machine's, or this file's before a copy or a reboot.
        c.delete(MACHINE_KEY);
      }
      const fresh = randomBytes(8).toString('hex') + ' ' + this.#binding;
      c.add(MACHINE_KEY, fresh);
      raw = c.get(MACHINE_KEY);
      if (typeof raw === 'string') {
        const space = raw.indexOf(' ');
        if (space > 0) {
          this.#raw = raw;
          this.#id = raw.slice(0, space);
          return this.#id;
        }
      }
    } catch {}
    return this.#processId;
  }
}
