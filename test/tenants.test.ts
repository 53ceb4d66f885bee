import { chmodSync, chownSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { Cache, jail, ShmCacheError, tenantCache } from '../esm/index.mjs';
import { isRoot, runFixture, tempDir } from './helpers';

const tmp = tempDir();

async function tenantWorker(config: Record<string, unknown>): Promise<any> {
  const r = await runFixture('tenant-worker.mjs', [JSON.stringify(config)]);
  expect(r.messages, r.stderr).toHaveLength(1);
  return r.messages[0];
}

describe('tenantCache()', () => {
  test('makes <dir>/<tenant>.shm and touches nothing', () => {
    const c = tenantCache('site-a.example_1', { dir: '/var/cache/shm', size: '2MB', ttl: 5 });
    expect(c).toBeInstanceOf(Cache);
    expect(c.path).toBe('/var/cache/shm/site-a.example_1.shm');
    expect(c.capacity).toBe(2 * 1024 * 1024);
    expect(c.isOpen).toBe(false);
  });

  test('refuses names that could reach another file', () => {
    for (const bad of ['', '.hidden', '../b', 'a/b', 'a\0b', '-x', 'x'.repeat(65), 'é', 42, null]) {
      expect(() => tenantCache(bad as never, { dir: tmp.dir }), String(bad)).toThrow(
        expect.objectContaining({ code: 'ERR_SHMCACHE_INVALID_OPTION' }),
      );
    }
    expect(() => tenantCache('a', { dir: '' })).toThrow(ShmCacheError);
    expect(() => tenantCache('a', { dir: tmp.dir, path: '/x' } as never)).toThrow(/no path/);
    expect(() => tenantCache('a', { dir: tmp.dir, size: 'huge' })).toThrow(ShmCacheError);
    expect(tenantCache('x'.repeat(64), { dir: tmp.dir }).path).toBe(join(tmp.dir, `${'x'.repeat(64)}.shm`));
  });
});

describe('jail() arguments', () => {
  test('bad options are INVALID_OPTION and change nothing', () => {
    for (const bad of [undefined, null, {}, { uid: 5 }, { uid: -1, gid: 1 }, { gid: 1.5 }, { root: '' }, { root: 7 }]) {
      expect(() => jail(bad as never), JSON.stringify(bad)).toThrow(
        expect.objectContaining({ code: 'ERR_SHMCACHE_INVALID_OPTION' }),
      );
    }
    expect(process.cwd()).not.toBe('/');
  });
});

describe.runIf(isRoot)('jails (as root)', () => {
  // Two sites whose caches have the same path inside their jails.
  function makeJail(name: string, uid: number): string {
    chmodSync(tmp.dir, 0o755);
    const root = join(tmp.dir, `jail-${name}`);
    mkdirSync(join(root, 'var', 'cache'), { recursive: true });
    chownSync(join(root, 'var', 'cache'), uid, uid);
    chmodSync(join(root, 'var', 'cache'), 0o755);
    return root;
  }

  test('two tenants, the same inner path, two uids, concurrent workers: each sees only its own', async () => {
    const tenants = [
      { tenant: 'app', root: makeJail('a', 2001), uid: 2001, gid: 2001, name: 'site-a' },
      { tenant: 'app', root: makeJail('b', 2002), uid: 2002, gid: 2002, name: 'site-b' },
    ];
    const results = await Promise.all(
      tenants.flatMap((t) =>
        [0, 1].map(() =>
          tenantWorker({ tenant: t.tenant, dir: '/var/cache', root: t.root, uid: t.uid, gid: t.gid, keys: 100 }).then((r) => ({ ...r, t })),
        ),
      ),
    );
    for (const r of results) {
      expect(r.ok, r.message).toBe(true);
      expect(r.foreign).toBe(0);
      expect(r.own).toBeGreaterThan(0);
      expect(r.uid).toBe(r.t.uid);
      expect(r.cwd).toBe('/');
      expect(r.stats.path).toBe('/var/cache/app.shm'); // the same path in both jails
    }
    for (const t of tenants) {
      const st = statSync(join(t.root, 'var', 'cache', 'app.shm'));
      expect(st.mode & 0o7777).toBe(0o600);
      expect(st.uid).toBe(t.uid);
      expect(st.gid).toBe(t.gid);
    }
    // From the host, each file holds only its tenant's values.
    for (const t of tenants) {
      const hostPath = join(t.root, 'var', 'cache', 'app.shm');
      chownSync(hostPath, 0, 0); // so this (root) process may open it
      const c = new Cache({ path: hostPath, stamp: false });
      expect(c.get('k:1')).toBe('app:1');
      c.close();
      chownSync(hostPath, t.uid, t.gid);
    }
  });

  test("a tenant's worker opening another tenant's file by its host path gets PERMISSION", async () => {
    const rootB = makeJail('b2', 2004);
    const b = await tenantWorker({ tenant: 'app', dir: '/var/cache', root: rootB, uid: 2004, gid: 2004 });
    expect(b.ok).toBe(true);
    const hostPathB = join(rootB, 'var', 'cache', 'app.shm');
    // Tenant A's uid, not chrooted, so the host path is visible to it.
    const a = await tenantWorker({ tenant: 'app', path: hostPathB, uid: 2003, gid: 2003 });
    expect(a).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_PERMISSION' });
    expect(a.message).toMatch(/owned by uid 2004|Permission denied/);
  });

  test('a worker that jails after opening gets JAIL, and stays unjailed', async () => {
    const root = makeJail('c', 2005);
    // Opened as root, so in a folder of root's (a tenant's own folder is refused to root).
    chownSync(join(root, 'var', 'cache'), 0, 0);
    const r = await tenantWorker({ tenant: 'app', dir: join(root, 'var', 'cache'), root, uid: 2005, gid: 2005, openFirst: true });
    expect(r).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_JAIL' });
    expect(r.message).toMatch(/before jail\(\)/);
  });

  test('a failing chroot is JAIL with errno and syscall', async () => {
    const r = await tenantWorker({ tenant: 'app', dir: '/var/cache', root: join(tmp.dir, 'no-such-root'), uid: 2007, gid: 2007 });
    expect(r).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_JAIL', errno: 2, syscall: 'chroot' });
    // Once unprivileged, jailing again is refused by the kernel.
    const unprivileged = await tenantWorker({ tenant: 'x', dir: tmp.dir, uid: 0, gid: 0, keys: 1, dropTo: 2006 });
    expect(unprivileged).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_JAIL', errno: 1, syscall: 'setgroups' });
  });
});
