import type { Cluster, Redis } from 'ioredis';
import { ShmCacheError } from '../errors';
import type { Script } from './wire';

/** An ioredis client: a Redis or a Cluster. */
export type RedisClient = Redis | Cluster;

const noop = (): void => {};

/** The shortest time after which an overdue command no longer holds the breaker open (see run()). */
const FORGET_MS = 30_000;

/** `ERR_SHMCACHE_REDIS` for `what`, with the client's error as `cause`. */
export function redisError(what: string, cause: unknown): ShmCacheError {
  const message = cause instanceof Error ? cause.message : String(cause);
  return new ShmCacheError('ERR_SHMCACHE_REDIS', `${what}: ${message}`, { cause });
}

/**
 * The tier's way to the caller's client, which it does not reconfigure.
 * Every command is bounded by `timeout` (waiting for the client to be ready
 * included), then rejects with `ERR_SHMCACHE_REDIS`; it is sent at most once
 * by the tier, and only while the client is ready, so it never sits in the
 * client's offline queue to be replayed later. (A command already written
 * to a connection that then breaks is resent by ioredis itself when the
 * client has `autoResendUnfulfilledCommands`, its default: see `late`.)
 *
 * A circuit breaker: a command that timed out stays in the client's queue
 * and socket, and would still run when a hung server wakes up. While any
 * such command is overdue (sent, timed out, not answered yet), every new
 * command rejects at once with `ERR_SHMCACHE_REDIS` without being sent, so
 * only the writes in flight when the failure began can land late, and the
 * client's queue does not grow. The breaker closes once the connection has
 * answered (or failed) every overdue command; `recovered` then runs.
 */
export class RedisLink {
  readonly client: RedisClient;
  readonly timeout: number;
  #ready: Promise<void> | undefined;
  /** Commands sent that timed out and have not been answered yet. */
  #overdue = 0;
  /** What runs when the last overdue command is answered (the breaker closes). */
  #afterRecovery: (() => void)[] = [];

  constructor(client: RedisClient, timeout: number) {
    this.client = client;
    this.timeout = timeout;
  }

  /** How many commands are overdue (while > 0, new commands fail fast). */
  get overdue(): number {
    return this.#overdue;
  }

  /** Runs `fn` now if no command is overdue, else once the last one is answered. */
  afterRecovery(fn: () => void): void {
    if (this.#overdue === 0) fn();
    else this.#afterRecovery.push(fn);
  }

  /** Resolves when the client is ready; rejects at once when it is known to be down. */
  #whenReady(): Promise<void> | undefined {
    const client = this.client;
    const status = client.status;
    if (status === 'ready') return undefined;
    if (status === 'end' || status === 'close' || status === 'reconnecting' || status === 'disconnecting') {
      return Promise.reject(new Error(`the Redis client is not connected (status ${status})`));
    }
    if (!this.#ready) {
      if (status === 'wait') client.connect().catch(noop);
      this.#ready = new Promise<void>((resolve, reject) => {
        const onReady = (): void => {
          client.off('end', onEnd);
          this.#ready = undefined;
          resolve();
        };
        const onEnd = (): void => {
          client.off('ready', onReady);
          this.#ready = undefined;
          reject(new Error('the Redis client ended'));
        };
        client.once('ready', onReady);
        client.once('end', onEnd);
      });
      this.#ready.catch(noop);
    }
    return this.#ready;
  }

  /**
   * Runs `send` once the client is ready, within the timeout. `late` runs if
   * the command succeeds after the tier gave up on it (ioredis resent it, or
   * a stopped server woke up): a write that was reported as failed landed.
   */
  run<T>(what: string, send: () => Promise<T>, late?: () => void): Promise<T> {
    if (this.#overdue > 0) {
      return Promise.reject(
        redisError(what, new Error(`not sent: ${this.#overdue} earlier command(s) got no answer within ${this.timeout} ms and are still unanswered`)),
      );
    }
    return new Promise<T>((resolve, reject) => {
      let done = false;
      let sent = false;
      let overdue = false;
      let forget: NodeJS.Timeout | undefined;
      const timer = setTimeout(() => {
        done = true;
        if (sent) {
          overdue = true;
          this.#overdue++;
          // A safety valve, should the client never settle the command: the
          // breaker lets commands through again after a while (they meet a
          // server still hung, time out and open it again).
          forget = setTimeout(answered, Math.max(FORGET_MS, 10 * this.timeout));
          forget.unref();
        }
        reject(redisError(what, new Error(`no answer within ${this.timeout} ms`)));
      }, this.timeout);
      const answered = (): void => {
        if (!overdue) return;
        overdue = false;
        clearTimeout(forget);
        if (--this.#overdue === 0) for (const fn of this.#afterRecovery.splice(0)) fn();
      };
      const go = (): void => {
        if (done) return;
        if (this.#overdue > 0) {
          // Another command became overdue while this one waited for the client.
          done = true;
          clearTimeout(timer);
          reject(redisError(what, new Error('not sent: an earlier command is still unanswered')));
          return;
        }
        sent = true;
        let p: Promise<T>;
        try {
          p = send();
        } catch (err) {
          // Thrown before anything was written: nothing will answer it.
          sent = false;
          p = Promise.reject(err);
        }
        p.then(
          (value) => {
            if (done) {
              if (late) this.afterRecovery(late);
              answered();
              return;
            }
            done = true;
            clearTimeout(timer);
            resolve(value);
          },
          (err: unknown) => {
            if (done) {
              answered();
              return;
            }
            done = true;
            clearTimeout(timer);
            reject(err instanceof ShmCacheError ? err : redisError(what, err));
          },
        );
      };
      let ready: Promise<void> | undefined;
      try {
        ready = this.#whenReady();
      } catch (err) {
        ready = Promise.reject(err);
      }
      if (ready === undefined) go();
      else
        ready.then(go, (err: unknown) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          reject(redisError(what, err));
        });
    });
  }

  /** Scripts whose `#!lua` line this Redis could not compile (older than 7): their legacy text is used. */
  readonly #legacy = new Set<string>();

  /**
   * EVALSHA of `script` on `key`, and EVAL when Redis does not know it yet (a
   * restart, another node). A script with a `#!lua` flags line is sent by
   * EVAL with its text: Redis can read the flags of a script it is given,
   * but holds an EVALSHA of one it does not know during CLIENT PAUSE WRITE;
   * a Redis that cannot compile the line (older than 7) gets the legacy
   * script from then on.
   */
  script(script: Script, key: string, args: (string | Buffer | number)[], late?: () => void): Promise<unknown> {
    const client = this.client;
    const bySha = async (s: Script): Promise<unknown> => {
      try {
        return await client.callBuffer('evalsha', s.sha, 1, key, ...args);
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
        return await client.callBuffer('eval', s.text, 1, key, ...args);
      }
    };
    return this.run(
      script.name,
      async () => {
        const legacy = script.legacy;
        if (legacy === undefined) return bySha(script);
        if (this.#legacy.has(script.sha)) return bySha(legacy);
        try {
          return await client.callBuffer('eval', script.text, 1, key, ...args);
        } catch (err) {
          if (!(err instanceof Error) || !/compil|shebang|engine/i.test(err.message)) throw err;
          this.#legacy.add(script.sha);
          return bySha(legacy);
        }
      },
      late,
    );
  }
}
