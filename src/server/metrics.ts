/**
 * GET /metrics: a prom-client Registry of its own (not the global one),
 * filled at scrape time from each cache's latest sample (at most a second
 * old; a scrape never touches a segment).
 *
 * The segment's counters are the source of truth, so the `_total` series
 * are set, not counted: each collect() drops the previous values and sets
 * the sampled ones. A segment's counters can go down (a stamp reset, or the
 * file replaced by a new one); Prometheus treats any decrease of a counter
 * as a reset, so rate() and increase() stay right across it. A cache whose
 * last sample failed has no series (and `shmcache_up` 0) until it is back.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { CacheStats } from '../index';
import { labelSafe } from '../cli/format';
import type { CacheSet } from './sampler';

const COUNTERS: [keyof CacheStats, string][] = [
  ['hits', 'Reads that found a live entry, by every process.'],
  ['misses', 'Reads that found none, by every process.'],
  ['sets', 'Entries stored.'],
  ['deletes', 'Entries deleted.'],
  ['evictions', 'Entries dropped to make room.'],
  ['expired', 'Expired entries reclaimed.'],
  ['resets', 'Times a newer start-time stamp reset the segment.'],
];

const GAUGES: [string, string, (s: CacheStats) => number][] = [
  ['shmcache_used_bytes', 'Bytes held by live entries.', (s) => s.used],
  ['shmcache_capacity_bytes', 'Size of the segment in bytes.', (s) => s.size],
  ['shmcache_entries', 'Entries stored (some may have expired and not been reclaimed yet).', (s) => s.entries],
  ['shmcache_free_pages', 'Heap pages not in use.', (s) => s.freePages],
];

export function createMetrics(caches: CacheSet): Registry {
  const registry = new Registry();
  for (const [field, help] of COUNTERS) {
    new Counter({
      name: `shmcache_${field}_total`,
      help,
      labelNames: ['cache'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of caches.list()) if (w.last) this.inc({ cache: labelSafe(w.name) }, w.last[field] as number);
      },
    });
  }
  for (const [name, help, value] of GAUGES) {
    new Gauge({
      name,
      help,
      labelNames: ['cache'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of caches.list()) if (w.last) this.set({ cache: labelSafe(w.name) }, value(w.last));
      },
    });
  }
  new Gauge({
    name: 'shmcache_up',
    help: '1 when the last sample of the cache succeeded, 0 when it failed (see the status page for the error).',
    labelNames: ['cache'],
    registers: [registry],
    collect() {
      this.reset();
      for (const w of caches.list()) this.set({ cache: labelSafe(w.name) }, w.last ? 1 : 0);
    },
  });
  return registry;
}
