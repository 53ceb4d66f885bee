// Single-process figures: get and set of 100-byte strings over 100,000 keys,
// next to a plain Map and the binding floor (a no-op native call), each
// trial in a fresh child process, medians of several trials.
//   npm run bench -- [--trials 5] [--ops 1000000]
// The full comparison with lru-cache, lmdb, Redis and SQLite is bench work
// still to come (see the issues).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const trials = flag('trials', 5);
const ops = flag('ops', 1_000_000);
const trialScript = fileURLToPath(new URL('./trial.mjs', import.meta.url));
const dir = mkdtempSync(join(existsShm() ? '/dev/shm' : os.tmpdir(), 'shmcache-bench-'));

function existsShm() {
  try {
    execFileSync('test', ['-d', '/dev/shm']);
    return true;
  } catch {
    return false;
  }
}

const workloads = [
  ['shmcache', 'get100'],
  ['shmcache', 'set100'],
  ['map', 'get100'],
  ['map', 'set100'],
  ['noop', 'call'],
];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
try {
  for (const [system, workload] of workloads) {
    const results = [];
    for (let t = 0; t < trials; t++) {
      const r = spawnSync(process.execPath, [trialScript, system, workload, String(ops), join(dir, `t${t}.shm`)], {
        encoding: 'utf8',
      });
      if (r.status !== 0) throw new Error(`${system} ${workload}: ${r.stderr}`);
      results.push(JSON.parse(r.stdout).opsPerSec);
    }
    rows.push({ system, workload, median: median(results), min: Math.min(...results), max: Math.max(...results) });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const fmt = (n) => Math.round(n).toLocaleString('en-US');
console.log(`node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model}, ${new Date().toISOString().slice(0, 10)}`);
console.log(`${trials} trials of ${ops.toLocaleString('en-US')} ops, each in a fresh process; ops/s\n`);
console.log('| system | workload | median ops/s | min | max | ns/op |');
console.log('|---|---|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.system} | ${r.workload} | ${fmt(r.median)} | ${fmt(r.min)} | ${fmt(r.max)} | ${(1e9 / r.median).toFixed(0)} |`);
}
