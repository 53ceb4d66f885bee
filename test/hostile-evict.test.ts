// Attacks on the eviction policy (native/evict.{h,cc}) and the eviction step
// budget (native/alloc.cc EvictSpan): each test is the reproducer of a
// finding, or pins down a behaviour that was attacked and held.
import { describe, expect, test } from 'vitest';
import { runFixture, tempDir } from './helpers';

const tmp = tempDir('shmcache-hostile-evict-');

async function flood(size: number, keys: number, fill: number): Promise<any> {
  const r = await runFixture('hostile-evict-flood.mjs', [tmp.file('flood'), String(size), String(keys), String(fill)]);
  expect(r.code, r.stderr).toBe(0);
  return r.messages[0];
}

describe('the eviction step budget on honest segments', () => {
  // Attacked and held: many tiny keys spread by the hash over a small
  // segment's buckets (chains of a few entries) never reach the budget.
  test('tiny keys churning through a 1 MiB segment: no shard dropped', async () => {
    const r = await flood(1 << 20, 0, 30_000);
    expect(r.repairs).toBe(0);
  });

  // Finding: an honest writer whose keys collide (1,500 keys in one shard and
  // bucket: KeyHash has a fixed seed, so anyone choosing keys can do it) had
  // its shard dropped as damaged when the page of its oldest entries was
  // evicted: each of the page's ~85 entries was unlinked by a walk from the
  // bucket's head past the ~1,400 newer ones, 120,000 steps against a budget
  // of 72,000 (64 per entry slot plus 65,536). Now a walk unlinks, in
  // passing, the span's entries it steps over, so one chain is walked once
  // per eviction.
  test('1,500 keys of one bucket, then evicted: no shard dropped', async () => {
    const r = await flood(1 << 20, 1500, 30_000);
    expect(r.flood).toBe(1500);
    expect(r.repairs).toBe(0);
    expect(r.maxMs).toBeLessThan(1000);
  });
});
