import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Cache } from '../cache';
import { invalid, ShmCacheError } from '../errors';
import { parseTtl } from '../options';
import { Bus } from './bus';
import { redisError, RedisLink } from './link';
import { LocalLayer, type Ver } from './local';
import { RedisLock } from './lock';
import { MAX_NAME_BYTES, resolveTierOptions, type ResolvedTierOptions, type TieredCacheOptions } from './options';
import { decodeValue, encodeMessage, encodeValue, FILL, LOCKED, MAX_MESSAGE_KEYS, type BusMessage } from './wire';
import { isWellFormed } from '../strings';

/** Options of `TieredCache.set()`. */
export interface TierSetOptions {
  /** Time to live in ms (`0`: none). Default: the tier's `ttl`. */
  ttl?: number;
}

/** Options of `TieredCache.remember()`. */
export interface TierRememberOptions {
  /** Time to live of the produced value in ms. Default: the tier's `ttl`. */
  ttl?: number;
  /** How long to wait for another process's or machine's producer, in ms. Default `10000`. */
  wait?: number;
  /** How long the Redis lock lives, in ms. Default: the tier's `lockTtl`. */
  lockTtl?: number;
}

const KEY_RULE = `a non-empty, well-formed string, at most ${MAX_NAME_BYTES} UTF-8 bytes with the prefix`;
const noop = (): void => {};

function optionsObject(value: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null) throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'an options object', 'options', value);
  for (const k in value) {
    if (!allowed.includes(k)) {
      throw new ShmCacheError(
        'ERR_SHMCACHE_INVALID_OPTION',
        `Unknown option ${JSON.stringify(k)} in options (expected ${allowed.map((a) => JSON.stringify(a)).join(', ')})`,
      );
    }
  }
  return value as Record<string, unknown>;
}

/** A PTTL reply as a TTL: -1 (no expiry) is 0; a key about to expire keeps 1 ms. */
const ttlFromPttl = (pttl: number): number => (pttl < 0 ? 0 : Math.max(1, pttl));

/**
 * A cache in two tiers: the machine's shmcache segment (L1, shared by every
 * process of the machine) over Redis or a Redis Cluster (L2, shared by every
 * machine), with Redis pub/sub as the bus that tells the other machines to
 * drop their L1 copies. See docs/redis.md.
 *
 * @typeParam V the type of the values.
 */
export class TieredCache<V = unknown> {
  readonly #o: ResolvedTierOptions<V>;
  readonly #l1: LocalLayer<V>;
  readonly #link: RedisLink;
  readonly #lock: RedisLock;
  readonly #bus: Bus;
  readonly #prefixBytes: number;
  #closed = false;
  /** remember() callers waiting for another machine's producer, by key. */
  readonly #waiters = new Map<string, Set<() => void>>();
  /**
   * Bus messages still owed: keys whose write landed late or whose message
   * failed, and whether a clear's did; sent once the link answers again.
   */
  readonly #late = new Set<string>();
  #lateClear = false;
  /** When the oldest message still owed was due (0: none owed). */
  #lateSince = 0;
  #lateRetry: NodeJS.Timeout | undefined;

  /** @throws {ShmCacheError} `ERR_SHMCACHE_INVALID_OPTION` for any bad or unknown option. */
  constructor(options: TieredCacheOptions<V>) {
    const o = resolveTierOptions<V>(options);
    this.#o = o;
    this.#prefixBytes = Buffer.byteLength(o.prefix, 'utf8');
    this.#l1 = new LocalLayer<V>(o.local, o.prefix, o.localTtl);
    this.#link = new RedisLink(o.redis, o.timeout);
    this.#lock = new RedisLock(this.#link);
    this.#bus = new Bus(o.redis, o.prefix, {
      message: (m) => this.#onMessage(m),
      subscribed: () => {
        // Whatever was published while this process was not subscribed is
        // unknown: every copy under the prefix goes.
        this.#l1.dropAll();
        this.#wakeAll();
      },
    });
  }

  /** The L1 `Cache` (the machine's segment). */
  get local(): Cache<V> {
    return this.#o.local;
  }

  /** The Redis key prefix and bus channel. */
  get prefix(): string {
    return this.#o.prefix;
  }

  /** The Redis client given (the caller's). */
  get redis(): Redis | Cluster {
    return this.#o.redis;
  }

  /**
   * Resolves once this process is subscribed to the bus (until then, writes
   * of other machines are not seen before `localTtl`).
   * @throws {ShmCacheError} REDIS when not subscribed within `timeout`; CLOSED.
   */
  ready(): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    return this.#bus.ready(this.#o.timeout);
  }

  #checkKey(key: unknown): asserts key is string {
    if (this.#closed) throw closedError();
    if (typeof key !== 'string' || key.length === 0 || !isWellFormed(key)) {
      throw invalid('ERR_SHMCACHE_INVALID_KEY', KEY_RULE, 'key', key);
    }
    if (this.#prefixBytes + key.length * 3 > MAX_NAME_BYTES && this.#prefixBytes + Buffer.byteLength(key, 'utf8') > MAX_NAME_BYTES) {
      throw invalid('ERR_SHMCACHE_INVALID_KEY', KEY_RULE, 'key', key);
    }
  }

  #ttl(options: unknown, allowed: readonly string[] = ['ttl']): Record<string, unknown> & { ttl: number } {
    const o = optionsObject(options, allowed);
    return { ...o, ttl: o.ttl === undefined ? this.#o.ttl : parseTtl(o.ttl, 'ttl') };
  }

  /**
   * The value of `key`: the L1 copy, else Redis's value (then copied into the
   * L1 with the TTL Redis has left, at most `localTtl`), else `undefined`.
   * @throws {ShmCacheError} REDIS on an L1 miss when Redis cannot answer
   *   (L1 hits are served whatever Redis does); INVALID_KEY, CLOSED; CORRUPT
   *   for a Redis value no TieredCache wrote.
   */
  async get(key: string): Promise<V | undefined> {
    this.#checkKey(key);
    const hit = this.#l1.get(key);
    if (hit !== undefined) return hit;
    return this.#fill(key);
  }

  async #fill(key: string): Promise<V | undefined> {
    // The version is read before Redis is: a drop that comes in meanwhile
    // moves it, and the copy stored below at the old one is never read.
    const n = this.#l1.version(key);
    const r = (await this.#link.script(FILL, this.#o.prefix + key, [])) as [Buffer, number] | null;
    if (r === null || r === undefined) return undefined;
    const value = decodeValue(r[0], this.#o.codec, key);
    if (value === LOCKED) return undefined;
    if (n !== undefined) this.#l1.store(key, n, value, ttlFromPttl(Number(r[1])));
    return value;
  }

  /**
   * Stores `value` in Redis (with `PX ttl` in the same command), then in this
   * machine's L1, then tells the other machines to drop their copies.
   * `set(key, undefined)` deletes.
   * @throws {ShmCacheError} REDIS when Redis or the bus could not be reached
   *   within `timeout` (this machine's L1 is then left without the key; the
   *   write may still have reached Redis); INVALID_KEY, INVALID_OPTION,
   *   ENCODE, CLOSED. A full or failing L1 never fails it.
   */
  async set(key: string, value: V | undefined, options?: TierSetOptions): Promise<void> {
    this.#checkKey(key);
    const { ttl } = this.#ttl(options);
    if (value === undefined) {
      await this.delete(key);
      return;
    }
    const payload = encodeValue(value, this.#o.codec, key);
    const client = this.#o.redis;
    const rkey = this.#o.prefix + key;
    // This machine stops serving its old copy as the write begins (and a
    // writer that dies before the end leaves no copy behind).
    const n = this.#l1.bump(key);
    try {
      await this.#link.run(
        'SET',
        () => (ttl > 0 ? client.set(rkey, payload, 'PX', ttl) : client.set(rkey, payload)),
        () => this.#landedLate(key),
      );
    } catch (err) {
      this.#l1.bump(key);
      throw err;
    }
    this.#l1.commit(key, n, value, ttl);
    await this.#announce({ keys: [key] });
  }

  /**
   * Deletes `key` from Redis and this machine's L1, then tells the others.
   * @returns whether Redis held the key.
   * @throws {ShmCacheError} as `set()`.
   */
  async delete(key: string): Promise<boolean> {
    this.#checkKey(key);
    const client = this.#o.redis;
    const rkey = this.#o.prefix + key;
    this.#l1.bump(key);
    let removed: number;
    try {
      removed = await this.#link.run('DEL', () => client.del(rkey), () => this.#landedLate(key));
    } finally {
      // Also after the delete: a fill that read Redis before it stored its
      // copy at the version bumped above.
      this.#l1.bump(key);
    }
    await this.#announce({ keys: [key] });
    return removed > 0;
  }

  /**
   * Deletes every Redis key under the prefix (SCAN and UNLINK, on every
   * master of a Cluster), drops this machine's L1 keys under it, then tells
   * the others to drop theirs.
   * @throws {ShmCacheError} REDIS, CLOSED.
   */
  async clear(): Promise<void> {
    if (this.#closed) throw closedError();
    try {
      await this.#clearRedis();
    } finally {
      this.#l1.dropAll();
    }
    await this.#announce({ clear: true });
  }

  async #clearRedis(): Promise<void> {
    const pattern = this.#o.prefix.replace(/[*?[\]\\]/g, '\\$&') + '*';
    const client = this.#o.redis;
    const nodes: Redis[] = client.isCluster ? (client as Cluster).nodes('master') : [client as Redis];
    for (const node of nodes) {
      let cursor = '0';
      // Bounded: SCAN ends, at the latest, when it has walked the keyspace.
      do {
        const [next, keys] = await this.#link.run('SCAN', () => node.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', 1000));
        cursor = next.toString();
        if (keys.length === 0) continue;
        if (client.isCluster) {
          // A Cluster refuses multi-key commands across slots, even on one node.
          const p = node.pipeline();
          for (const k of keys) p.unlink(k);
          const results = await this.#link.run('UNLINK', () => p.exec());
          // exec() resolves with one [error, reply] per command: each one counts.
          const failed = (results ?? []).find(([err]) => err);
          if (results === null) throw redisError('UNLINK', new Error('the pipeline was not run'));
          if (failed) throw redisError('UNLINK', failed[0]);
        } else {
          await this.#link.run('UNLINK', () => node.unlink(...keys));
        }
      } while (cursor !== '0');
    }
  }

  /**
   * The live value of `key`; when there is none, exactly one caller across
   * every process of every machine runs `producer` and stores its value
   * (in Redis, then in the L1), while the others wait for it: the L1's own
   * claim picks one process per machine, then a lock in Redis picks one
   * machine. A producer that throws stores nothing and its error goes to its
   * own caller; one whose process dies or hangs loses the local claim at
   * once and the Redis lock after `lockTtl`, and a waiter takes over.
   * @throws {ShmCacheError} TIMEOUT (no value within `wait`), REDIS,
   *   INVALID_KEY, INVALID_OPTION, ENCODE, CLOSED; whatever `producer` throws.
   */
  async remember(key: string, producer: () => V | Promise<V>, options?: TierRememberOptions): Promise<V> {
    this.#checkKey(key);
    if (typeof producer !== 'function') throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a function', 'producer', producer);
    const o = this.#ttl(options, ['ttl', 'wait', 'lockTtl']);
    const wait = o.wait === undefined ? 10_000 : parseTtl(o.wait, 'wait');
    const lockTtl = o.lockTtl === undefined ? this.#o.lockTtl : parseTtl(o.lockTtl, 'lockTtl');
    if (lockTtl < 1) throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a positive integer of milliseconds', 'lockTtl', lockTtl);
    const hit = this.#l1.get(key);
    if (hit !== undefined) return hit;
    const deadline = Date.now() + wait;
    const n = this.#l1.version(key);
    let produced: { value: V } | undefined;
    let ran = false;
    const inner = async (): Promise<V> => {
      ran = true;
      produced = { value: await this.#produce(key, producer, o.ttl, lockTtl, deadline, n) };
      // The value is in the L1 already, with the TTL Redis gave it (or in no
      // tier at all): the core stores nothing, and its waiters read the L1.
      return undefined as V;
    };
    if (n !== undefined) {
      let value: V;
      try {
        value = await this.#o.local.remember(this.#l1.copyKey(key, n), inner, { wait });
      } catch (err) {
        // An L1 that fails before the producer ran: without the local claim.
        if (ran || (err instanceof ShmCacheError && err.code === 'ERR_SHMCACHE_TIMEOUT')) throw err;
        await inner();
        return produced!.value;
      }
      if (produced !== undefined) return (produced as { value: V }).value;
      return value;
    }
    await inner();
    return produced!.value;
  }

  /** remember()'s claimant: the value from Redis, or the Redis lock and the producer's value. */
  async #produce(
    key: string,
    producer: () => V | Promise<V>,
    ttl: number,
    lockTtl: number,
    deadline: number,
    n: Ver | undefined,
  ): Promise<V> {
    const rkey = this.#o.prefix + key;
    let delay = 5;
    for (;;) {
      if (this.#closed) throw closedError();
      const a = await this.#lock.acquire(rkey, lockTtl);
      if (a.kind === 'found') {
        const value = decodeValue(a.bytes, this.#o.codec, key);
        if (value !== LOCKED) {
          if (n !== undefined) this.#l1.store(key, n, value, ttlFromPttl(a.pttl));
          return value;
        }
        // Another machine's producer is running: its value comes over the
        // bus, or this poll finds it, or its lock expires and this one takes over.
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new ShmCacheError('ERR_SHMCACHE_TIMEOUT', `waited for another machine to produce ${JSON.stringify(key)}`);
        }
        await this.#waitFor(key, Math.min(delay, left, Math.max(1, a.pttl)));
        delay = Math.min(delay * 2, 100);
        continue;
      }
      const release = (): void => {
        this.#lock.release(rkey, a.lock).catch(noop);
      };
      let value: V;
      let payload: Buffer;
      try {
        value = await producer();
        if (value === undefined) {
          release();
          return value;
        }
        payload = encodeValue(value, this.#o.codec, key);
      } catch (err) {
        release();
        throw err;
      }
      let stored: boolean;
      try {
        stored = await this.#lock.store(rkey, payload, ttl, a.lock, () => this.#landedLate(key));
      } catch (err) {
        release();
        throw err;
      }
      if (stored) {
        if (n !== undefined) this.#l1.store(key, n, value, ttl);
        // Wakes the other machines' waiters; their L1 held no copy, so a lost
        // message costs them only a poll.
        this.#announce({ keys: [key] }).catch(noop);
      }
      return value;
    }
  }

  #waitFor(key: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#waiters.get(key);
      if (!set) this.#waiters.set(key, (set = new Set()));
      const s = set;
      const wake = (): void => {
        clearTimeout(timer);
        s.delete(wake);
        if (s.size === 0 && this.#waiters.get(key) === s) this.#waiters.delete(key);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      s.add(wake);
    });
  }

  #wake(key: string): void {
    const set = this.#waiters.get(key);
    if (set) for (const w of [...set]) w();
  }

  #wakeAll(): void {
    for (const set of [...this.#waiters.values()]) for (const w of [...set]) w();
  }

  #onMessage(m: BusMessage): void {
    // A machine never drops its own fresh write.
    if (m.machine === this.#l1.machineId()) return;
    const first = m.id === '' || !this.#l1.applied(m.id);
    if (m.clear) {
      if (first) this.#l1.dropAll();
      this.#wakeAll();
    } else {
      for (const key of m.keys!) {
        if (first) this.#l1.drop(key);
        this.#wake(key);
      }
    }
    if (first && m.id !== '') this.#l1.markApplied(m.id);
  }

  /**
   * Publishes a write to the bus (keys in messages of at most
   * MAX_MESSAGE_KEYS); a failure drops this machine's copies of its keys and rejects.
   */
  async #announce(m: Omit<BusMessage, 'machine' | 'id'>): Promise<void> {
    const machine = this.#l1.machineId();
    const texts: string[] = [];
    if (m.clear) texts.push(encodeMessage({ machine, id: randomBytes(9).toString('base64url'), clear: true }));
    else {
      for (let i = 0; i < m.keys!.length; i += MAX_MESSAGE_KEYS) {
        texts.push(encodeMessage({ machine, id: randomBytes(9).toString('base64url'), keys: m.keys!.slice(i, i + MAX_MESSAGE_KEYS) }));
      }
    }
    try {
      for (const text of texts) await this.#link.run('PUBLISH', () => this.#o.redis.publish(this.#o.prefix, text));
    } catch (err) {
      if (m.clear) this.#l1.dropAll();
      else for (const k of m.keys!) this.#l1.bump(k);
      // Sent again once the link answers (the write itself is in Redis).
      this.#owe(m.clear ? undefined : m.keys);
      const cause = err instanceof ShmCacheError ? (err.cause ?? err) : err;
      throw redisError('stored in Redis, but the bus message to the other machines failed (sent again once Redis takes it; their copies live up to localTtl)', cause);
    }
  }

  /**
   * A write the tier reported as failed reached Redis after all: drop the key
   * here, and tell the others (the link calls it once it answers everything
   * again: its breaker refuses new commands until then).
   */
  #landedLate(key: string): void {
    if (this.#closed) return;
    this.#l1.bump(key);
    if (this.#lateSince === 0) this.#lateSince = Date.now();
    this.#late.add(key);
    // All the keys that land in one go, in one message.
    queueMicrotask(() => this.#link.afterRecovery(() => this.#flushLate()));
  }

  /** Owes a bus message for `keys` (undefined: a clear): sent again after `timeout`, once the link answers. */
  #owe(keys: string[] | undefined): void {
    if (this.#closed) return;
    if (this.#lateSince === 0) this.#lateSince = Date.now();
    if (keys === undefined) this.#lateClear = true;
    else for (const k of keys) this.#late.add(k);
    if (this.#lateRetry !== undefined) return;
    this.#lateRetry = setTimeout(() => {
      this.#lateRetry = undefined;
      this.#link.afterRecovery(() => this.#flushLate());
    }, this.#o.timeout);
    this.#lateRetry.unref();
  }

  /** Sends the bus messages owed (a failure owes them again), unless they are older than localTtl (no copy they would drop is left). */
  #flushLate(): void {
    if (this.#closed || (this.#late.size === 0 && !this.#lateClear)) return;
    const keys = [...this.#late];
    const clear = this.#lateClear;
    this.#late.clear();
    this.#lateClear = false;
    if (Date.now() - this.#lateSince > this.#o.localTtl) {
      this.#lateSince = 0;
      return;
    }
    (clear ? this.#announce({ clear: true }) : this.#announce({ keys })).then(() => {
      if (this.#late.size === 0 && !this.#lateClear) this.#lateSince = 0;
    }, noop);
  }

  /**
   * Unsubscribes from the bus and quits its connection; closes the L1 if the
   * tier created it. The Redis client given stays open. Idempotent; later
   * calls reject with `ERR_SHMCACHE_CLOSED`.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#lateRetry);
    this.#wakeAll();
    await this.#bus.close(this.#o.timeout);
    if (this.#o.ownsLocal) this.#o.local.close();
  }
}

function closedError(): ShmCacheError {
  return new ShmCacheError('ERR_SHMCACHE_CLOSED', 'the tiered cache is closed');
}
