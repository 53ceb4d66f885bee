// shmcache serve: every route, the token, the headers, and caches that are
// damaged, cut short, removed or replaced while served.
import { request } from 'node:http';
import { renameSync, rmSync, truncateSync, writeFileSync, mkdirSync, chmodSync, chownSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runCli, runCliJson, seed, startApp, startServe, waitFor } from './fixtures/cli-lib.mjs';
import { isRoot, runFixture, tempDir } from './helpers';

const tmp = tempDir('shmcache-server-');
const XSS = '<img src=x onerror=alert(1)>';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/** One HTTP request with node:http (fetch would not let a test set Host). */
function http(method: string, url: string, { headers = {}, body }: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: any;
        try {
          json = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const api = (base: string, path: string) => new URL(path, base).toString();
const enc = encodeURIComponent;

describe('routes', () => {
  const dir = join(tmp.dir, 'tenants');
  let serve: Awaited<ReturnType<typeof startServe>>;

  beforeAll(async () => {
    mkdirSync(dir);
    await seed(join(dir, 'site-a.shm'), {
      entries: [
        ['user:1', 'Ada'],
        ['user:2', 'Grace', 60_000],
        ['long', 'x'.repeat(5000)],
        ['bin', { $bytes: Buffer.alloc(300, 7).toString('base64') }],
        ['count', 42],
        ['obj', { a: 1, nested: { list: [1, 2, 3] } }],
        [XSS, '<script>alert(2)</script>'],
      ],
      bulk: 120,
      bulkPrefix: 'page:',
    });
    await seed(join(dir, 'site-b.shm'), { entries: [['b:1', 'one']] });
    writeFileSync(join(dir, 'notes.txt'), 'not a segment');
    serve = await startServe([dir]);
  });
  afterAll(async () => {
    const exit = await serve?.stop();
    expect(exit?.code).toBe(0); // SIGTERM: a clean stop
  });

  test('the page, its script, styles and uPlot, with the security headers and no CORS', async () => {
    for (const [path, type] of [
      ['/', 'text/html'],
      ['/static/app.js', 'text/javascript'],
      ['/static/app.css', 'text/css'],
      ['/static/uPlot.iife.min.js', 'text/javascript'],
      ['/static/uPlot.min.css', 'text/css'],
    ] as const) {
      const r = await http('GET', api(serve.url, path));
      expect(r.status, path).toBe(200);
      expect(r.headers['content-type']).toContain(type);
      expect(r.headers['content-security-policy']).toContain("default-src 'self'");
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.headers['access-control-allow-origin']).toBeUndefined();
      expect(r.text.length).toBeGreaterThan(100);
    }
    const page = await http('GET', serve.url);
    expect(page.text).not.toMatch(/https?:\/\//); // nothing from the network
    expect(page.text).not.toMatch(/<script>[^<]/); // no inline script
  });

  test('the token: random, printed at start', () => {
    expect(serve.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(serve.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
  });

  test('GET /api/caches lists every *.shm of the folder by name', async () => {
    const r = await http('GET', api(serve.url, '/api/caches'));
    expect(r.status).toBe(200);
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.json.map((c: any) => [c.name, c.path])).toEqual([
      ['site-a', join(dir, 'site-a.shm')],
      ['site-b', join(dir, 'site-b.shm')],
    ]);
    expect(r.json.every((c: any) => c.error === null)).toBe(true);
  });

  test('GET stats: the stats and the per-second series, incrementally with since', async () => {
    const r = await waitFor(async () => {
      const x = await http('GET', api(serve.url, '/api/caches/site-a/stats'));
      return x.json.series.t.length >= 2 ? x : undefined;
    });
    expect(r.json.stats).toMatchObject({ entries: 127, path: join(dir, 'site-a.shm') });
    for (const k of ['t', 'hitRatio', 'hits', 'misses', 'sets', 'deletes', 'evictions', 'expired']) {
      expect(r.json.series[k], k).toHaveLength(r.json.series.t.length);
    }
    const last = r.json.series.t.at(-1);
    const later = await http('GET', api(serve.url, `/api/caches/site-a/stats?since=${last}`));
    expect(later.json.series.t.every((t: number) => t > last)).toBe(true);
    expect((await http('GET', api(serve.url, '/api/caches/site-a/stats?since=-1'))).status).toBe(400);
  });

  test('GET keys: prefix, limit, offset; pages are disjoint and sorted', async () => {
    const all = await http('GET', api(serve.url, '/api/caches/site-a/keys?limit=1000'));
    expect(all.json.total).toBe(127);
    const names = all.json.keys.map((k: any) => k.key);
    expect(names).toEqual([...names].sort());
    const p1 = await http('GET', api(serve.url, '/api/caches/site-a/keys?prefix=page:&limit=50&offset=0'));
    const p3 = await http('GET', api(serve.url, '/api/caches/site-a/keys?prefix=page:&limit=50&offset=100'));
    expect(p1.json).toMatchObject({ prefix: 'page:', total: 120, offset: 0, limit: 50 });
    expect(p1.json.keys).toHaveLength(50);
    expect(p3.json.keys).toHaveLength(20);
    expect(p1.json.keys.every((k: any) => k.key.startsWith('page:') && k.type === 'string')).toBe(true);
    const user = await http('GET', api(serve.url, '/api/caches/site-a/keys?prefix=user:'));
    expect(user.json.keys.map((k: any) => [k.key, k.type, k.bytes])).toEqual([
      ['user:1', 'string', 3],
      ['user:2', 'string', 5],
    ]);
    for (const k of user.json.keys) if (typeof k.ttl === 'number') expect(k.ttl).toBeGreaterThanOrEqual(0);
    for (const q of ['limit=0', 'limit=5000', 'offset=-1', 'limit=abc']) {
      expect((await http('GET', api(serve.url, `/api/caches/site-a/keys?${q}`))).status, q).toBe(400);
    }
  });

  test('GET entry: { key, type, bytes, ttl, preview } with a truncated preview; 404 and 400', async () => {
    const get = (key: string) => http('GET', api(serve.url, `/api/caches/site-a/entry?key=${enc(key)}`));
    const long = await get('long');
    expect(long.json).toMatchObject({ key: 'long', type: 'string', bytes: 5000, truncated: true });
    expect(long.json.preview.length).toBeLessThan(5000);
    expect(Object.keys(long.json)).toEqual(expect.arrayContaining(['key', 'type', 'bytes', 'ttl', 'preview']));
    const bin = await get('bin');
    expect(bin.json).toMatchObject({ type: 'bytes', bytes: 300, truncated: true });
    expect(bin.json.preview).toMatch(/^00000000 {2}07 07 07/);
    expect((await get('count')).json).toMatchObject({ type: 'number', preview: '42' });
    expect((await get('obj')).json.preview).toContain('nested');
    const xss = await get(XSS);
    expect(xss.json).toMatchObject({ key: XSS, preview: '<script>alert(2)</script>' });
    expect(xss.headers['content-type']).toContain('application/json');
    expect((await get('nope')).status).toBe(404);
    expect((await http('GET', api(serve.url, '/api/caches/site-a/entry'))).status).toBe(400);
    expect((await get('k'.repeat(2000))).status).toBe(400); // an invalid key is the caller's error
  });

  test('mutations: POST only (405), the bearer token (401), a JSON body within limits', async () => {
    const url = api(serve.url, '/api/caches/site-a/delete');
    const auth = { authorization: `Bearer ${serve.token}`, 'content-type': 'application/json' };
    const body = JSON.stringify({ key: 'user:1' });
    const get = await http('GET', url);
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
    expect((await http('GET', api(serve.url, '/api/caches/site-a/clear'))).status).toBe(405);
    expect((await http('POST', api(serve.url, '/api/caches/site-a/stats'))).status).toBe(405);
    const none = await http('POST', url, { headers: { 'content-type': 'application/json' }, body });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toContain('Bearer');
    for (const bad of [`Bearer ${serve.token}x`, `Bearer ${serve.token.slice(1)}`, 'Bearer ', serve.token, `Basic ${serve.token}`]) {
      expect((await http('POST', url, { headers: { authorization: bad, 'content-type': 'application/json' }, body })).status, bad).toBe(401);
    }
    expect((await http('POST', url, { headers: auth, body: '{"key":' })).status).toBe(400);
    expect((await http('POST', url, { headers: auth, body: '{}' })).status).toBe(400);
    expect((await http('POST', url, { headers: auth, body: JSON.stringify({ key: 5 }) })).status).toBe(400);
    expect((await http('POST', url, { headers: { ...auth, 'content-type': 'text/plain' }, body })).status).toBe(415);
    const huge = await http('POST', url, { headers: auth, body: JSON.stringify({ key: 'x'.repeat(100_000) }) });
    expect(huge.status).toBe(413);
    expect((await http('POST', url, { headers: { ...auth, origin: 'http://evil.example' }, body })).status).toBe(403);
    // Nothing changed so far.
    expect((await runCli(['get', join(dir, 'site-a.shm'), 'user:1'])).stdout).toBe('Ada');

    const ok = await http('POST', url, { headers: auth, body });
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ key: 'user:1', deleted: true });
    expect((await runCli(['get', join(dir, 'site-a.shm'), 'user:1'])).code).toBe(1);
    expect((await http('POST', url, { headers: auth, body })).json).toEqual({ key: 'user:1', deleted: false });
  });

  test('POST clear empties only that cache', async () => {
    const r = await http('POST', api(serve.url, '/api/caches/site-b/clear'), { headers: { authorization: `Bearer ${serve.token}` } });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ name: 'site-b', cleared: 1 });
    expect((await runCliJson(['stats', join(dir, 'site-b.shm'), '--json'])).json.entries).toBe(0);
    expect((await runCliJson(['stats', join(dir, 'site-a.shm'), '--json'])).json.entries).toBeGreaterThan(100);
  });

  test('GET /metrics: one series per cache and counter, gauges, from a registry of its own', async () => {
    const r = await http('GET', api(serve.url, '/metrics'));
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toContain('text/plain');
    for (const c of ['hits', 'misses', 'sets', 'deletes', 'evictions', 'expired', 'resets']) {
      expect(r.text).toContain(`# TYPE shmcache_${c}_total counter`);
      expect(r.text).toMatch(new RegExp(`^shmcache_${c}_total\\{cache="site-a"\\} \\d+$`, 'm'));
      expect(r.text).toMatch(new RegExp(`^shmcache_${c}_total\\{cache="site-b"\\} \\d+$`, 'm'));
    }
    for (const g of ['used_bytes', 'capacity_bytes', 'entries', 'free_pages']) {
      expect(r.text).toContain(`# TYPE shmcache_${g} gauge`);
      expect(r.text).toMatch(new RegExp(`^shmcache_${g}\\{cache="site-a"\\} \\d+$`, 'm'));
    }
    expect(r.text).toMatch(/^shmcache_capacity_bytes\{cache="site-a"\} 1048576$/m);
    expect(r.text).toMatch(/^shmcache_up\{cache="site-b"\} 1$/m);
    expect(r.text).not.toContain('process_cpu'); // not the global registry's default metrics
  });

  test('unknown caches and routes are 404; a foreign Host is refused (DNS rebinding)', async () => {
    expect((await http('GET', api(serve.url, '/api/caches/nope/stats'))).status).toBe(404);
    expect((await http('GET', api(serve.url, '/api/caches/site-a/nope'))).status).toBe(404);
    expect((await http('GET', api(serve.url, '/api/caches/__proto__/stats'))).status).toBe(404);
    expect((await http('GET', api(serve.url, '/api/caches/site-a/constructor'))).status).toBe(404);
    expect((await http('GET', api(serve.url, '/etc/passwd'))).status).toBe(404);
    expect((await http('GET', api(serve.url, '/api/caches/%E0%A4%A/stats'))).status).toBe(400);
    expect((await http('GET', serve.url, { headers: { host: 'evil.example:80' } })).status).toBe(403);
    expect((await http('GET', serve.url, { headers: { host: `localhost:${new URL(serve.url).port}` } })).status).toBe(200);
  });

  test('a new *.shm in the folder is picked up; a removed one leaves the list', async () => {
    const c = join(dir, 'site-c.shm');
    await seed(c, { entries: [['c', '3']] });
    await waitFor(async () => (await http('GET', api(serve.url, '/api/caches'))).json.some((x: any) => x.name === 'site-c'), 10_000, 'site-c');
    rmSync(c);
    await waitFor(async () => !(await http('GET', api(serve.url, '/api/caches'))).json.some((x: any) => x.name === 'site-c'), 10_000, 'site-c gone');
  });
});

describe('hostile and vanishing segments', () => {
  test('damaged, cut short, removed and replaced while served: that cache errors, the others go on, the server stays up', async () => {
    const a = tmp.file('victim');
    const b = tmp.file('healthy');
    await seed(a, { bulk: 400 });
    await seed(b, { bulk: 10 });
    const app = await startApp(b, 'both', 'app:', 50);
    const serve = await startServe([a, b]);
    const [nameA, nameB] = [a, b].map((p) => p.split('/').pop()!.replace(/\.shm$/, ''));
    const sampledB = async () => (await http('GET', api(serve.url, `/api/caches/${nameB}/stats`))).json.sampledAt as number;
    const healthy = async () => {
      const t = await sampledB();
      await waitFor(async () => (await sampledB()) > t, 10_000, 'a new sample of the healthy cache');
      const keys = await http('GET', api(serve.url, `/api/caches/${nameB}/keys?prefix=app:`));
      expect(keys.status).toBe(200);
      expect((await http('GET', api(serve.url, '/metrics'))).text).toMatch(new RegExp(`shmcache_up\\{cache="${nameB}"\\} 1`));
    };
    /** Every route of the victim answers with JSON (200 or an error naming a code), never a dropped connection. */
    const victimAnswers = async () => {
      for (const route of ['stats', 'keys?limit=200', 'entry?key=bulk:1']) {
        const r = await http('GET', api(serve.url, `/api/caches/${nameA}/${route}`));
        expect([200, 404, 500], `${route}: ${r.text}`).toContain(r.status);
        if (r.status === 500) expect(r.json.error).toMatch(/^ERR_SHMCACHE_/);
      }
    };
    try {
      // 1. Random bytes over the buckets, page records and heap.
      const fuzz = runFixture('fuzzer.mjs', [a, '1500', '5']);
      while ((await Promise.race([fuzz.then(() => 'done'), new Promise((r) => setTimeout(() => r('more'), 100))])) !== 'done') {
        await victimAnswers();
      }
      expect((await fuzz).code).toBe(0);
      await victimAnswers();
      await healthy();

      // 2. Cut short under the server's mapping.
      truncateSync(a, 4096);
      await victimAnswers();
      await waitFor(async () => (await http('GET', api(serve.url, '/api/caches'))).json.find((c: any) => c.name === nameA).error, 10_000, 'the cut file to error');
      await healthy();

      // 3. Removed.
      rmSync(a);
      const gone = await waitFor(
        async () => (await http('GET', api(serve.url, '/api/caches'))).json.find((c: any) => c.name === nameA && c.error?.code === 'ERR_SHMCACHE_NOT_FOUND'),
        10_000,
        'the removed cache to say NOT_FOUND',
      );
      expect(gone.error.message).toContain(a);
      const keys = await http('GET', api(serve.url, `/api/caches/${nameA}/keys`));
      expect(keys.status).toBe(500);
      expect(keys.json.error).toBe('ERR_SHMCACHE_NOT_FOUND');
      expect((await http('GET', api(serve.url, '/metrics'))).text).toMatch(new RegExp(`shmcache_up\\{cache="${nameA}"\\} 0`));
      await healthy();

      // 4. A new file in its place (another inode) is attached again.
      const fresh = `${a}.new`;
      await seed(fresh, { entries: [['back', 'again']] });
      renameSync(fresh, a);
      const back = await waitFor(async () => {
        const r = await http('GET', api(serve.url, `/api/caches/${nameA}/stats`));
        return r.json.error === null && r.json.stats?.entries === 1 ? r : undefined;
      }, 40_000, 'the replaced cache to come back');
      expect(back.json.stats.entries).toBe(1);
      expect((await http('GET', api(serve.url, `/api/caches/${nameA}/entry?key=back`))).json.preview).toBe('again');
      await healthy();
      expect(serve.child.exitCode).toBeNull();
    } finally {
      await serve.stop();
      const report = await app.stop();
      expect(report.errors, report.lastError).toBe(0);
    }
  });
});

describe('tokens', () => {
  test('--token-file: the first line is the token, and it is not printed', async () => {
    const path = tmp.file('tok');
    await seed(path, { entries: [['k', 'v']] });
    const file = join(tmp.dir, 'token');
    writeFileSync(file, 's3cret-token-from-file\n', { mode: 0o600 });
    const serve = await startServe([path, '--token-file', file]);
    try {
      expect(serve.output.out).not.toContain('s3cret');
      const name = path.split('/').pop()!.replace(/\.shm$/, '');
      const url = api(serve.url, `/api/caches/${name}/delete`);
      const body = JSON.stringify({ key: 'k' });
      expect((await http('POST', url, { headers: { authorization: 'Bearer nope', 'content-type': 'application/json' }, body })).status).toBe(401);
      const ok = await http('POST', url, { headers: { authorization: 'Bearer s3cret-token-from-file', 'content-type': 'application/json' }, body });
      expect(ok.json).toEqual({ key: 'k', deleted: true });
    } finally {
      await serve.stop();
    }
  });

  test('an empty token file is bad usage; a busy port is an error', async () => {
    const file = join(tmp.dir, 'empty-token');
    writeFileSync(file, '\n', { mode: 0o600 });
    expect((await runCli(['serve', tmp.dir, '--token-file', file])).code).toBe(2);
    const serve = await startServe([tmp.dir]);
    try {
      const port = new URL(serve.url).port;
      const busy = await runCli(['serve', tmp.dir, '--port', port]);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toContain('EADDRINUSE');
    } finally {
      await serve.stop();
    }
  });
});

describe.runIf(isRoot)('root', () => {
  test('serves a tenant-owned segment, attached as its owner', async () => {
    const dir = join(tmp.dir, 'tenant-home');
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, 12_345, 12_345);
    chmodSync(tmp.dir, 0o755);
    const path = join(dir, 'site-t.shm');
    await seed(path, { entries: [['t', 'tenant']] }, { CLI_DROP_TO: '12345:12345' });
    const serve = await startServe([path]);
    try {
      const r = await waitFor(async () => {
        const x = await http('GET', api(serve.url, '/api/caches/site-t/stats'));
        return x.json.stats ? x : undefined;
      });
      expect(r.json.stats.entries).toBe(1);
      expect((await http('GET', api(serve.url, '/api/caches/site-t/entry?key=t'))).json.preview).toBe('tenant');
    } finally {
      await serve.stop();
    }
  });
});
