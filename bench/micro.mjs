// In one process: the cost of single shmcache operations, in ns, on the same
// store the benchmark loads (100,000 keys each of 100-byte strings, 1,000-byte
// Buffers and small objects), next to lru-cache holding the same entries.
// For profiling and for measuring one change at a time; `npm run bench` is
// the comparison between systems.
//
// "(memo)" rows read through a second handle on the same segment with the
// option `memo` on.
//
//   node bench/micro.mjs [--dir /dev/shm] [--rounds 5] [--only get100,set100]
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { Cache } from '../esm/index.mjs';
import { xorshift } from './xorshift.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const dir = opt('dir', '/dev/shm');
const rounds = Number(opt('rounds', '5'));
const only = opt('only', '');

const N = 100_000;
const path = join(dir, `shmcache-micro-${process.pid}.shm`);
const cache = new Cache({ path, size: '256MB', stamp: false });
const memo = new Cache({ path, stamp: false, memo: '32MB' });
const lru = new LRUCache({ max: 3 * N });
const s = [];
const b = [];
const o = [];
for (let i = 0; i < N; i++) {
  s.push(`s:${i}`);
  b.push(`b:${i}`);
  o.push(`o:${i}`);
}
const values = Array.from({ length: N }, (_, i) => `${i}:`.padEnd(100, 'v'));
const kilo = Buffer.alloc(1000, 7);
for (let i = 0; i < N; i++) {
  const obj = { id: i, name: `user ${i}`, tags: ['a', 'b', 'c'], active: true, score: i * 1.5 };
  cache.set(s[i], values[i]);
  cache.set(b[i], kilo);
  cache.set(o[i], obj);
  lru.set(s[i], values[i]);
  lru.set(b[i], kilo);
  lru.set(o[i], obj);
}

// Objects with each codec, and the breakdown of a read: a Buffer of the
// same size as the stored value is the lookup and the copy; "decode" rows
// are the codec alone on the stored bytes.
const mp = new Cache({ path, stamp: false, codec: 'msgpack' });
const L = 10_000;
const rec = (i) => ({ id: i, name: `user ${i}`, tags: ['a', 'b', 'c'], active: true, score: i * 1.5 });
const m = [];
const lm = [];
const lv = [];
for (let i = 0; i < N; i++) {
  m.push(`m:${i}`);
  mp.set(m[i], rec(i));
}
for (let i = 0; i < L; i++) {
  lm.push(`lm:${i}`);
  lv.push(`lv:${i}`);
  const list = Array.from({ length: 50 }, (_, j) => rec(i * 50 + j));
  mp.set(lm[i], list);
  cache.set(lv[i], list);
}
const raw = new Cache({ path, stamp: false, codec: { encode: () => new Uint8Array(0), decode: (b) => Buffer.from(b) } });
const bytesOf = (key) => raw.get(key);
const sized = (key, name) => {
  cache.set(name, bytesOf(key));
  return name;
};
const bObjV8 = sized(o[7], 'bytes:objv8');
const bObjMp = sized(m[7], 'bytes:objmp');
const bListV8 = sized(lv[7], 'bytes:listv8');
const bListMp = sized(lm[7], 'bytes:listmp');
const encObjV8 = bytesOf(o[7]);
const encObjMp = bytesOf(m[7]);
const encListV8 = bytesOf(lv[7]);
const encListMp = bytesOf(lm[7]);
// A msgpack codec reading the segment's structures as a handle's does.
const { MsgpackCodec } = await import('../dist/msgpack.js');
const mpCodec = new MsgpackCodec(() => ({
  peek: (k) => mp.peek(k),
  has: (k) => mp.has(k),
  add: (k, v) => mp.add(k, v),
  set: (k, v) => mp.set(k, v),
  cas: (k, a, b) => mp.cas(k, a, b),
  delete: (k) => mp.delete(k),
  generation: () => 0,
  writable: () => true,
}));
const v8mod = await import('node:v8');
const rand = xorshift(2654435761);

let sink = 0;
const cases = {
  'get hot key': [() => cache.get('s:1'), 3e6],
  get100: [() => cache.get(s[rand(N)]), 3e6],
  'get hot key (memo)': [() => memo.get('s:1'), 3e6],
  'get100 (memo)': [() => memo.get(s[rand(N)]), 3e6],
  mixed: [
    () => {
      const i = rand(N);
      return rand(10) === 0 ? cache.set(s[i], values[i]) : cache.get(s[i]);
    },
    2e6,
  ],
  'mixed (memo)': [
    () => {
      const i = rand(N);
      return rand(10) === 0 ? memo.set(s[i], values[i]) : memo.get(s[i]);
    },
    2e6,
  ],
  'get miss': [() => cache.get(o[rand(N)] + '!'), 3e6],
  get1k: [() => cache.get(b[rand(N)]), 1e6],
  getobj: [() => cache.get(o[rand(N)]), 5e5],
  set100: [
    () => {
      const i = rand(N);
      return cache.set(s[i], values[i]);
    },
    1e6,
  ],
  'getobj msgpack': [() => mp.get(m[rand(N)]), 5e5],
  'getlist v8': [() => cache.get(lv[rand(L)]), 5e4],
  'getlist msgpack': [() => mp.get(lm[rand(L)]), 5e4],
  'copy obj v8 bytes': [() => cache.get(bObjV8), 1e6],
  'copy obj mp bytes': [() => cache.get(bObjMp), 1e6],
  'copy list v8 bytes': [() => cache.get(bListV8), 5e5],
  'copy list mp bytes': [() => cache.get(bListMp), 5e5],
  'decode obj v8': [() => v8mod.deserialize(encObjV8), 5e5],
  'decode list v8': [() => v8mod.deserialize(encListV8), 5e4],
  'decode obj msgpack': [() => mpCodec.decode(encObjMp), 5e5],
  'decode list msgpack': [() => mpCodec.decode(encListMp), 5e4],
  'lru-cache get100': [() => lru.get(s[rand(N)]), 3e6],
  'key choice only': [() => s[rand(N)], 3e6],
};

console.log(`ns per operation, median of ${rounds} rounds (segment in ${dir})`);
for (const [name, [fn, iters]] of Object.entries(cases)) {
  if (only && !only.split(',').some((w) => name.includes(w))) continue;
  const ns = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) {
      const v = fn();
      sink = (sink + (v === undefined ? 0 : 1)) | 0;
    }
    ns.push(Number(process.hrtime.bigint() - t0) / iters);
  }
  ns.sort((x, y) => x - y);
  console.log(`${name.padEnd(20)} ${ns[Math.floor(ns.length / 2)].toFixed(1).padStart(8)}`);
}
cache.close();
memo.close();
mp.close();
raw.close();
rmSync(path, { force: true });
if (sink === 0.5) console.log(sink);
