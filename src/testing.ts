import { binding } from './binding';
import { setClockOffset } from './clock';

/**
 * Test support, not for production: shifts the clock the addon uses for
 * TTLs in this process by `ms` milliseconds, so tests can expire entries
 * without sleeping. Other processes keep the real clock.
 */
export function setClockOffsetForTesting(ms: number): void {
  if (!Number.isSafeInteger(ms)) throw new TypeError('ms must be an integer');
  binding.setClockOffset(ms);
  setClockOffset(ms);
}

/** The lock shard `key` lives in, in a segment with `shards` shards (see `stats().shards`). */
export function shardOfForTesting(key: string, shards: number): number {
  return binding.shardOf(key, shards);
}

/** The cheapest call into the addon: the floor for benchmarks. */
export const nativeNoop: () => void = binding.noop;

/**
 * Reads this process has made through a shard's lock because the lock-free
 * read could not finish (a writer slow or dead, a checksum that failed).
 */
export function lockedReadsForTesting(): number {
  return binding.lockedReads();
}
