import { existsSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { Cache } from '../esm/index.mjs';
import { shardOfForTesting } from '../dist/testing.js';
import { checkValue, makeValue } from './fixtures/selfcheck.mjs';
import { openInChild, runFixture, tempDir } from './helpers';

const tmp = tempDir();
const KEYS = Array.from({ length: 300 }, (_, i) => `p:${i}`);

type CodecName = 'v8' | 'msgpack';

function prefill(path: string, codec: CodecName, stamp: number | false = false): Cache<any> {
  const c = new Cache<any>({ path, size: '1MB', stamp, codec });
  KEYS.forEach((k, i) => c.set(k, makeValue(k, 'parent', i, 60, i % 3)));
  c.set('ctr', 1000);
  return c;
}

/** Reads every prefilled key; returns the shards of the missing ones. Fails on a wrong value. */
function lostShards(c: Cache<any>): Set<number> {
  const shards = c.stats().shards;
  const lost = new Set<number>();
  for (const k of KEYS) {
    const v = c.get(k);
    if (v === undefined) lost.add(shardOfForTesting(k, shards));
    else expect(checkValue(k, v), `${k} holds a wrong value`).toBe(true);
  }
  return lost;
}

async function crashChild(path: string, point: string, mode: string, scenario: string, options = {}) {
  const r = await runFixture('crash-child.mjs', [path, scenario, JSON.stringify(options)], {
    env: { SHMCACHE_CRASH_AT: point, SHMCACHE_CRASH_MODE: mode },
  });
  expect(r.messages, `the child survived crash point ${point}`).toEqual([]);
  expect(r.signal).toBe(mode === 'abort' ? 'SIGABRT' : 'SIGKILL');
  return Date.now();
}

/** A fresh process opens, writes, reads and verifies; returns how long its operations took. */
async function freshProcessWorks(path: string, options: Record<string, unknown> = { stamp: false }) {
  const r = await openInChild(path, options, [
    ['set', 'fresh', 'yes'],
    ['get', 'fresh'],
    ['verify'],
  ]);
  expect(r).toMatchObject({ ok: true, results: [null, 'yes', { ok: true, problems: [] }] });
  return r.elapsedMs as number;
}

const writePoints: { point: string; scenario: string; maxShardsLost: number; shardOf?: string }[] = [
  { point: 'locked', scenario: 'set', maxShardsLost: 1, shardOf: 'p:7' },
  { point: 'copy', scenario: 'set', maxShardsLost: 1, shardOf: 'p:7' },
  { point: 'unlinked', scenario: 'set', maxShardsLost: 1, shardOf: 'p:7' },
  { point: 'incr', scenario: 'incr', maxShardsLost: 1, shardOf: 'ctr' },
  { point: 'alloc', scenario: 'fill', maxShardsLost: 1 },
  // Eviction holds the writer's shard and the victim page's shard.
  { point: 'evict', scenario: 'fill', maxShardsLost: 2 },
  // An eviction that keeps touched entries: they are linked in their new
  // place (a main page, or their own page compacted), the records not yet.
  { point: 'promote', scenario: 'churn', maxShardsLost: 2 },
  { point: 'read', scenario: 'get', maxShardsLost: 0 },
];

const cases = (['kill', 'abort'] as const).flatMap((mode) => (['v8', 'msgpack'] as const).map((codec) => ({ mode, codec })));

describe.each(cases)('a process dies at a crash point ($mode, codec $codec)', ({ mode, codec }) => {
  test.each(writePoints)('$point: others go on at once, losing at most the shards it held', async ({ point, scenario, maxShardsLost, shardOf }) => {
    const path = tmp.file(point);
    const c = prefill(path, codec);
    const died = await crashChild(path, point, mode, scenario, { codec });

    const lost = lostShards(c);
    expect(lost.size).toBeLessThanOrEqual(maxShardsLost);
    if (shardOf !== undefined && lost.size > 0) expect([...lost]).toEqual([shardOfForTesting(shardOf, c.stats().shards)]);
    const counter = c.get('ctr');
    expect(counter === undefined || (counter >= 1000 && counter <= 1001)).toBe(true);
    c.set('after', 'crash');
    expect(c.get('after')).toBe('crash');
    expect(c.incr('ctr2')).toBe(1);
    expect(c.verify()).toEqual({ ok: true, problems: [] });
    expect(Date.now() - died).toBeLessThan(1000);
    expect(await freshProcessWorks(path, { stamp: false, codec })).toBeLessThan(1000);
    c.close();
  });

  test('reset: a process killed during a stamp reset', async () => {
    const path = tmp.file('reset');
    const c = prefill(path, codec, 100);
    // A handle that kept every string it read (the reset dies before most
    // shards, and their pages, are dropped).
    const m = new Cache<any>({ path, stamp: false, memo: '1MB', codec });
    for (const k of KEYS) expect(checkValue(k, m.get(k))).toBe(true);
    const died = await crashChild(path, 'reset', mode, 'open', { stamp: 200, codec });
    // The generation was bumped first: no value from before the reset is read.
    for (const k of KEYS) expect(c.get(k)).toBeUndefined();
    for (const k of KEYS) expect(m.get(k)).toBeUndefined();
    m.close();
    c.set('after', 1);
    expect(c.get('after')).toBe(1);
    expect(c.verify()).toEqual({ ok: true, problems: [] });
    expect(Date.now() - died).toBeLessThan(1000);
    // A fresh process of the new group is not held up by the dead one's
    // creation lock, and completes the reset.
    expect(await freshProcessWorks(path, { stamp: 200, codec })).toBeLessThan(1000);
    expect(c.stats()).toMatchObject({ stamp: 200, resets: 1 });
    c.close();
  });

  test('create: a process killed while creating the file', async () => {
    const path = tmp.file('create');
    await crashChild(path, 'create', mode, 'open', { codec });
    expect(existsSync(path)).toBe(true);
    // The creation lock is a flock() on the file itself: the kernel dropped it with its holder.
    expect(existsSync(path + '.lock')).toBe(false);
    expect(await freshProcessWorks(path, { stamp: false, codec })).toBeLessThan(1000);
    const c = new Cache<any>({ path, stamp: false, codec });
    expect(c.get('fresh')).toBe('yes');
    expect(c.verify().ok).toBe(true);
    c.close();
  });
});
