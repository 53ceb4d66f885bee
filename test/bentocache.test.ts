import { afterAll, afterEach, assert, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { registerCacheDriverTestSuite } from 'bentocache/test_suite';
import { BentoCache, bentostore } from 'bentocache';
import { Cache } from '../esm/index.mjs';
import { ShmcacheDriver, shmcacheDriver } from '../esm/bentocache.mjs';
import { runFixture, tempDir } from './helpers';

// shmcache/bentocache: bentocache's own driver test suite (written for
// japa: a thin adapter below maps its group and test API onto vitest), then
// BentoCache with the driver as L1 in two processes.
const tmp = tempDir();
const shared = new Cache<unknown>({ path: tmp.file('bento'), size: '8MB', stamp: false });
afterAll(() => shared.close());

type Fn = () => unknown;
/** japa's Group, as far as registerCacheDriverTestSuite uses it. */
const group = {
  setup(fn: () => unknown) {
    let teardown: unknown;
    beforeAll(async () => {
      teardown = await fn();
    });
    afterAll(async () => {
      if (typeof teardown === 'function') await (teardown as Fn)();
    });
  },
  tap() {}, // disableTimeout(): vitest's testTimeout (60 s) covers the suite's sleeps
  each: {
    setup: (fn: Fn) => beforeEach(async () => void (await fn())),
    teardown: (fn: Fn) => afterEach(async () => void (await fn())),
  },
};
/** japa's test(title, fn) with its { assert, cleanup } context. */
function japaTest(title: string, fn: (ctx: { assert: typeof assert; cleanup(f: Fn): void }) => unknown): void {
  test(title, async () => {
    const cleanups: Fn[] = [];
    try {
      await fn({ assert, cleanup: (f) => cleanups.push(f) });
    } finally {
      for (const f of cleanups.reverse()) await f();
    }
  });
}

describe('bentocache/test_suite', () => {
  registerCacheDriverTestSuite({
    test: japaTest as never,
    group: group as never,
    // As bentocache's own driver tests: the root store has a prefix.
    createDriver: ((options?: { prefix?: string }) =>
      shmcacheDriver({ cache: shared }).factory({ prefix: 'japa', ...options })) as never,
    supportsMilliseconds: true,
  });
});

describe('shmcacheDriver', () => {
  test('namespaces share one segment; clear() and disconnect() are scoped', () => {
    const root = shmcacheDriver({ cache: shared }).factory({ prefix: 'app:' }) as ShmcacheDriver;
    expect(root.prefix).toBe('app');
    const users = root.namespace('users');
    users.set('1', 'u1', 60_000);
    expect(shared.get('app:users:1')).toBe('u1');
    expect(root.get('users:1')).toBe('u1');
    expect(users.getRemainingTtl('1')).toBeGreaterThan(59_000);
    root.set('forever', 'x');
    expect(root.getRemainingTtl('forever')).toBeUndefined();
    expect(root.getRemainingTtl('missing')).toBeUndefined();
    users.clear();
    expect(root.get('forever')).toBe('x');
    root.disconnect();
    expect(shared.isOpen).toBe(true); // not the driver's
    root.clear();
    expect(shared.keys('app:')).toEqual([]);
  });

  test('keys a segment cannot hold as they are, and bentocache\'s own options, are handled', () => {
    const path = tmp.file('own');
    const d = shmcacheDriver({ path, size: '1MB', stamp: false }).factory({ prefix: 'p', logger: {} } as never) as ShmcacheDriver;
    const long = 'x'.repeat(3000);
    d.set(long, 'L', 1000);
    d.set('lone\udfff', 'S');
    expect(d.get(long)).toBe('L');
    expect(d.get('lone\udfff')).toBe('S');
    expect(d.getRemainingTtl(long)).toBeGreaterThan(0);
    expect(d.pull(long)).toBe('L');
    expect(d.get(long)).toBeUndefined();
    d.clear();
    expect(d.get('lone\udfff')).toBeUndefined();
    d.disconnect();
    expect(d.cache.isOpen).toBe(false);
  });

  test('keys whose namespace part cannot start a key are cleared with their namespace, and with the prefix', () => {
    const d = shmcacheDriver({ cache: shared }).factory({ prefix: 'bentocache' }) as ShmcacheDriver;
    const other = shmcacheDriver({ cache: shared }).factory({ prefix: 'elsewhere' }) as ShmcacheDriver;
    other.set('x\uD800:y', 'O');
    const ns = d.namespace('users');
    ns.set('x\uD800:y', 'NS');
    ns.set('é'.repeat(300) + ':' + 'q'.repeat(2000), 'NS2');
    d.set('x\uD800:y', 'S');
    expect(ns.get('x\uD800:y')).toBe('NS');
    ns.clear();
    expect(ns.get('x\uD800:y')).toBeUndefined();
    expect(ns.get('é'.repeat(300) + ':' + 'q'.repeat(2000))).toBeUndefined();
    expect(d.get('x\uD800:y')).toBe('S');
    d.clear();
    expect(d.get('x\uD800:y')).toBeUndefined();
    expect(other.get('x\uD800:y')).toBe('O');
    // Namespaces and prefixes that cannot start a key.
    for (const bad of ['a\u0000#b', 'lone\uD800', 'n'.repeat(1100), '\u0000shmcache']) {
      const sub = d.namespace(bad);
      const top = shmcacheDriver({ cache: shared }).factory({ prefix: bad }) as ShmcacheDriver;
      for (const drv of [sub, top]) {
        drv.set('k', 'v');
        drv.set('x'.repeat(2000), 'w');
        expect(drv.get('k')).toBe('v');
        expect(drv.getRemainingTtl('k')).toBeUndefined();
      }
      expect(top.deleteMany(['k', 'k'])).toBe(true);
      expect(top.get('k')).toBeUndefined();
      top.clear();
      expect(top.get('x'.repeat(2000))).toBeUndefined();
      expect(sub.get('k')).toBe('v');
      d.clear(); // its namespaces too
      expect(sub.get('k')).toBeUndefined();
      expect(sub.get('x'.repeat(2000))).toBeUndefined();
      expect(shared.keys().filter((k) => !k.startsWith('elsewhere:'))).toEqual([]);
    }
    other.clear();
  });

  test('BentoCache with the driver as L1: one process\'s getOrSet is the next process\'s L1 hit', async () => {
    const path = tmp.file('l1');
    const run = async (ops: unknown[][]) => {
      const r = await runFixture('map-adapters.mjs', [JSON.stringify({ path, kind: 'bentocache', ops })]);
      if (r.code !== 0 || r.messages.length !== 1) throw new Error(`map-adapters.mjs failed: ${r.stderr}`);
      return r.messages[0];
    };
    expect(await run([['wrap', 'page', 'rendered by the first']])).toEqual({ results: ['rendered by the first'], produced: 1 });
    expect(await run([['wrap', 'page', 'rendered by the second'], ['get', 'page']])).toEqual({
      results: ['rendered by the second'.replace('second', 'first'), 'rendered by the first'],
      produced: 0,
    });
    const bento = new BentoCache({ default: 'app', stores: { app: bentostore().useL1Layer(shmcacheDriver({ path, stamp: false })) } });
    expect(await bento.get({ key: 'page' })).toBe('rendered by the first');
    await bento.delete({ key: 'page' });
    expect((await run([['get', 'page']])).results).toEqual([null]);
    await bento.disconnectAll();
  });
});
