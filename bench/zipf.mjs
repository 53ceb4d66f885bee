// Hit ratio on a zipf trace (s = 0.99, 1,000,000 keys) with a cache that holds
// about 10% of them: shmcache next to lru-cache holding the same number of
// key and value bytes. Each access is a get; a miss sets the value.
// argv: JSON { path, accesses }. Prints { shmcache, lruCache, capacityEntries }.
import { LRUCache } from 'lru-cache';
import { Cache } from '../esm/index.mjs';
import { zipfTrace } from './zipf-trace.mjs';

const { path, accesses = 2_000_000, keys = 1_000_000, s = 0.99 } = JSON.parse(process.argv[2]);
const value = 'v'.repeat(100);
const keyOf = (i) => `z:${i}`;

// The seeded Zipf trace every hit-ratio script shares.
const { perm, ranks } = zipfTrace({ keys, accesses, s });
const trace = Uint32Array.from(ranks, (r) => perm[r]);

// Size the segment for about 10% of the keys, then learn how many it holds.
const cache = new Cache({ path, size: '16MB', stamp: false });
for (let i = 0; cache.stats().evictions === 0; i++) cache.set(`fill:${i}`, value);
const capacityEntries = cache.stats().entries;
cache.clear();
const keyBytes = keyOf(500_000).length;
const lru = new LRUCache({ maxSize: capacityEntries * (keyBytes + value.length), sizeCalculation: (v, k) => k.length + v.length });

function run(get, set) {
  let hits = 0;
  for (let n = 0; n < accesses; n++) {
    const k = keyOf(trace[n]);
    if (get(k) !== undefined) hits++;
    else set(k, value);
  }
  return hits / accesses;
}
const shm = run((k) => cache.get(k), (k, v) => cache.set(k, v));
const lruRatio = run((k) => lru.get(k), (k, v) => lru.set(k, v));
cache.close();
console.log(JSON.stringify({ shmcache: shm, lruCache: lruRatio, capacityEntries, accesses }));
