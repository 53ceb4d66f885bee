// Hit ratios of the real addon next to lru-cache holding the same key and
// value bytes, on bench/evict-sim.mjs's three traces (bench/zipf.mjs's Zipf
// trace, s = 0.99 over 1,000,000 keys; the same with a one-pass scan of new
// keys, twice the cache's entries, every 100,000 accesses; a shifting hot
// set), for caches of 1% to 30% of the keys. Each access is a get, a miss
// sets the 100-byte value; with scans, the ratio counts the Zipf accesses.
//
//   node bench/hitratio.mjs [--sizes 1,2,5,10,20,30] [--traces zipf,scan,shift]
//                           [--esm ../esm/index.mjs] [--no-lru] [--json out.json]
// --esm names the build to measure (another worktree's, for the policy before).
import { rmSync, writeFileSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { zipfTrace } from './zipf-trace.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const sizes = opt('sizes', '1,2,5,10,20,30').split(',').map(Number);
const traces = opt('traces', 'zipf,scan,shift').split(',');
const esm = opt('esm', null);
const { Cache } = await import(esm ? pathToFileURL(resolve(esm)).href : '../esm/index.mjs');
const KEYS = 1_000_000;
const ACCESSES = 2_000_000;
const value = 'v'.repeat(100);
const keyOf = (i) => `z:${i}`;

// bench/zipf.mjs's trace (bench/zipf-trace.mjs).
const { perm, ranks } = zipfTrace({ keys: KEYS, accesses: ACCESSES });

// Calls visit(key, counted) for each access of the trace.
function walk(name, capacityEntries, visit) {
  let next = KEYS;
  for (let n = 0; n < ACCESSES; n++) {
    if (name === 'scan' && n > 0 && n % 100_000 === 0) for (let j = 0; j < 2 * capacityEntries; j++) visit(next++, false);
    const key = name === 'shift' ? perm[(ranks[n] + Math.floor(n / 250_000) * 100_003) % KEYS] : perm[ranks[n]];
    visit(key, true);
  }
}

function ratio(name, capacityEntries, get, set) {
  let hits = 0;
  let n = 0;
  walk(name, capacityEntries, (i, counted) => {
    const k = keyOf(i);
    const hit = get(k) !== undefined;
    if (!hit) set(k, value);
    if (counted) {
      n++;
      if (hit) hits++;
    }
  });
  return hits / n;
}

// The segment size holding about pct% of the keys (entries of 100-byte
// values take 152 bytes, and about 93% of a segment is heap).
const sizeFor = (pct) => Math.max(1 << 20, Math.round((KEYS * pct * 152) / 100 / 0.93 / 4096) * 4096);
const path = `/dev/shm/shmcache-hitratio-${process.pid}.shm`;
const rows = [];
for (const pct of sizes) {
  const size = sizeFor(pct);
  for (const t of traces) {
    rmSync(path, { force: true });
    const cache = new Cache({ path, size, stamp: false });
    for (let i = 0; cache.stats().evictions === 0; i++) cache.set(`fill:${i}`, value);
    const capacityEntries = cache.stats().entries;
    cache.clear();
    const row = { pct, size, trace: t, capacityEntries };
    row.shmcache = ratio(t, capacityEntries, (k) => cache.get(k), (k, v) => cache.set(k, v));
    cache.close();
    if (!args.includes('--no-lru')) {
      const lru = new LRUCache({ maxSize: capacityEntries * (keyOf(500_000).length + value.length), sizeCalculation: (v, k) => k.length + v.length });
      row.lruCache = ratio(t, capacityEntries, (k) => lru.get(k), (k, v) => lru.set(k, v));
    }
    rows.push(row);
    console.error(
      `${String(pct).padStart(3)}% ${t.padEnd(6)} ${String(capacityEntries).padStart(7)} entries  shmcache ${(row.shmcache * 100).toFixed(2)}%` +
        (row.lruCache !== undefined ? `  lru-cache ${(row.lruCache * 100).toFixed(2)}%` : ''),
    );
  }
}
rmSync(path, { force: true });
const out = opt('json', null);
if (out) writeFileSync(out, JSON.stringify(rows, null, 2));
console.log(JSON.stringify(rows));
