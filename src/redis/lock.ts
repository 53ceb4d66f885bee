import { Buffer } from 'node:buffer';
import type { RedisLink } from './link';
import { ACQUIRE, newLock, RELEASE, STORE } from './wire';

const noop = (): void => {};

/** What `acquire()` found. */
export type Acquired =
  /** The caller holds the lock now. */
  | { kind: 'mine'; lock: Buffer }
  /** A value (bytes as stored, with its PTTL) or another producer's lock. */
  | { kind: 'found'; bytes: Buffer; pttl: number };

/**
 * remember()'s lock across machines. It lives on the value's own Redis key
 * (a value whose type byte is 0x00 and whose payload is the owner's random
 * token, set with `PX lockTtl`): one key, so one slot on a Cluster, and a
 * reader that meets it sees a miss, as the core's claim reads as absent.
 * Taking it, and learning that a value is there instead, is one script.
 */
export class RedisLock {
  readonly #link: RedisLink;

  constructor(link: RedisLink) {
    this.#link = link;
  }

  /** The value or lock at `rkey`, else a new lock of ours (`SET rkey token PX lockTtl` when empty). */
  async acquire(rkey: string, lockTtl: number): Promise<Acquired> {
    const lock = newLock();
    // An acquire that timed out and then ran took a lock no one holds: freed
    // (else every remember() of the key would wait for lockTtl).
    const r = await this.#link.script(ACQUIRE, rkey, [lock, lockTtl], () => {
      this.release(rkey, lock).catch(noop);
    });
    if (r === null || r === undefined) return { kind: 'mine', lock };
    const [bytes, pttl] = r as [Buffer, number];
    return { kind: 'found', bytes, pttl: Number(pttl) };
  }

  /** Stores the produced value if the key still holds `lock`; whether it stored. `late`: as RedisLink.run's. */
  async store(rkey: string, payload: Buffer, ttl: number, lock: Buffer, late?: () => void): Promise<boolean> {
    return Number(await this.#link.script(STORE, rkey, [payload, ttl, lock], late)) === 1;
  }

  /** Deletes the lock if it is still ours (a compare-and-delete script); errors are the caller's to ignore. */
  async release(rkey: string, lock: Buffer): Promise<boolean> {
    return Number(await this.#link.script(RELEASE, rkey, [lock])) === 1;
  }
}
