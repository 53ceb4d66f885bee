// The Map-like API and the Keyv adapter, in one process, ns per key:
// getMany() of 100 keys against 100 get() calls (issue 14's goal: at least
// 1.5x the keys per second), and Keyv over KeyvShmcache against Keyv over its
// default Map store.
//
//   node bench/map.mjs [--dir /dev/shm] [--rounds 5]
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Keyv from 'keyv';
import { Cache } from '../esm/index.mjs';
import { KeyvShmcache } from '../esm/keyv.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const dir = opt('dir', '/dev/shm');
const rounds = Number(opt('rounds', '5'));
const path = join(dir, `shmcache-map-${process.pid}.shm`);
const cache = new Cache({ path, size: '64MB', stamp: false });
const N = 10_000;
const keys = Array.from({ length: N }, (_, i) => `s:${i}`);
for (const k of keys) cache.set(k, `${k}:`.padEnd(100, 'v'));
const batches = Array.from({ length: N / 100 }, (_, b) => keys.slice(b * 100, b * 100 + 100));

const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
async function measure(name, perRound, fn) {
  const times = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - t0) / perRound);
  }
  const ns = median(times);
  console.log(`${name.padEnd(34)} ${ns.toFixed(1).padStart(9)}`);
  return ns;
}

console.log(`ns per key, median of ${rounds} rounds (segment in ${dir})`);
let sink = 0;
const one = await measure('100 x get()', N, () => {
  for (const b of batches) for (const k of b) sink += cache.get(k).length;
});
const many = await measure('getMany(100 keys)', N, () => {
  for (const b of batches) for (const v of cache.getMany(b)) sink += v.length;
});
console.log(`getMany: ${(one / many).toFixed(2)}x the keys per second of get()`);

const viaShm = new Keyv({ store: new KeyvShmcache(cache) });
const viaMap = new Keyv();
for (const k of keys.slice(0, 1000)) {
  await viaShm.set(k, 'v'.repeat(100));
  await viaMap.set(k, 'v'.repeat(100));
}
const some = keys.slice(0, 1000);
await measure('Keyv get, KeyvShmcache', 1000, async () => {
  for (const k of some) sink += (await viaShm.get(k)).length;
});
await measure('Keyv get, Map store', 1000, async () => {
  for (const k of some) sink += (await viaMap.get(k)).length;
});
await measure('Keyv set, KeyvShmcache', 1000, async () => {
  for (const k of some) await viaShm.set(k, 'w'.repeat(100));
});
await measure('Keyv set, Map store', 1000, async () => {
  for (const k of some) await viaMap.set(k, 'w'.repeat(100));
});
await measure('Keyv getMany(100), KeyvShmcache', 1000, async () => {
  for (let i = 0; i < 1000; i += 100) sink += (await viaShm.get(some.slice(i, i + 100))).length;
});
if (sink === 42) console.log('');
cache.close();
rmSync(path, { force: true });
