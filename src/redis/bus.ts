import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { ShmCacheError } from '../errors';
import type { RedisClient } from './link';
import { decodeMessage, MAX_MESSAGE_CHARS, type BusMessage } from './wire';

const OVERSIZED: BusMessage = { machine: '', id: '', clear: true };

export interface BusEvents {
  /** A message from another machine. */
  message(m: BusMessage): void;
  /**
   * The subscription is (again) in place: whatever was published while it
   * was not is unknown, so every L1 key under the prefix must go.
   */
  subscribed(): void;
}

const noop = (): void => {};

/**
 * The subscriber side of the bus: its own connection, made with the
 * caller's client's `duplicate()` (for a Cluster, a duplicate of one of its
 * nodes: classic pub/sub reaches every node), which reconnects forever and
 * subscribes again after every reconnection; only then does it report
 * `subscribed()`, so no message published after that report is missed.
 */
export class Bus {
  readonly channel: string;
  readonly #client: RedisClient;
  readonly #events: BusEvents;
  #sub: Redis | undefined;
  #closed = false;
  #up = false;
  #waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  /** The last error the subscriber connection reported (for messages). */
  lastError: unknown;

  constructor(client: RedisClient, channel: string, events: BusEvents) {
    this.#client = client;
    this.channel = channel;
    this.#events = events;
    this.#connect();
  }

  /** Whether the subscription is in place now. */
  get up(): boolean {
    return this.#up;
  }

  #connect(): void {
    if (this.#closed) return;
    const client = this.#client;
    const cluster = client.isCluster;
    const options: Partial<RedisOptions> = {
      lazyConnect: false,
      enableOfflineQueue: true,
      autoResubscribe: false,
      autoResendUnfulfilledCommands: false,
      enableReadyCheck: true,
      maxRetriesPerRequest: null,
      connectionName: 'shmcache-bus',
      // A standalone server is tried again forever; a Cluster node a few
      // times, then another node is picked (it may have been replaced).
      retryStrategy: (times: number) => (cluster && times > 5 ? null : Math.min(times * 100, 1000)),
    };
    let sub: Redis;
    if (cluster) {
      const nodes = (client as Cluster).nodes('master');
      if (nodes.length === 0) {
        // The Cluster has not found its nodes yet.
        const retry = (): void => {
          client.off('ready', retry);
          clearTimeout(timer);
          this.#connect();
        };
        const timer = setTimeout(retry, 500);
        client.once('ready', retry);
        return;
      }
      sub = nodes[Math.floor(Math.random() * nodes.length)]!.duplicate(options);
    } else {
      sub = (client as Redis).duplicate(options);
    }
    this.#sub = sub;
    sub.on('error', (err: unknown) => (this.lastError = err));
    sub.on('close', () => {
      if (this.#sub === sub) this.#up = false;
    });
    sub.on('end', () => {
      if (this.#sub !== sub || this.#closed) return;
      this.#up = false;
      this.#sub = undefined;
      setTimeout(() => this.#connect(), 100).unref();
    });
    sub.on('ready', () => {
      sub.subscribe(this.channel).then(() => {
        if (this.#sub !== sub || this.#closed || sub.status !== 'ready') return;
        this.#events.subscribed();
        this.#up = true;
        for (const w of this.#waiters.splice(0)) w.resolve();
      }, noop);
    });
    sub.on('message', (channel: string, text: string) => {
      if (channel !== this.channel || this.#sub !== sub || this.#closed) return;
      // A message too long to read at once (no tier sends one: it splits)
      // is taken as a clear, unread: that costs the machine its copies, not a
      // blocked event loop.
      const m = text.length > MAX_MESSAGE_CHARS ? OVERSIZED : decodeMessage(text);
      if (m !== undefined) this.#events.message(m);
    });
  }

  /** Resolves once subscribed; rejects with ERR_SHMCACHE_REDIS after `timeoutMs`. */
  ready(timeoutMs: number): Promise<void> {
    if (this.#up) return Promise.resolve();
    if (this.#closed) return Promise.reject(new ShmCacheError('ERR_SHMCACHE_CLOSED', 'the tiered cache is closed'));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (): void => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err: unknown): void => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        const cause = this.lastError ?? new Error(`not subscribed within ${timeoutMs} ms`);
        reject(new ShmCacheError('ERR_SHMCACHE_REDIS', `the bus subscription to ${JSON.stringify(this.channel)} is not in place`, { cause }));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** Unsubscribes and quits the subscriber connection (disconnects it if quit takes longer than `timeoutMs`). */
  async close(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#up = false;
    for (const w of this.#waiters.splice(0)) w.reject(new ShmCacheError('ERR_SHMCACHE_CLOSED', 'the tiered cache is closed'));
    const sub = this.#sub;
    this.#sub = undefined;
    if (!sub) return;
    if (sub.status !== 'ready') {
      sub.disconnect();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      sub.quit().catch(noop),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    sub.disconnect();
  }
}
