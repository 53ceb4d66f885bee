// Two "machines" (two L1 segments), two worker processes each, one Redis:
// a write on one machine is seen on the other, and remember() runs its
// producer once across all four processes.
//   node examples/two-machines/main.mjs            (starts its own redis-server on loopback)
//   REDIS_PORT=6379 node examples/two-machines/main.mjs   (uses yours)
import { fork, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const here = new URL('.', import.meta.url).pathname;
const l1Dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'two-machines-'));
let port = Number(process.env.REDIS_PORT);
let server;
if (!port) {
  port = 20000 + Math.floor(Math.random() * 20000);
  server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  process.once('exit', () => server.kill('SIGKILL'));
  for (let i = 0; i < 200 && spawnSync('redis-cli', ['-p', String(port), 'ping']).stdout?.toString().trim() !== 'PONG'; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
}

function worker(machine) {
  const child = fork(join(here, 'worker.mjs'), { env: { ...process.env, MACHINE: machine, REDIS_PORT: String(port), L1_DIR: l1Dir } });
  const pending = new Map();
  let next = 0;
  const exited = new Promise((r) => child.once('exit', r));
  const ready = Promise.race([
    new Promise((resolve) => child.once('message', resolve)),
    exited.then((code) => Promise.reject(new Error(`a worker of machine ${machine} exited (${code}) before it was ready`))),
  ]);
  child.on('message', (m) => {
    if (m.producing) console.log(`  producer running in ${m.producing}`);
    if (m.id === undefined) return;
    pending.get(m.id)(m);
    pending.delete(m.id);
  });
  const call = (op, args = {}) =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, (m) => (m.error ? reject(new Error(m.error)) : resolve(m.value)));
      child.send({ id, op, ...args });
    });
  return { name: machine, ready, call, exited, kill: () => child.kill('SIGKILL') };
}

const workers = [worker('a'), worker('a'), worker('b'), worker('b')];
try {
  await Promise.all(workers.map((w) => w.ready));
  const [a1, a2, b1, b2] = workers;
  await a1.call('set', { key: 'greeting', value: 'hello from machine a' });
  console.log('b reads:', await b1.call('get', { key: 'greeting' })); // from Redis, now in b's L1
  console.log('b again:', await b2.call('get', { key: 'greeting' })); // b's other process: its L1 hit
  await b1.call('set', { key: 'greeting', value: 'hello from machine b' });
  // a's copy was dropped by b's bus message (within milliseconds)
  for (let i = 0; i < 100 && (await a2.call('get', { key: 'greeting' })) !== 'hello from machine b'; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  console.log('a reads:', await a2.call('get', { key: 'greeting' }));
  console.log('remember() from all four processes at once:');
  const users = await Promise.all(workers.map((w) => w.call('remember', { key: 'user:42' })));
  console.log('  all four got', JSON.stringify(users[0]), users.every((u) => JSON.stringify(u) === JSON.stringify(users[0])));
} finally {
  await Promise.all(
    workers.map((w) =>
      Promise.race([w.call('exit'), w.exited]).catch(() => w.kill()),
    ),
  );
  await Promise.all(workers.map((w) => w.exited));
  server?.kill('SIGKILL');
  rmSync(l1Dir, { recursive: true, force: true });
}
