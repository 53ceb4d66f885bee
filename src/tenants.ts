import * as path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { binding } from './binding';
import { Cache } from './cache';
import { invalid, ShmCacheError } from './errors';
import { makesItsFolder } from './open';
import type { CacheOptions } from './options';

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Options of `tenantCache()`: the folder, and any `Cache` option but `path`. */
export interface TenantCacheOptions<V = unknown> extends Omit<CacheOptions<V>, 'path'> {
  /**
   * Folder of the tenants' segment files. Resolved at first use like `path`,
   * so a relative or absolute folder inside a jail lands inside the jail.
   * Made (mode 0700) at first use when missing; no symlink in its path is
   * followed.
   */
  dir: string;
}

/**
 * A `Cache` on `<dir>/<tenant>.shm`. `tenant` must match
 * `/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/` (no slashes, no leading dot), so one
 * tenant's name can never reach another's file.
 * @throws {ShmCacheError} INVALID_OPTION for a bad tenant name or options.
 */
export function tenantCache<V = unknown>(tenant: string, options: TenantCacheOptions<V>): Cache<V> {
  if (typeof tenant !== 'string' || !TENANT.test(tenant)) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a tenant name matching /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/', 'tenant', tenant);
  }
  if (typeof options !== 'object' || options === null) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'an options object', 'options', options);
  }
  const { dir, ...rest } = options;
  if (typeof dir !== 'string' || dir.length === 0) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a folder path', 'dir', dir);
  }
  if ('path' in rest) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'no path (tenantCache() makes it)', 'path', (rest as { path: unknown }).path);
  }
  const cache = new Cache<V>({ ...rest, path: path.join(dir, `${tenant}.shm`) });
  makesItsFolder.add(cache);
  return cache;
}

/** Options of `jail()`. Each part is optional; at least one is needed. */
export interface JailOptions {
  /** Folder to `chroot` into (then `chdir('/')`). */
  root?: string;
  /** User id to switch to, last. Requires `gid`. */
  uid?: number;
  /** Group id: supplementary groups become `[gid]`, then `setgid(gid)`. */
  gid?: number;
}

function id(value: unknown, name: string): number {
  if (value === undefined) return -1;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > 0xfffffffe) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a uid/gid number', name, value);
  }
  return value;
}

/**
 * The per-tenant worker's one call before first use: `chroot(root)` and
 * `chdir('/')`, then `setgroups([gid])`, `setgid(gid)`, `setuid(uid)`, in
 * that order. Load the package (and construct caches) before it, open them
 * after it. Needs root (or CAP_SYS_CHROOT/CAP_SETUID/CAP_SETGID).
 * A `root` needs a `uid` other than 0 (root can leave a chroot), and the
 * process may hold no open directory descriptor (an `fchdir` way out).
 * @throws {ShmCacheError} JAIL (with `errno`, `syscall`) when a call fails;
 *   JAIL, before anything changes, for a root without a uid, an open
 *   directory descriptor, or a cache of this process opened before;
 *   INVALID_OPTION.
 */
export function jail(options: JailOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'an options object', 'options', options);
  }
  const { root, uid, gid } = options;
  if (root !== undefined && (typeof root !== 'string' || root.length === 0 || root.includes('\0'))) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a folder path', 'root', root);
  }
  const u = id(uid, 'uid');
  const g = id(gid, 'gid');
  if (u >= 0 && g < 0) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'a gid with the uid (the groups of the current user would stay)', 'gid', gid);
  }
  if (root === undefined && u < 0 && g < 0) {
    throw invalid('ERR_SHMCACHE_INVALID_OPTION', 'at least one of root, uid, gid', 'options', options);
  }
  if (!isMainThread) {
    // The chroot is the process's, but a worker thread cannot make the main
    // thread's Node see its new working directory.
    throw new ShmCacheError('ERR_SHMCACHE_JAIL', 'jail() must be called from the main thread');
  }
  binding.jail(root === undefined ? '' : path.resolve(root), u, g);
  // Node caches the working directory; make it see the jail's '/' too, or a
  // relative cache path would resolve against the old one.
  if (root !== undefined) process.chdir('/');
}
