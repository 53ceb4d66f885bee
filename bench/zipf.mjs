// Hit ratio on a zipf trace (s = 0.99, 1,000,000 keys) with a cache that holds
// about 10% of them: shmcache next to lru-cache holding the same number of
// key and value bytes. Each access is a get; a miss sets the value.
// argv: JSON { path, accesses }. Prints { shmcache, lruCache, capacityEntries }.
import { LRUCache } from 'lru-cache';
import { Cache } from '../esm/index.mjs';

const { path, accesses = 2_000_000, keys = 1_000_000, s = 0.99 } = JSON.parse(process.argv[2]);
const value = 'v'.repeat(100);
const keyOf = (i) => `z:${i}`;

// Zipf CDF and a seeded trace.
const cdf = new Float64Array(keys);
let sum = 0;
for (let i = 0; i < keys; i++) cdf[i] = sum += 1 / Math.pow(i + 1, s);
for (let i = 0; i < keys; i++) cdf[i] /= sum;
let seed = 12345;
const uniform = () => {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 4294967296;
};
// Ranks are spread over the key space so that hot keys are not neighbours.
const perm = new Uint32Array(keys);
for (let i = 0; i < keys; i++) perm[i] = i;
for (let i = keys - 1; i > 0; i--) {
  const j = Math.floor(uniform() * (i + 1));
  [perm[i], perm[j]] = [perm[j], perm[i]];
}
const trace = new Uint32Array(accesses);
for (let n = 0; n < accesses; n++) {
  const u = uniform();
  let lo = 0;
  let hi = keys - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  trace[n] = perm[lo];
}

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
