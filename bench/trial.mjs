// One process of one trial. argv: JSON { system, workload, seconds, path,
// redisPort, pipelined, id, keys }. Prints { ready }, waits for "go" on stdin
// (so that the processes of a trial start together), runs the workload for
// `seconds`, prints { ops, seconds, latencies } (ns per op of timed batches).
import { createInterface } from 'node:readline';
import { xorshift } from './xorshift.mjs';

const cfg = JSON.parse(process.argv[2]);
const { system, workload, seconds, id = 0, keys = 100_000 } = cfg;
const driver = await import(`./drivers/${system}.mjs`);
const store = await driver.open(cfg);
const isAsync = driver.async === true;

// Values are made before timing starts, so that no trial pays for building them.
const values100 = Array.from({ length: keys }, (_, i) => `${i}:`.padEnd(100, 'v'));
const value100 = (i) => values100[i];
const value1k = Buffer.alloc(1000, 7);
const valueObj = (i) => ({ id: i, name: `user ${i}`, tags: ['a', 'b', 'c'], active: true, score: i * 1.5 });
// getlist: 50 of those records in one value, on a tenth as many keys.
const lists = Math.max(1, Math.floor(keys / 10));
const valueList = (i) => Array.from({ length: 50 }, (_, j) => valueObj(i * 50 + j));

const rand = xorshift((id + 1) * 2654435761);
const names = { s: [], b: [], o: [], l: [] };
for (let i = 0; i < keys; i++) {
  names.s.push(`s:${i}`);
  names.b.push(`b:${i}`);
  names.o.push(`o:${i}`);
  if (i < lists) names.l.push(`l:${i}`);
}

async function load() {
  for (let i = 0; i < keys; i++) {
    const ops = [store.set(names.s[i], value100(i)), store.set(names.b[i], value1k), store.set(names.o[i], valueObj(i))];
    if (i < lists) ops.push(store.set(names.l[i], valueList(i)));
    if (isAsync) await Promise.all(ops);
  }
}

// One operation of the workload; returns a value or a promise.
function op() {
  switch (workload) {
    case 'get100':
      return store.get(names.s[rand(keys)]);
    case 'set100': {
      const i = rand(keys);
      return store.set(names.s[i], value100(i));
    }
    case 'get1k':
      return store.get(names.b[rand(keys)]);
    case 'getobj':
      return store.get(names.o[rand(keys)]);
    case 'getlist':
      return store.get(names.l[rand(lists)]);
    case 'mixed': {
      const i = rand(keys);
      return rand(10) === 0 ? store.set(names.s[i], value100(i)) : store.get(names.s[i]);
    }
    case 'call':
      return store.get('');
    default:
      throw new Error(`unknown workload ${workload}`);
  }
}

if (workload === 'load' || !driver.shared) await load();
if (workload === 'load') {
  await store.close();
  process.stdout.write(JSON.stringify({ loaded: true }) + '\n', () => process.exit(0));
  await new Promise(() => {});
}

// Every result feeds a sink, so that no engine can skip the work.
let sink = 0;
const consume = (v) => {
  sink = (sink + (v === undefined || v === null ? 0 : typeof v === 'string' || Buffer.isBuffer(v) ? v.length : 1)) | 0;
};

const batch = isAsync ? (cfg.pipelined ? 256 : 32) : 256;
async function runBatch() {
  if (!isAsync) {
    for (let j = 0; j < batch; j++) consume(op());
  } else if (cfg.pipelined) {
    const inFlight = new Array(batch);
    for (let j = 0; j < batch; j++) inFlight[j] = op();
    for (const v of await Promise.all(inFlight)) consume(v);
  } else {
    for (let j = 0; j < batch; j++) consume(await op());
  }
}

// Warm up, then wait for the start signal.
const warmEnd = Date.now() + 200;
while (Date.now() < warmEnd) await runBatch();
console.log(JSON.stringify({ ready: true }));
await new Promise((resolve) => createInterface({ input: process.stdin }).once('line', resolve));

const latencies = [];
let ops = 0;
const t0 = process.hrtime.bigint();
const end = t0 + BigInt(Math.round(seconds * 1e9));
let now = t0;
while (now < end) {
  const b0 = now;
  await runBatch();
  now = process.hrtime.bigint();
  ops += batch;
  if (latencies.length < 20_000) latencies.push(Math.round(Number(now - b0) / batch));
}
const elapsed = Number(now - t0) / 1e9;
await store.close();
process.stdout.write(JSON.stringify({ ops, seconds: elapsed, latencies, sink }) + '\n', () => process.exit(0));
