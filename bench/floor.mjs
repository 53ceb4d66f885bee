// The floor under any cache that copies values out of memory shared with
// other processes: a random 100-byte read through an in-process Map index
// (what lru-cache looks keys up with) into a 145 MB buffer holding the values
// densely, copied to a new string; then the same for 1,000-byte values (a
// 105 MB buffer, copied to a new Buffer, as get1k must). No lock, no checksum, nothing shared, so
// no real shared cache can beat it. "Chained" makes each lookup wait for the
// previous one's value, as the work of a native call between two gets
// mostly does. Printed next to lru-cache's get and
// shmcache's get on the benchmark's store, for working sets of growing size.
//
//   node bench/floor.mjs
//   node bench/floor.mjs --json [keys]   (the get1k floor only, for npm run bench:
//                                        { get1kFloorNs, get1kFloorChainedNs })
import { rmSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import { Cache } from '../esm/index.mjs';
import { xorshift } from './xorshift.mjs';

const N = 100_000;
if (process.argv[2] === '--json') {
  // get1k's own shape: a random one of `keys` 1,000-byte values, laid out
  // 1,048 bytes apart as shmcache's entries of them are, copied to a fresh
  // Buffer; median ns per get of 5 rounds of 2,000,000.
  const keys = Number(process.argv[3] ?? N);
  const block = Buffer.alloc(keys * 1048 + 4096, 7);
  const index = new Map();
  const names = [];
  for (let i = 0; i < keys; i++) {
    names.push(`b:${i}`);
    index.set(`b:${i}`, 4096 + i * 1048);
  }
  const rand = xorshift(2654435761);
  const copy = (off) => {
    const v = Buffer.allocUnsafe(1000);
    block.copy(v, 0, off, off + 1000);
    return v;
  };
  let sink = 0;
  const rounds = (fn) => {
    const res = [];
    for (let r = 0; r < 5; r++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < 2e6; i++) sink = (sink + fn().length) | 0;
      res.push(Number(process.hrtime.bigint() - t0) / 2e6);
    }
    return res.sort((x, y) => x - y)[2];
  };
  const get1kFloorNs = rounds(() => copy(index.get(names[rand(keys)])));
  let carry = 0;
  const get1kFloorChainedNs = rounds(() => {
    const v = copy(index.get(names[(rand(keys) + carry) % keys]));
    carry = v[999] - 7;
    return v;
  });
  console.log(JSON.stringify({ keys, get1kFloorNs, get1kFloorChainedNs, sink: sink & 1 }));
  process.exit(0);
}
const path = `/dev/shm/shmcache-floor-${process.pid}.shm`;
const cache = new Cache({ path, size: '256MB', stamp: false });
const lru = new LRUCache({ max: 3 * N });
const big = Buffer.alloc(145 * 1024 * 1024);
const index = new Map();
const s = [];
// 1,000-byte values 1,048 bytes apart, as shmcache's entries of them are.
const bigKilo = Buffer.alloc(N * 1048 + 4096, 7);
const kiloIndex = new Map();
const kiloKeys = [];
const kilo = Buffer.alloc(1000, 7);
for (let i = 0; i < N; i++) {
  const key = `s:${i}`;
  const value = `${i}:`.padEnd(100, 'v');
  s.push(key);
  cache.set(key, value);
  cache.set(`b:${i}`, kilo);
  cache.set(`o:${i}`, { id: i });
  lru.set(key, value);
  lru.set(`b:${i}`, kilo);
  lru.set(`o:${i}`, { id: i });
  const off = 4096 + i * 160;
  big.write(value, off, 'latin1');
  index.set(key, off);
  kiloKeys.push(`b:${i}`);
  kiloIndex.set(`b:${i}`, 4096 + i * 1048);
}

const rand = xorshift(2654435761);
let sink = 0;
function time(fn) {
  const res = [];
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 2e6; i++) sink = (sink + fn().length) | 0;
    res.push(Number(process.hrtime.bigint() - t0) / 2e6);
  }
  return res.sort((x, y) => x - y)[1].toFixed(0).padStart(5);
}
console.log('ns per random get of a 100-byte string (median of 3 rounds)');
console.log('"chained": each key depends on the last value read, so that misses');
console.log('of consecutive gets cannot overlap (as a native call mostly keeps them from)');
console.log('  keys  lru-cache  floor  floor chained  shmcache');
for (const k of [100, 1000, 10_000, 100_000]) {
  const step = Math.floor(N / k); // k keys spread over the whole store
  const key = () => s[rand(k) * step];
  const a = time(() => lru.get(key()));
  const b = time(() => {
    const off = index.get(key());
    return big.latin1Slice(off, off + 100);
  });
  let carry = 0;
  const chained = time(() => {
    const off = index.get(s[((rand(k) + carry) % k) * step]);
    const v = big.latin1Slice(off, off + 100);
    carry = v.charCodeAt(99) - 118; // always 0, but only known once read
    return v;
  });
  const c = time(() => cache.get(key()));
  console.log(`${String(k).padStart(6)}  ${a}      ${b}  ${chained}          ${c}`);
}
console.log('');
console.log('ns per random get of a 1,000-byte Buffer (median of 3 rounds); the floor');
console.log('copies into Buffer.allocUnsafe(), the cheapest fresh Buffer; lru-cache');
console.log('returns the Buffer it holds, no copy (so it is no floor for a shared cache)');
console.log('  keys  lru-cache  floor  floor chained  shmcache');
for (const k of [100, 1000, 10_000, 100_000]) {
  const step = Math.floor(N / k);
  const key = () => kiloKeys[rand(k) * step];
  const a = time(() => lru.get(key()));
  const copy = (off) => {
    const v = Buffer.allocUnsafe(1000);
    bigKilo.copy(v, 0, off, off + 1000);
    return v;
  };
  const f = time(() => copy(kiloIndex.get(key())));
  let carry = 0;
  const chained = time(() => {
    const v = copy(kiloIndex.get(kiloKeys[((rand(k) + carry) % k) * step]));
    carry = v[999] - 7; // always 0, but only known once read
    return v;
  });
  const c = time(() => cache.get(key()));
  console.log(`${String(k).padStart(6)}  ${a}      ${f}  ${chained}          ${c}`);
}
cache.close();
rmSync(path, { force: true });
