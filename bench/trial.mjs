// One trial: argv system, workload, ops, path. Prints { opsPerSec }.
import { Cache } from '../esm/index.mjs';
import { nativeNoop } from '../dist/testing.js';

const [system, workload, opsArg, path] = process.argv.slice(2);
const ops = Number(opsArg);
const N = 100_000;
const keys = Array.from({ length: N }, (_, i) => `key:${i}`);
const value = 'v'.repeat(100);
// Uniform random key order, fixed across systems.
const order = new Uint32Array(ops);
let s = 12345;
for (let i = 0; i < ops; i++) {
  s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
  order[i] = s % N;
}

let store;
let get;
let set;
if (system === 'shmcache') {
  store = new Cache({ path, size: '64MB', stamp: false });
  get = (k) => store.get(k);
  set = (k, v) => store.set(k, v);
} else if (system === 'map') {
  store = new Map();
  get = (k) => store.get(k);
  set = (k, v) => store.set(k, v);
}
if (set) for (const k of keys) set(k, value);

let sink = 0;
function run(n) {
  if (workload === 'get100') {
    for (let i = 0; i < n; i++) sink += get(keys[order[i]]).length;
  } else if (workload === 'set100') {
    for (let i = 0; i < n; i++) set(keys[order[i]], value);
  } else {
    for (let i = 0; i < n; i++) nativeNoop();
  }
}
run(Math.min(ops, 100_000)); // warm up
const t0 = process.hrtime.bigint();
run(ops);
const ns = Number(process.hrtime.bigint() - t0);
if (system === 'shmcache') store.close();
process.stdout.write(JSON.stringify({ opsPerSec: ops / (ns / 1e9), sink: sink > 0 }) + '\n');
