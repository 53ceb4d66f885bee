import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import { Cache } from '../esm/index.mjs';
import { fixtures, openInChild, runFixture, tempDir } from './helpers';

const tmp = tempDir();

interface Report {
  id: number;
  ops: number;
  reads: number;
  hits: number;
  bad: number;
  counted: number;
  badSamples: string[];
}

/** Odd workers read through the memo (option `memo`) when `memo` is set. */
async function runWorkers(n: number, ops: number, memo = false): Promise<void> {
  const path = tmp.file('shared');
  const counterPath = tmp.file('counters');
  const results = await Promise.all(
    Array.from({ length: n }, (_, id) =>
      runFixture('worker.mjs', [JSON.stringify({ path, counterPath, id, ops, keys: 400, barrier: n, memo: memo && id % 2 ? '256KB' : 0 })]),
    ),
  );
  const reports: Report[] = results.map((r) => {
    expect(r.code, r.stderr).toBe(0);
    return r.messages[0] as Report;
  });
  for (const r of reports) {
    expect(r.badSamples).toEqual([]);
    expect(r.bad).toBe(0);
    expect(r.hits).toBeGreaterThan(0);
  }
  const cache = new Cache({ path, stamp: false });
  const counters = new Cache({ path: counterPath, stamp: false });
  expect(cache.verify()).toEqual({ ok: true, problems: [] });
  expect(counters.verify()).toEqual({ ok: true, problems: [] });
  // Every increment of every process is there.
  let sum = 0;
  for (let i = 0; i < 4; i++) sum += (counters.get(`count${i}`) as number | undefined) ?? 0;
  expect(sum).toBe(reports.reduce((a, r) => a + r.counted, 0));
  // Reads of every process are counted.
  const s = cache.stats();
  expect(s.hits + s.misses).toBe(reports.reduce((a, r) => a + r.reads, 0));
  expect(s.evictions).toBeGreaterThan(0); // the 1 MB segment was under pressure
  cache.close();
  counters.close();
}

describe('several processes on one segment', () => {
  test('two processes write and read the same keys: no torn or foreign value', async () => {
    await runWorkers(2, 100_000);
  });

  test('four processes write and read the same keys: no torn or foreign value', async () => {
    await runWorkers(4, 60_000);
  });

  test('the same, two of the four reading through their memo: reads still counted', async () => {
    await runWorkers(4, 60_000, true);
  });

  test.each(['v8', 'msgpack'])('a value set in one process is read in another, and stats count both (%s)', async (codec) => {
    const path = tmp.file();
    const c = new Cache({ path, size: '1MB', stamp: false, codec: codec as 'v8' });
    c.set('from-parent', { n: 1 });
    const r = await openInChild(path, { stamp: false, codec }, [
      ['get', 'from-parent'],
      ['get', 'nope'],
      ['set', 'from-child', 'hi'],
    ]);
    expect(r).toMatchObject({ ok: true, results: [{ n: 1 }, null, null] });
    expect(c.get('from-child')).toBe('hi');
    expect(c.stats()).toMatchObject({ hits: 2, misses: 1 });
    c.close();
  });
});

describe('worker threads', () => {
  test('two threads of this process share the segment safely', async () => {
    const path = tmp.file('threads');
    const counterPath = tmp.file('thread-counters');
    const reports = await Promise.all(
      [0, 1].map(
        (id) =>
          new Promise<Report>((resolve, reject) => {
            const w = new Worker(join(fixtures, 'worker.mjs'), {
              workerData: { path, counterPath, id, ops: 20_000, keys: 300, barrier: 2 },
            });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      ),
    );
    for (const r of reports) expect(r.bad).toBe(0);
    const counters = new Cache({ path: counterPath, stamp: false });
    let sum = 0;
    for (let i = 0; i < 4; i++) sum += (counters.get(`count${i}`) as number | undefined) ?? 0;
    expect(sum).toBe(reports[0]!.counted + reports[1]!.counted);
    expect(counters.verify().ok).toBe(true);
    counters.close();
  });
});
