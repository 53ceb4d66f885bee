// The Redis tier's benchmark: N processes of one machine read a hot set of
// keys through shmcache/redis's TieredCache, bentocache (memory L1, Redis L2
// through its ioredis driver, its Redis bus), and cache-manager 7 (a Keyv
// over lru-cache as L1, a Keyv over @keyv/redis as L2, read with wrap(),
// which fills the L1). Reported per N: ops/s of L1 hits (all processes
// together), a plain awaited ioredis GET for the round-trip baseline, and
// the Redis commands the machine sent, counted by Redis itself
// (INFO commandstats, reset with CONFIG RESETSTAT before the reads).
//
//   node bench/tier.mjs [--procs 1,2,4] [--seconds 1] [--keys 1000]
//                       [--systems tier,bentocache,cache-manager,redis-get]
//
// It starts its own redis-server on a free loopback port, persistence off,
// and always stops it. Prints a Markdown table and a mermaid chart.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const HOST = '127.0.0.1';
const self = fileURLToPath(import.meta.url);
const VALUE_BYTES = 100;
const value = (i) => `value-${i}-`.padEnd(VALUE_BYTES, 'x');
const keyOf = (i) => `hot:${i}`;

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : process.argv[i + 1];
}

// ---------------------------------------------------------------- systems

async function open(system, port, l1Path) {
  if (system === 'tier') {
    const { default: Redis } = await import('ioredis');
    const { TieredCache } = await import('../esm/redis.mjs');
    const redis = new Redis({ host: HOST, port, enableOfflineQueue: false, autoResendUnfulfilledCommands: false });
    const tier = new TieredCache({ local: { path: l1Path, size: '64MB', stamp: false }, redis, prefix: 'bench:' });
    await tier.ready();
    return {
      set: (k, v) => tier.set(k, v),
      get: (k) => tier.get(k),
      close: async () => (await tier.close(), redis.disconnect()),
    };
  }
  if (system === 'bentocache') {
    const { BentoCache, bentostore } = await import('bentocache');
    const { memoryDriver } = await import('bentocache/drivers/memory');
    const { redisDriver, redisBusDriver } = await import('bentocache/drivers/redis');
    const connection = { host: HOST, port };
    const bento = new BentoCache({
      default: 'tier',
      stores: {
        tier: bentostore()
          .useL1Layer(memoryDriver({ maxItems: 100_000 }))
          .useL2Layer(redisDriver({ connection }))
          .useBus(redisBusDriver({ connection })),
      },
    });
    return {
      set: (k, v) => bento.set({ key: k, value: v }),
      get: (k) => bento.getOrSet({ key: k, factory: () => undefined }),
      close: () => bento.disconnectAll(),
    };
  }
  if (system === 'cache-manager') {
    const { createCache } = await import('cache-manager');
    const { Keyv } = await import('keyv');
    const { default: KeyvRedis } = await import('@keyv/redis');
    const { LRUCache } = await import('lru-cache');
    const l1 = new Keyv({ store: new LRUCache({ max: 100_000 }) });
    const l2 = new Keyv({ store: new KeyvRedis(`redis://${HOST}:${port}`) });
    const cache = createCache({ stores: [l1, l2] });
    return {
      set: (k, v) => cache.set(k, v),
      get: (k) => cache.wrap(k, () => undefined),
      close: () => cache.disconnect(),
    };
  }
  if (system === 'redis-get') {
    const { default: Redis } = await import('ioredis');
    const redis = new Redis({ host: HOST, port });
    return { set: (k, v) => redis.set(k, v), get: (k) => redis.get(k), close: async () => redis.disconnect() };
  }
  throw new Error(`unknown system ${system}`);
}

// ------------------------------------------------------------------ child

async function child() {
  const [, , , role, system, port, keys, seconds, l1Path] = process.argv;
  const nKeys = Number(keys);
  const c = await open(system, Number(port), l1Path);
  const say = (m) => process.stdout.write(JSON.stringify(m) + '\n');
  if (role === 'load') {
    for (let i = 0; i < nKeys; i++) await c.set(keyOf(i), value(i));
    await c.close();
    say({ done: true });
    process.exit(0);
  }
  say({ ready: true });
  await new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.once('line', resolve);
    rl.once('close', () => process.exit(1)); // the parent is gone
  });
  let bad = 0;
  let x = 0x9e3779b9 ^ process.pid;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % nKeys;
  };
  // Warm: random reads until this process has read every key (the L1 fills
  // from Redis as traffic would), then timed reads, all L1 hits.
  const seen = new Uint8Array(nKeys);
  let left = nKeys;
  let warm = 0;
  while (left > 0 && warm < nKeys * 50) {
    const i = next();
    if ((await c.get(keyOf(i))) !== value(i)) bad++;
    warm++;
    if (!seen[i]) {
      seen[i] = 1;
      left--;
    }
  }
  let ops = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(Number(seconds) * 1e9));
  let now = start;
  while (now < end) {
    for (let j = 0; j < 256; j++) {
      const i = next();
      if ((await c.get(keyOf(i))) !== value(i)) bad++;
    }
    ops += 256;
    now = process.hrtime.bigint();
  }
  const elapsed = Number(now - start) / 1e9;
  await c.close();
  say({ ops, elapsed, warm, bad });
  process.exit(0);
}

// ----------------------------------------------------------------- parent

function portIsFree(port) {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, HOST, () => s.close(() => resolve(true)));
  });
}

function cli(port, ...args) {
  return spawnSync('redis-cli', ['-h', HOST, '-p', String(port), ...args], { encoding: 'utf8' }).stdout.trim();
}

function run(args, { onLine } = {}) {
  const c = spawn(process.execPath, [self, '--child', ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = [];
  createInterface({ input: c.stdout }).on('line', (l) => {
    const m = JSON.parse(l);
    lines.push(m);
    onLine?.(m);
  });
  const exited = new Promise((resolve) => c.once('exit', resolve));
  // A child that dies before its answer (the addon being rebuilt, say) fails the run, never hangs it.
  const failed = exited.then((code) => {
    if (code !== 0) throw new Error(`a bench child (${args.slice(0, 2).join(' ')}) exited with ${code}`);
  });
  failed.catch(() => {});
  return { child: c, lines, exited, failed };
}

/** Commands Redis counted since the last CONFIG RESETSTAT (but the bench's own INFO and CONFIG), script calls included. */
function commands(port) {
  const info = cli(port, 'info', 'commandstats');
  let total = 0;
  const by = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (m[1] === 'info' || m[1].startsWith('config')) continue;
    total += Number(m[2]);
    by[m[1]] = Number(m[2]);
  }
  return { total, by };
}

async function trial(system, n, port, nKeys, seconds, dir, t) {
  cli(port, 'flushall');
  const l1Path = join(dir, `l1-${t}.shm`);
  const loader = run(['load', system, String(port), String(nKeys), String(seconds), join(dir, `loader-${t}.shm`)]);
  await loader.failed;
  rmSync(join(dir, `loader-${t}.shm`), { force: true });
  const readers = [];
  let ready = 0;
  let signalReady;
  const allReady = new Promise((resolve) => (signalReady = resolve));
  for (let i = 0; i < n; i++) {
    readers.push(
      run(['read', system, String(port), String(nKeys), String(seconds), l1Path], {
        onLine: (m) => m.ready && ++ready === n && signalReady(),
      }),
    );
  }
  await Promise.race([allReady, ...readers.map((r) => r.failed.then(() => new Promise(() => {})))]);
  cli(port, 'config', 'resetstat');
  for (const r of readers) r.child.stdin.write('go\n');
  await Promise.all(readers.map((r) => r.failed));
  const counted = commands(port);
  // Redis counts the commands a script runs as calls of their own: the
  // tier's fill is one EVALSHA that runs GET and PTTL (the tier never sends
  // a GET or PTTL itself), so what it sent is the total without those two.
  const clientCommands = system === 'tier' ? counted.total - (counted.by.get ?? 0) - (counted.by.pttl ?? 0) : counted.total;
  rmSync(l1Path, { force: true });
  const results = readers.map((r) => r.lines.find((m) => m.ops !== undefined));
  if (results.some((r) => r === undefined)) throw new Error(`${system}: a reader failed`);
  const opsPerSec = results.reduce((s, r) => s + r.ops / r.elapsed, 0);
  const reads = results.reduce((s, r) => s + r.ops + r.warm, 0);
  const bad = results.reduce((s, r) => s + r.bad, 0);
  return { system, n, opsPerSec, reads, sent: clientCommands, commands: counted.total, by: counted.by, bad };
}

async function main() {
  const procs = arg('procs', '1,2,4').split(',').map(Number);
  const seconds = Number(arg('seconds', '1'));
  const nKeys = Number(arg('keys', '1000'));
  const systems = arg('systems', 'tier,bentocache,cache-manager,redis-get').split(',');
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    console.log('skipped: redis-server not installed');
    return;
  }
  let port;
  for (let i = 0; i < 100 && port === undefined; i++) {
    const p = 20000 + Math.floor(Math.random() * 20000);
    if (await portIsFree(p)) port = p;
  }
  const dir = mkdtempSync(join('/dev/shm', 'shmcache-bench-tier-'));
  const server = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const stop = () => server.kill('SIGKILL');
  process.once('exit', stop);
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(1));
  try {
    for (let i = 0; i < 200 && cli(port, 'ping') !== 'PONG'; i++) await new Promise((r) => setTimeout(r, 25));
    const rows = [];
    let t = 0;
    for (const system of systems) {
      for (const n of procs) {
        const r = await trial(system, n, port, nKeys, seconds, dir, t++);
        rows.push(r);
        process.stderr.write(`${system} x${n}: ${Math.round(r.opsPerSec)} ops/s, ${r.sent} commands sent, ${r.commands} counted ${JSON.stringify(r.by)}${r.bad ? `, ${r.bad} WRONG VALUES` : ''}\n`);
      }
    }
    const get = Object.fromEntries(rows.filter((r) => r.system === 'redis-get').map((r) => [r.n, r.opsPerSec]));
    const fmt = (x) => Math.round(x).toLocaleString('en-US');
    const version = cli(port, 'info', 'server').match(/redis_version:(\S+)/)?.[1];
    console.log(`\n${new Date().toISOString().slice(0, 10)}, ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, Node ${process.version}, redis-server ${version}, ${nKeys} keys of ${VALUE_BYTES}-byte strings, ${seconds} s per trial\n`);
    console.log('| system | processes | L1-hit reads/s, all processes | per process | x one awaited Redis GET | Redis commands sent | per 1,000 reads | commandstats calls (script calls included) | wrong values |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const r of rows) {
      // Per process against one process's awaited GET: how many L1 hits fit in one round trip.
      const x = get[1] ? (r.opsPerSec / r.n / get[1]).toFixed(1) : '';
      console.log(
        `| ${r.system} | ${r.n} | ${fmt(r.opsPerSec)} | ${fmt(r.opsPerSec / r.n)} | ${x} | ${fmt(r.sent)} | ${((r.sent / r.reads) * 1000).toFixed(2)} | ${fmt(r.commands)} | ${r.bad} |`,
      );
    }
    const cached = systems.filter((s) => s !== 'redis-get');
    console.log('\n```mermaid\nxychart-beta\n  title "Redis commands the machine sent during the run, by processes"');
    console.log(`  x-axis "processes" [${procs.join(', ')}]`);
    console.log(`  y-axis "Redis commands" 0 --> ${Math.ceil((Math.max(...rows.filter((r) => r.system !== 'redis-get').map((r) => r.sent)) * 1.1) / 100) * 100}`);
    for (const s of cached) console.log(`  line [${procs.map((n) => rows.find((r) => r.system === s && r.n === n)?.sent ?? 0).join(', ')}]`);
    console.log('```');
    console.log(`\nLines, in order: ${cached.join(', ')}.`);
  } finally {
    stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') await child();
else await main();
