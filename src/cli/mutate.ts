import { attach, defaultLockWait } from './attach';
import { json, visible } from './format';

/** The mutations attach read-write, and wait at most this long for the segment's file lock (SHMCACHE_LOCK_TIMEOUT_MS overrides). */
export const MUTATION_LOCK_WAIT_MS = 5000;

/** Deletes `key`; exit 0 whether or not it was there (the output says which). */
export function deleteCommand(path: string, key: string, opts: { json?: boolean }): number {
  defaultLockWait(MUTATION_LOCK_WAIT_MS);
  const cache = attach(path, { readOnly: false });
  try {
    const deleted = cache.delete(key);
    if (opts.json) process.stdout.write(json({ key, deleted }) + '\n');
    else process.stdout.write(deleted ? `deleted ${JSON.stringify(visible(key))}\n` : `no live entry ${JSON.stringify(visible(key))}: nothing deleted\n`);
    return 0;
  } finally {
    cache.close();
  }
}

/** Drops every entry of the segment. */
export function clearCommand(path: string, opts: { json?: boolean }): number {
  defaultLockWait(MUTATION_LOCK_WAIT_MS);
  const cache = attach(path, { readOnly: false });
  try {
    const before = cache.stats().entries;
    cache.clear();
    if (opts.json) process.stdout.write(json({ path: cache.path, cleared: before }) + '\n');
    else process.stdout.write(`cleared ${visible(cache.path)} (${before} ${before === 1 ? 'entry' : 'entries'})\n`);
    return 0;
  } finally {
    cache.close();
  }
}
