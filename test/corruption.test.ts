import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { expect, test } from 'vitest';
import { Cache } from '../esm/index.mjs';
import { lockedReadsForTesting } from '../dist/testing.js';
import { checkValue, makeValue } from './fixtures/selfcheck.mjs';
import { fixtures, runFixture, tempDir } from './helpers';

const tmp = tempDir();

test('random damage to a live segment: no crash, no hang, no wrong value; verify() repairs', async () => {
  const path = tmp.file('fuzz');
  const c = new Cache<any>({ path, size: '1MB', stamp: false });
  for (let i = 0; i < 300; i++) c.set(`k:${i}`, makeValue(`k:${i}`, 'parent', i, 100, i % 3));

  const problems: string[] = [];
  const workers = [0, 1, 2].map((id) => {
    const child = spawn(process.execPath, [join(fixtures, 'torture-worker.mjs'), JSON.stringify({ path, id, keys: 300 })], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const w = { child, lastBeat: Date.now(), beats: 0, stopping: false, stderr: '' };
    child.stderr.on('data', (d: Buffer) => (w.stderr += d.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = JSON.parse(line);
      if (m.bad) problems.push(`worker ${id} read a wrong value: ${m.bad}`);
      w.beats++;
      w.lastBeat = Date.now();
    });
    child.on('exit', (code, signal) => {
      if (!w.stopping) problems.push(`worker ${id} died: code ${code} signal ${signal} ${w.stderr.slice(0, 300)}`);
    });
    return w;
  });
  const stall = setInterval(() => {
    for (const w of workers) {
      if (w.beats > 0 && !w.stopping && Date.now() - w.lastBeat > 2000) {
        problems.push(`a worker made no progress for ${Date.now() - w.lastBeat} ms`);
        w.lastBeat = Date.now();
      }
    }
  }, 100);

  const stopWorkers = () =>
    Promise.all(
      workers.map(
        (w) =>
          new Promise((resolve) => {
            w.stopping = true;
            if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve(null);
            w.child.once('exit', resolve);
            w.child.kill('SIGKILL');
          }),
      ),
    );
  try {
    const fuzz = await runFixture('fuzzer.mjs', [path, '3000', '42']);
    expect(fuzz.code, fuzz.stderr).toBe(0);
    expect(fuzz.messages[0].writes).toBeGreaterThan(1000);
    // Let the workers run on the damaged segment a little longer.
    const beatsAfterFuzz = workers.map((w) => w.beats);
    await new Promise((r) => setTimeout(r, 500));
    expect(problems).toEqual([]);
    workers.forEach((w, i) => expect(w.beats, 'a worker stopped after the damage').toBeGreaterThan(beatsAfterFuzz[i]!));
  } finally {
    clearInterval(stall);
    await stopWorkers();
  }
  expect(problems).toEqual([]);

  // This process read through the damage too, and never got a wrong value.
  for (let i = 0; i < 300; i++) {
    const v = c.get(`k:${i}`);
    if (v !== undefined) expect(checkValue(`k:${i}`, v)).toBe(true);
  }
  const first = c.verify();
  if (!first.ok) expect(first.problems.length).toBeGreaterThan(0);
  // What the first pass found was dropped: the second finds nothing.
  expect(c.verify()).toEqual({ ok: true, problems: [] });
  c.set('after', 'works');
  expect(c.get('after')).toBe('works');
  c.close();
});

test('a read finds one changed byte anywhere in a value: in the 32-byte steps, the 8-byte steps, the tail', () => {
  // The reader sums the value as it copies it (32 bytes a step, then 8, then
  // the last 1..7): each part of that loop must see the change.
  const path = tmp.file('flip');
  const c = new Cache<any>({ path, size: '1MB', stamp: false });
  c.open();
  const fd = openSync(path, 'r+');
  try {
    for (const len of [1, 5, 8, 13, 31, 32, 33, 47, 100, 1000, 1031]) {
      const spots = new Set([0, len - 1, len >> 1, 32 * Math.floor(len / 32), 8 * Math.floor(len / 8)]);
      for (const at of [...spots].filter((i) => i < len)) {
        const key = `flip-${len}-${at}-${randomBytes(4).toString('hex')}`;
        const value = randomBytes(len);
        c.set(key, value);
        const file = readFileSync(path);
        const k = file.indexOf(key);
        expect(k, 'the key is in the file once').toBeGreaterThan(0);
        expect(file.lastIndexOf(key)).toBe(k);
        // The value follows its key in the entry.
        const start = k + Buffer.byteLength(key);
        expect(file.subarray(start, start + len).equals(value)).toBe(true);
        // Intact: read without the lock (the sum matched).
        const locked = lockedReadsForTesting();
        expect(c.get(key)).toEqual(value);
        expect(lockedReadsForTesting(), `length ${len}: intact value read through the lock`).toBe(locked);
        writeSync(fd, Buffer.of(file[start + at]! ^ 0x10), 0, 1, start + at);
        // Changed: the lock-free read's sum fails, the locked one confirms.
        expect(c.get(key), `length ${len}, byte ${at} changed`).toBeUndefined();
        expect(lockedReadsForTesting()).toBe(locked + 1);
      }
    }
    expect(c.verify()).toEqual({ ok: true, problems: [] });
  } finally {
    closeSync(fd);
    c.close();
  }
});
