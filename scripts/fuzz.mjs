// The long version of test/hostile.test.ts: random damage, field-aware and
// blind, to copies of a full segment (at rest) and to a segment two other
// processes are using (live), for as long as asked. Prints the trial counts
// and their outcomes; exits 1 if any trial crashed, hung or read a value
// that was not written for its key.
//
//   npm run fuzz -- --seconds 600 [--seed 1] [--dir /dev/shm]
import { spawn } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { applyMutation, fill, mutations, readBytes, scan } from '../test/fixtures/hostile-lib.mjs';
import { generator } from '../test/fixtures/selfcheck.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const seconds = Number(opt('seconds', '60'));
const seed = Number(opt('seed', String(Date.now() % 1e9)));
const base = opt('dir', existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
const dir = mkdtempSync(join(base, 'shmcache-fuzz-'));
const child = fileURLToPath(new URL('../test/fixtures/hostile-child.mjs', import.meta.url));
const CASE_MS = 5000;

const template = join(dir, 'template.shm');
fill(template);
const s = scan(readBytes(template));
const all = mutations(s);
const l = s.layout;
const rand = generator(seed);
// Blind damage: random bytes anywhere in a record area (header, shards,
// buckets, slots, pages, marks, heap).
const areas = [
  [0, 4096], [l.shardsOff, l.nshards * 128], [l.bucketsOff, l.nshards * l.buckets * 4], [l.slotsOff, 256 * 64],
  [l.pagesOff, l.npages * 32], [l.marksOff, l.npages * 8], [l.heapOff, l.heapBytes],
];
function randomMutation() {
  const r = rand(10);
  if (r < 6) return all[rand(all.length)];
  const [start, length] = areas[rand(areas.length)];
  const bytes = [1, 2, 4, 8][rand(4)];
  const at = start + (rand(Math.max(1, length - bytes)) & ~(bytes - 1));
  const value = bytes === 8 ? (BigInt(rand(2 ** 31)) << 32n) | BigInt(rand(2 ** 31)) : BigInt(rand(2 ** Math.min(31, 8 * bytes)));
  return { name: `random ${bytes} bytes @${at}=${value}`, at, bytes, value: String(value), kind: 'n' };
}

// crashed: ended by a signal; failed: exited non-zero without one (a JS
// error outside the cases, such as the addon missing during a rebuild).
const counts = { trials: 0, ok: 0, refusedAtOpen: 0, errors: {}, repaired: 0, crashed: 0, failed: 0, hung: 0, badValues: 0, liveTrials: 0 };
const failures = [];

function run(job, onLine) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [child, JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let current;
    let stderr = '';
    let timer;
    let hung = false;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        hung = true;
        p.kill('SIGKILL');
      }, CASE_MS);
    };
    arm();
    p.stderr.on('data', (d) => (stderr += d.toString()));
    createInterface({ input: p.stdout }).on('line', (line) => {
      const m = JSON.parse(line);
      if (m.start !== undefined) current = m.start;
      if (m.done !== undefined) current = undefined;
      onLine?.(m);
      arm();
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, hung, current, stderr });
    });
  });
}

function count(d) {
  counts.trials++;
  const codes = Object.keys(d.errors ?? {});
  for (const c of codes) counts.errors[c] = (counts.errors[c] ?? 0) + d.errors[c];
  if (d.ops === 0 && codes.length > 0) counts.refusedAtOpen++;
  else if (codes.length === 0) counts.ok++;
  if (d.repairs > 0) counts.repaired++;
  if ((d.bad ?? []).length > 0) {
    counts.badValues++;
    failures.push(`${d.done}: ${d.bad.slice(0, 3).join('; ')}`);
  }
}

async function restBatch(n) {
  const cases = Array.from({ length: n }, (_, i) => {
    const ms = Array.from({ length: 1 + rand(4) }, randomMutation);
    return { name: `trial ${counts.trials + i}: ${ms.map((m) => m.name).join(', ')}`, mutations: ms };
  });
  const r = await run({ mode: 'rest', template, dir, cases, seed: rand(1e9) }, (m) => m.done !== undefined && count(m));
  if (r.signal !== null || r.code !== 0) {
    counts.trials++;
    if (r.hung) counts.hung++;
    else if (r.signal !== null) counts.crashed++;
    else counts.failed++;
    failures.push(`${r.current ?? 'between cases'}: ${r.hung ? 'hung' : `code ${r.code} signal ${r.signal}`} ${r.stderr.slice(0, 500)}`);
  }
}

async function liveTrial() {
  const path = join(dir, `live-${counts.liveTrials}.shm`);
  copyFileSync(template, path);
  const fd = openSync(path, 'r+');
  let stop = false;
  const ready = [];
  const workers = [0, 1].map((i) => {
    let opened;
    ready.push(new Promise((r) => (opened = r)));
    const w = run({ mode: 'live', path, seed: rand(1e9), ms: 4000 }, (m) => {
      if (m.beat === 0) opened();
      if (m.done !== undefined) count({ ...m, done: `live trial ${counts.liveTrials} worker ${i}` });
    });
    w.then(opened);
    return w;
  });
  await Promise.all(ready); // both have it open before any damage
  const damage = (async () => {
    while (!stop) {
      applyMutation(fd, randomMutation());
      await new Promise((r) => setTimeout(r, 1 + rand(5)));
    }
  })();
  const results = await Promise.all(workers);
  stop = true;
  await damage;
  closeSync(fd);
  rmSync(path, { force: true });
  for (const r of results) {
    if (r.signal !== null || r.code !== 0) {
      counts.trials++;
      if (r.hung) counts.hung++;
      else if (r.signal !== null) counts.crashed++;
      else counts.failed++;
      failures.push(`live trial ${counts.liveTrials}: ${r.hung ? 'hung' : `code ${r.code} signal ${r.signal}`} ${r.stderr.slice(0, 500)}`);
    }
  }
  counts.liveTrials++;
}

console.log(`fuzzing for ${seconds} s, seed ${seed}, ${all.length} field mutations known, in ${dir}`);
const end = Date.now() + seconds * 1000;
let last = 0;
for (let round = 0; Date.now() < end; round++) {
  if (round % 5 === 4) await liveTrial();
  else await restBatch(25);
  if (Date.now() - last > 10_000) {
    last = Date.now();
    console.log(JSON.stringify(counts));
  }
}
rmSync(dir, { recursive: true, force: true });
console.log('final', JSON.stringify(counts, null, 2));
for (const f of failures.slice(0, 20)) console.log('FAIL', f);
process.exit(counts.crashed + counts.failed + counts.hung + counts.badValues > 0 ? 1 : 0);
