import type { Cluster, Redis } from 'ioredis';
import { ShmCacheError } from '../errors';
import type { Script } from './wire';

/** An ioredis client: a Redis or a Cluster. */
export type RedisClient = Redis | Cluster;

const noop = (): void => {};

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
 */
export class RedisLink {
  readonly client: RedisClient;
  readonly timeout: number;
  #ready: Promise<void> | undefined;

  constructor(client: RedisClient, timeout: number) {
    this.client = client;
    this.timeout = timeout;
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
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(redisError(what, new Error(`no answer within ${this.timeout} ms`)));
      }, this.timeout);
      const go = (): void => {
        if (done) return;
        send().then(
          (value) => {
            if (done) {
              if (late) late();
              return;
            }
            done = true;
            clearTimeout(timer);
            resolve(value);
          },
          (err: unknown) => {
            if (done) return;
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

  /** EVALSHA of `script` on `key`, and EVAL when Redis does not know it yet (a restart, another node). */
  script(script: Script, key: string, args: (string | Buffer | number)[], late?: () => void): Promise<unknown> {
    const client = this.client;
    return this.run(
      script.name,
      async () => {
        try {
          return await client.callBuffer('evalsha', script.sha, 1, key, ...args);
        } catch (err) {
          if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
          return await client.callBuffer('eval', script.text, 1, key, ...args);
        }
      },
      late,
    );
  }
}
