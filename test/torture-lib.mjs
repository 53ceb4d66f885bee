// The torture run shared by test/torture.test.ts and `npm run torture`:
// worker processes hammer one segment while random workers are SIGKILLed
// every few milliseconds and respawned.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { Cache } from '../esm/index.mjs';
import { checkValue } from './fixtures/selfcheck.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const workerScript = join(here, 'fixtures', 'torture-worker.mjs');

/**
 * @returns {Promise<{ seconds: number, kills: number, killsPerSecond: number,
 *   longestPauseMs: number, ops: number, problems: string[], verify: { ok: boolean, problems: string[] } }>}
 */
export async function torture({ path, seconds, workers = 4, keys = 300, size = '1MB', killEvery = [5, 25], stallMs = 2000 }) {
  const problems = [];
  const live = new Set();
  let kills = 0;
  let ops = 0;
  let longestPauseMs = 0;
  let running = true;
  let nextId = 0;

  function start() {
    const id = nextId++;
    const child = spawn(process.execPath, [workerScript, JSON.stringify({ path, id, keys, size })], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const w = { id, child, beats: 0, lastBeat: Date.now(), killed: false, ops: 0, stderr: '' };
    live.add(w);
    child.stderr.on('data', (d) => (w.stderr += d));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = JSON.parse(line);
      if (m.bad) problems.push(`worker ${id} read a wrong value: ${m.bad}`);
      else {
        w.beats++;
        w.lastBeat = Date.now();
        ops += m.ops - w.ops;
        w.ops = m.ops;
        if (m.maxGap > longestPauseMs) longestPauseMs = m.maxGap;
      }
    });
    child.on('exit', (code, signal) => {
      live.delete(w);
      if (!(w.killed && (signal === 'SIGKILL' || signal === 'SIGTERM'))) {
        problems.push(`worker ${id} exited by itself (code ${code}, signal ${signal}): ${w.stderr.slice(0, 500)}`);
      }
      if (running) start();
    });
  }

  for (let i = 0; i < workers; i++) start();
  const t0 = Date.now();
  const stallTimer = setInterval(() => {
    for (const w of live) {
      if (w.beats > 0 && !w.killed && Date.now() - w.lastBeat > stallMs) {
        problems.push(`worker ${w.id} made no progress for ${Date.now() - w.lastBeat} ms`);
        w.lastBeat = Date.now();
      }
    }
  }, 100);
  await new Promise((resolve) => {
    const killOne = () => {
      if (Date.now() - t0 >= seconds * 1000) return resolve();
      // Only workers that have opened the cache and run for a moment.
      const ready = [...live].filter((w) => w.beats > 1 && !w.killed);
      if (ready.length > 0) {
        const w = ready[Math.floor(Math.random() * ready.length)];
        w.killed = true;
        w.child.kill('SIGKILL');
        kills++;
      }
      setTimeout(killOne, killEvery[0] + Math.random() * (killEvery[1] - killEvery[0]));
    };
    killOne();
  });
  running = false;
  clearInterval(stallTimer);
  const elapsed = (Date.now() - t0) / 1000;
  await Promise.all(
    [...live].map(
      (w) =>
        new Promise((resolve) => {
          w.child.once('exit', resolve);
          w.killed = true;
          w.child.kill('SIGKILL');
        }),
    ),
  );

  const cache = new Cache({ path, size, stamp: false });
  const verify = cache.verify();
  for (let i = 0; i < keys; i++) {
    const v = cache.get(`k:${i}`);
    if (v !== undefined && !checkValue(`k:${i}`, v)) problems.push(`k:${i} holds a wrong value after the run`);
  }
  cache.close();
  return { seconds: elapsed, kills, killsPerSecond: kills / elapsed, longestPauseMs, ops, problems, verify };
}
