import * as path from 'node:path';
import { ShmCacheError } from './errors';

/** What the addon's open() reports. */
export interface OpenInfo {
  created: boolean;
  reset: boolean;
  size: number;
  maxValue: number;
  /** Mapped without write access (a read-only file or mount). */
  readOnly: boolean;
}

/** The addon's cache handle. Internal: arguments arrive checked. */
export interface NativeCache {
  /** stampMode: 0 never, 1 explicit, 2 process group. */
  open(
    path: string,
    size: number,
    create: boolean,
    stamp: number,
    stampMode: number,
    leaderPid: number,
    leaderStart: number,
    lockWaitMs: number,
    createFolder: boolean,
  ): OpenInfo;
  setBuffers(key: Buffer, out: Buffer, value: Buffer): void;
  setPool(pool: Buffer): void;
  /** The mapping, and the byte offset of this handle's memo hit counter (-1: none). */
  memoView(): [ArrayBuffer, number];
  get(keyLength: number, poolOffset: number): number | string;
  has(keyLength: number): boolean;
  /** value: a Buffer holding the value, or a string the addon encodes (valueLength is then ignored). */
  set(keyLength: number, type: number, valueLength: number, ttl: number, onlyIfAbsent: boolean, value?: Buffer | string): number;
  delete(keyLength: number): boolean;
  incr(keyLength: number, by: number, initial: number, ttl: number): number;
  cas(keyLength: number, expected: number, next: number): number;
  claim(keyLength: number): number;
  release(keyLength: number): boolean;
  keys(prefixLength: number): string[];
  clear(): void;
  stats(): Record<string, number>;
  verify(): string[];
  close(): void;
}

export interface Binding {
  NativeCache: new () => NativeCache;
  setErrorClass(cls: typeof ShmCacheError): void;
  setClockOffset(ms: number): void;
  noop(): void;
  lockedReads(): number;
  shardOf(key: string, shards: number): number;
  jail(root: string, uid: number, gid: number): void;
  abiVersion: number;
}

const addonPath = path.join(__dirname, '..', 'build', 'Release', 'shmcache.node');

function load(): Binding {
  let binding: Binding;
  try {
    binding = require(addonPath) as Binding;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'MODULE_NOT_FOUND'
        ? `the native addon ${addonPath} is missing (it is built when the package is installed)`
        : `the native addon ${addonPath} could not be loaded (${e.message}); it may have been built for another Node.js version`;
    throw new ShmCacheError(
      'ERR_SHMCACHE_IO',
      `shmcache: ${why}. Run \`npm rebuild shmcache\` (needs python3, make and a C++ compiler) and try again.`,
      { cause: err },
    );
  }
  binding.setErrorClass(ShmCacheError);
  return binding;
}

/** Loaded once when the package loads: before any chroot, as it must be. */
export const binding: Binding = load();
