// shmcache serve over a shared folder an attacker writes into: junk files
// and another tenant's many segments hide nobody, names do not shadow each
// other, a huge segment does not stall the server, the token is handled.
import { chmodSync, chownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { httpGet, runCli, seed, startServe, waitFor } from './fixtures/cli-lib.mjs';
import { isRoot, runFixture, tempDir } from './helpers';

const tmp = tempDir('shmcache-tenants-');

describe.runIf(isRoot)('a shared folder', () => {
  test('1000 empty *.shm files and another uid\'s 70 segments hide no one; the per-uid cap holds', async () => {
    const dir = join(tmp.dir, 'shared');
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(tmp.dir, 0o755); // the tenant's files are opened as the tenant
    for (let i = 0; i < 1000; i++) writeFileSync(join(dir, `a${String(i).padStart(4, '0')}.shm`), '');
    const many = await runFixture('cli-many.mjs', [dir, '70', 'b', '12345']);
    expect(many.code, many.stderr).toBe(0);
    await seed(join(dir, 'zz-victim.shm'), { entries: [['k', 'v']] });
    const serve = await startServe([dir]);
    try {
      const list = await waitFor(async () => {
        const r = await httpGet(new URL('/api/caches', serve.url).toString());
        return r.json.some((c: any) => c.name === 'zz-victim') ? r.json : undefined;
      }, 15_000, 'the victim listed');
      expect(list.filter((c: any) => c.name.startsWith('b'))).toHaveLength(64);
      expect(list.some((c: any) => c.name.startsWith('a'))).toBe(false); // not segments: not listed
      expect(serve.output.err).toMatch(/64 segments of uid 12345/);
    } finally {
      await serve.stop();
    }
  });
});

describe('names', () => {
  test('the same file name in two folders: both served, under names that differ; "." and ".." refused', async () => {
    const one = join(tmp.dir, 'one');
    const two = join(tmp.dir, 'two');
    mkdirSync(one);
    mkdirSync(two);
    await seed(join(one, 'site.shm'), { entries: [['who', 'one']] });
    await seed(join(two, 'site.shm'), { entries: [['who', 'two']] });
    await seed(join(one, '..shm'), { entries: [['who', 'dot']] });
    const serve = await startServe([one, two]);
    try {
      const list = await waitFor(async () => {
        const r = await httpGet(new URL('/api/caches', serve.url).toString());
        return r.json.length >= 2 ? r.json : undefined;
      });
      const sites = list.filter((c: any) => c.path.endsWith('/site.shm'));
      expect(sites).toHaveLength(2);
      expect(sites[0].name).not.toBe(sites[1].name);
      expect(list.some((c: any) => c.name === '.' || c.name === '..')).toBe(false);
      const seen = [];
      for (const c of sites) {
        const e = await httpGet(new URL(`/api/caches/${encodeURIComponent(c.name)}/entry?key=who`, serve.url).toString());
        seen.push(e.json.preview);
      }
      expect(seen.sort()).toEqual(['one', 'two']);
      expect(serve.output.err).toMatch(/refus|skipping/);
    } finally {
      await serve.stop();
    }
  });
});

describe('a huge segment', () => {
  test('keys with a prefix pages without a global sort and without stalling other requests', async () => {
    const dir = join(tmp.dir, 'huge');
    mkdirSync(dir);
    const many = await runFixture('cli-many.mjs', [dir, '1', 'big', '', '400000'], { timeoutMs: 60_000 });
    expect(many.code, many.stderr).toBe(0);
    const serve = await startServe([dir]);
    try {
      const name = 'big0000';
      await waitFor(async () => (await httpGet(new URL(`/api/caches/${name}/stats`, serve.url).toString())).json.stats);
      const first = await httpGet(new URL(`/api/caches/${name}/keys?prefix=k:1&limit=5&offset=3`, serve.url).toString());
      expect(first.json.keys.map((k: any) => k.key)).toEqual(['k:1000', 'k:10000', 'k:100000', 'k:100001', 'k:100002']);
      expect(first.json.total).toBe(111_111);
      // Several scans at once (each a prefix not seen before), and a list meanwhile.
      const scans = ['k:2', 'k:3', 'k:4', 'k:5', 'k:6', 'k:7'].map((p) => httpGet(new URL(`/api/caches/${name}/keys?prefix=${p}&limit=10`, serve.url).toString()));
      await new Promise((r) => setTimeout(r, 20));
      const list = await httpGet(new URL('/api/caches', serve.url).toString());
      expect(list.status).toBe(200);
      expect(list.ms).toBeLessThan(400);
      for (const s of await Promise.all(scans)) expect(s.json.keys).toHaveLength(10);
    } finally {
      await serve.stop();
    }
  });

  test('the sorted window: the first offset+limit keys in order, without sorting them all', async () => {
    const { sortedWindow } = require(join(__dirname, '..', 'dist', 'cli', 'inspect.js'));
    const keys = Array.from({ length: 5000 }, (_, i) => `key:${(i * 7919) % 5000}`);
    const w = sortedWindow(keys, 10);
    expect(w.total).toBe(5000);
    expect(w.keys).toEqual([...keys].sort().slice(0, 10));
  });
});

describe('tokens', () => {
  test('--token warns that every user sees it (ps, /proc); --token-file does not', async () => {
    const path = tmp.file('tok');
    await seed(path, { entries: [['k', 'v']] });
    const serve = await startServe([path, '--token', 's3cret']);
    try {
      await waitFor(() => /--token-file/.test(serve.output.err), 5000, 'the warning');
      expect(serve.output.err).toMatch(/warning/);
    } finally {
      await serve.stop();
    }
    const bad = await runCli(['serve', path, '--token', 'has space']);
    expect(bad.code).toBe(2);
  });

  test('--token-file: a symlink, a file of another uid, a token with whitespace are refused (exit 2); Bearer in any case', async () => {
    const path = tmp.file('tok2');
    await seed(path, { entries: [['k', 'v']] });
    const file = join(tmp.dir, 'token-ok');
    writeFileSync(file, 'tok-1\n', { mode: 0o600 });
    const link = join(tmp.dir, 'token-link');
    symlinkSync(file, link);
    const spaced = join(tmp.dir, 'token-spaced');
    writeFileSync(spaced, 'tok 1\n', { mode: 0o600 });
    const refused = [link, spaced];
    if (isRoot) {
      const foreign = join(tmp.dir, 'token-foreign');
      writeFileSync(foreign, 'tok-2\n', { mode: 0o600 });
      chownSync(foreign, 12_345, 12_345);
      refused.push(foreign);
    }
    for (const f of refused) {
      const r = await runCli(['serve', path, '--token-file', f]);
      expect(r.code, `${f}: ${r.stderr}`).toBe(2);
    }
    const serve = await startServe([path, '--token-file', file]);
    try {
      const name = path.split('/').pop()!.replace(/\.shm$/, '');
      const res = await fetch(new URL(`/api/caches/${name}/delete`, serve.url), {
        method: 'POST',
        headers: { authorization: 'bEaReR tok-1', 'content-type': 'application/json' },
        body: JSON.stringify({ key: 'k' }),
      });
      expect(res.status).toBe(200);
    } finally {
      await serve.stop();
    }
  });
});
