/**
 * Attaching to a segment the way every command and the status server do:
 * `{ create: false, stamp: false }` (never create, never reset, never grow),
 * and as the file's owner.
 *
 * The file rules refuse a segment not owned by the process's effective uid
 * (ERR_SHMCACHE_PERMISSION). A root (or CAP_SETUID + CAP_SETGID) process
 * reading a tenant's file therefore takes the owner's effective uid and gid
 * for the open() alone, then takes its own back: the mapping stays usable.
 * Root thus never opens a tenant's file, or walks a tenant's folders, with
 * root's rights. The switch is process-wide (the kernel applies it to every
 * thread): nothing else may run meanwhile, which holds for a synchronous
 * open() on the main thread (the server reads its static files into memory
 * at start, so no libuv thread touches the file system for it).
 */
import { lstatSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Cache } from '../index';

/**
 * The owner of `path`, as lstat() says. A process that may switch uids but
 * cannot search the file's folder (a dedicated user with CAP_SETUID and a
 * tenant's 0700 folder) asks as the folder's owner.
 */
function ownerOf(path: string): { uid: number; gid: number } | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') return undefined;
  }
  try {
    const dir = lstatSync(dirname(path));
    return asUser(dir.uid, dir.gid, () => lstatSync(path));
  } catch {
    return undefined;
  }
}

/**
 * Runs `fn` with effective uid `uid`, gid `gid` and no supplementary groups
 * (root's stay out of the tenant's open()) when we may switch to them; as
 * we are otherwise. Whatever may do this (root, or CAP_SETUID +
 * CAP_SETGID) is root-equivalent: it could become any user.
 */
function asUser<T>(uid: number, gid: number, fn: () => T): T {
  const euid = process.geteuid!();
  const egid = process.getegid!();
  if (uid === euid) return fn();
  const groups = process.getgroups!();
  try {
    process.setgroups!([]);
  } catch {
    return fn(); // not privileged: the core refuses the foreign file (PERMISSION)
  }
  try {
    process.setegid!(gid);
  } catch {
    restore(euid, egid, groups);
    return fn();
  }
  try {
    process.seteuid!(uid);
  } catch {
    restore(euid, egid, groups);
    return fn();
  }
  try {
    return fn();
  } finally {
    restore(euid, egid, groups);
  }
}

/** Runs `fn` with the effective uid and gid of `path`'s owner when they differ from ours and we may switch. */
export function asOwnerOf<T>(path: string, fn: () => T): T {
  const owner = ownerOf(path);
  return owner === undefined ? fn() : asUser(owner.uid, owner.gid, fn); // missing: the core says so, naming the path
}

function restore(euid: number, egid: number, groups: number[]): void {
  try {
    process.seteuid!(euid); // first: it brings back the right to set the gid and the groups
    process.setegid!(egid);
    process.setgroups!(groups);
  } catch (err) {
    // Never go on running as a tenant.
    process.stderr.write(`shmcache: cannot take back uid ${euid} / gid ${egid}: ${(err as Error).message}\n`);
    process.abort();
  }
}

/**
 * The time a read-write attach (delete, clear, verify --repair, the
 * server's POST routes) waits for a segment's file lock unless
 * SHMCACHE_LOCK_TIMEOUT_MS says otherwise. Read-only attaches take no lock.
 */
export function defaultLockWait(ms: number): void {
  if (process.env.SHMCACHE_LOCK_TIMEOUT_MS === undefined) process.env.SHMCACHE_LOCK_TIMEOUT_MS = String(ms);
}

export interface AttachOptions {
  /**
   * Default true: `{ readOnly: true }` (O_RDONLY, PROT_READ, no lock, no
   * slot, nothing written or repaired). false only for the mutations.
   */
  readOnly?: boolean;
  /** A codec of the handle (default the core's v8). */
  codec?: import('../index').CacheOptions['codec'];
}

/** An open Cache on `path`: attach only, never reset, as the file's owner; read-only unless told otherwise. */
export function attach(path: string, options: AttachOptions = {}): Cache {
  const file = resolve(path);
  // Loaded here, not at start: `--help` works even when the addon does not load.
  const { Cache: CacheClass } = require('../index') as typeof import('../index');
  const readOnly = options.readOnly ?? true;
  const codec = options.codec === undefined ? {} : { codec: options.codec };
  const cache = readOnly
    ? new CacheClass({ path: file, readOnly: true, stamp: false, ...codec })
    : new CacheClass({ path: file, create: false, stamp: false, ...codec });
  asOwnerOf(file, () => cache.open());
  return cache;
}
