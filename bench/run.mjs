// npm run bench -- [--systems a,b] [--workloads x,y] [--procs 1,2,4]
//                  [--seconds 0.5] [--reps 3] [--keys 100000] [--no-zipf] [--no-fill]
//                  [--docs]   (also write docs/benchmark.svg and the table in docs/)
//
// One driver per system (bench/drivers/), one trial per workload and process
// count, each trial's processes fresh children started together; medians of
// --reps trials. Writes bench/results/<date>.json, .md and .svg.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ensureBenchDependency } from './deps.mjs';
import { markdown, svgChart, targets } from './report.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const list = (name, dflt) => opt(name, dflt).split(',').filter(Boolean);

const ALL_SYSTEMS = ['shmcache', 'shmcache-memo', 'shmcache-v8', 'map', 'lru-cache', 'lmdb', 'redis', 'redis-pipelined', 'sqlite', 'noop'];
const ALL_WORKLOADS = ['get100', 'set100', 'get1k', 'getobj', 'getlist', 'mixed'];
const systems = list('systems', ALL_SYSTEMS.join(','));
const workloads = list('workloads', ALL_WORKLOADS.join(','));
const procCounts = list('procs', '1,2').map(Number);
const multiWorkloads = list('multi-workloads', 'get100,mixed');
const seconds = Number(opt('seconds', '0.5'));
const reps = Number(opt('reps', '3'));
const keys = Number(opt('keys', '100000'));
if (systems.includes('sqlite')) ensureBenchDependency('better-sqlite3');
const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'shmcache-bench-'));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

let redis = null;
async function startRedis() {
  if (spawnSync('redis-server', ['--version']).error) return null;
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (l) => l.includes('Ready to accept') && resolve());
    child.on('exit', () => reject(new Error('redis-server exited')));
  });
  return { port, child };
}

function driverOf(system) {
  return system === 'redis-pipelined' ? 'redis' : system;
}

function storePath(system) {
  return join(dir, `${driverOf(system)}.store`);
}

/** Runs `n` processes of one trial together; resolves to their reports. */
async function trial(system, workload, n) {
  const children = Array.from({ length: n }, (_, id) => {
    const cfg = {
      system: driverOf(system),
      workload,
      seconds,
      id,
      keys,
      path: storePath(system),
      redisPort: redis?.port,
      pipelined: system === 'redis-pipelined',
    };
    const child = spawn(process.execPath, [join(here, 'trial.mjs'), JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = [];
    const waiters = [];
    createInterface({ input: child.stdout }).on('line', (l) => {
      lines.push(JSON.parse(l));
      waiters.splice(0).forEach((w) => w());
    });
    const next = async (pred) => {
      for (;;) {
        const m = lines.find(pred);
        if (m) return m;
        if (child.exitCode !== null) throw new Error(`${system} ${workload} trial exited with ${child.exitCode}`);
        await new Promise((r) => {
          waiters.push(r);
          child.once('exit', r);
        });
      }
    };
    return { child, next };
  });
  await Promise.all(children.map((c) => c.next((m) => m.ready || m.loaded)));
  if (workload === 'load') return [];
  for (const c of children) c.child.stdin.write('go\n');
  return Promise.all(children.map((c) => c.next((m) => 'ops' in m)));
}

const results = [];
const skipped = [];
let floor = null; // bench/floor.mjs --json, measured next to get1k
// The machine's memory latency as this run found it (a shared machine's
// caches vary by the hour, and a random read into shared memory follows
// them): ns per dependent random load within 16 MB and 150 MB.
const memlat = JSON.parse(spawnSync(process.execPath, [join(here, 'memlat.mjs'), '--json', '16', '150'], { encoding: 'utf8' }).stdout);
try {
  if (systems.some((s) => s.startsWith('redis'))) {
    redis = await startRedis();
    if (!redis) for (const s of systems.filter((x) => x.startsWith('redis'))) skipped.push({ system: s, reason: 'redis-server not installed' });
  }
  for (const system of systems) {
    if (system.startsWith('redis') && !redis) continue;
    const driver = await import(`./drivers/${driverOf(system)}.mjs`);
    if (driver.shared && system !== 'redis-pipelined') {
      rmSync(storePath(system), { recursive: true, force: true });
      if (system === 'redis') spawnSync('redis-cli', ['-p', String(redis.port), 'flushall']);
      await trial(system, 'load', 1);
    }
    // The memo changes string reads only.
    // ... and the codec only values other than strings and Buffers.
    const wl =
      system === 'noop'
        ? ['call']
        : system === 'shmcache-memo'
          ? workloads.filter((w) => w === 'get100' || w === 'mixed')
          : system === 'shmcache-msgpack' || system === 'shmcache-v8'
            ? workloads.filter((w) => w === 'getobj' || w === 'getlist')
            : workloads;
    for (const workload of wl) {
      const counts = driver.shared ? procCounts.filter((p) => p === 1 || multiWorkloads.includes(workload)) : [1];
      for (const procs of counts) {
        const opsPerSec = [];
        let latencies = [];
        for (let r = 0; r < reps; r++) {
          const reports = await trial(system, workload, procs);
          opsPerSec.push(reports.reduce((a, x) => a + x.ops / x.seconds, 0));
          latencies = latencies.concat(...reports.map((x) => x.latencies));
        }
        const row = { system, workload, procs, opsPerSec: median(opsPerSec), runs: opsPerSec, p50: pct(latencies, 50), p99: pct(latencies, 99) };
        results.push(row);
        console.log(`${system.padEnd(16)} ${workload.padEnd(7)} ${procs}p ${Math.round(row.opsPerSec).toLocaleString('en-US').padStart(12)} ops/s  p50 ${row.p50.toFixed(0)} ns  p99 ${row.p99.toFixed(0)} ns`);
        if (system === 'shmcache' && workload === 'get1k' && procs === 1 && !args.includes('--no-floor')) {
          // get1k's floor, right after it: bench/floor.mjs's random copy of a
          // 1,000-byte value out of a block laid out as shmcache's entries.
          const f = spawnSync(process.execPath, [join(here, 'floor.mjs'), '--json', String(keys)], { encoding: 'utf8' });
          floor = JSON.parse(f.stdout);
          console.log(`get1k copy floor: ${floor.get1kFloorNs.toFixed(0)} ns per get (chained ${floor.get1kFloorChainedNs.toFixed(0)} ns)`);
        }
      }
    }
  }
  let zipf = null;
  if (!args.includes('--no-zipf') && systems.includes('shmcache')) {
    const r = spawnSync(process.execPath, [join(here, 'zipf.mjs'), JSON.stringify({ path: join(dir, 'zipf.shm') })], { encoding: 'utf8' });
    zipf = JSON.parse(r.stdout);
    console.log(`zipf hit ratio: shmcache ${(zipf.shmcache * 100).toFixed(2)}%, lru-cache ${(zipf.lruCache * 100).toFixed(2)}% (${zipf.capacityEntries} entries)`);
  }
  let fill = null;
  if (!args.includes('--no-fill') && systems.includes('shmcache')) {
    const r = spawnSync(process.execPath, [join(here, 'fill.mjs'), JSON.stringify({ path: join(dir, 'fill.shm') })], { encoding: 'utf8' });
    fill = JSON.parse(r.stdout);
    console.log(`fill: ${(fill.ratio * 100).toFixed(1)}% of the segment is key and value bytes`);
  }

  const date = new Date().toISOString();
  const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', memory: os.totalmem(), node: process.version, platform: `${os.platform()} ${os.release()}` };
  machine.memoryLatencyNs = memlat;
  const report = { date, machine, settings: { seconds, reps, keys, procCounts }, results, skipped, zipf, fill, floor };
  report.targets = targets(report);
  const md = markdown(report);
  const svg = svgChart(report);
  const outDir = join(here, 'results');
  mkdirSync(outDir, { recursive: true });
  const stem = join(outDir, date.replace(/[:.]/g, '-'));
  writeFileSync(`${stem}.json`, JSON.stringify(report, null, 2));
  writeFileSync(`${stem}.md`, md);
  writeFileSync(`${stem}.svg`, svg);
  console.log('\n' + md);
  console.log(`written: ${stem}.{json,md,svg}`);
  if (args.includes('--docs')) {
    writeFileSync(join(here, '..', 'docs', 'benchmark.svg'), svg);
    writeFileSync(join(here, '..', 'docs', 'benchmark-results.md'), md);
    console.log('written: docs/benchmark.svg, docs/benchmark-results.md');
  }
} finally {
  redis?.child.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
