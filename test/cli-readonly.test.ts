// The commands and the status server as an attacker sees them: the reads
// write nothing and repair nothing, wait for no tenant's lock, and looking
// at a hostile value costs little.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { httpGet, runCli, runCliJson, seed, startServe } from './fixtures/cli-lib.mjs';
import { runFixture, sharedShapes, tempDir } from './helpers';

const tmp = tempDir('shmcache-ro-');

async function hostile(name: string): Promise<string> {
  const path = tmp.file(name);
  const r = await runFixture('cli-hostile.mjs', [path]);
  expect(r.code, r.stderr).toBe(0);
  return path;
}

describe('reads write nothing', () => {
  test('stats, keys, get, verify and watch leave every byte of the file as it was', async () => {
    const path = tmp.file('bytes');
    await seed(path, { entries: [['k', 'v'], ['o', { a: 1 }]], bulk: 50 });
    const before = readFileSync(path);
    for (const args of [['stats', path], ['keys', path], ['get', path, 'k'], ['get', path, 'o', '--json'], ['verify', path], ['watch', path, '--count', '2', '--interval', '0.1']]) {
      const r = await runCli(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      expect(readFileSync(path).equals(before), args.join(' ')).toBe(true);
    }
  });

  test("a tenant holding flock -x on its file does not stall a read", async () => {
    const path = tmp.file('locked');
    await seed(path, { entries: [['k', 'v']] });
    const holder = spawn('flock', ['-x', path, 'sleep', '30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const started = Date.now();
      const r = await runCliJson(['stats', path, '--json'], { env: { SHMCACHE_LOCK_TIMEOUT_MS: '20000' } });
      expect(r.code, r.stderr).toBe(0);
      expect(Date.now() - started).toBeLessThan(5000);
      const k = await runCli(['get', path, 'k'], { env: { SHMCACHE_LOCK_TIMEOUT_MS: '20000' } });
      expect(k.stdout).toBe('v');
    } finally {
      holder.kill('SIGKILL');
    }
  });

  test('verify reports without repairing (exit 1 each time); --repair repairs; keys says the segment is damaged', async () => {
    const path = tmp.file('damaged');
    await seed(path, { bulk: 500 });
    const fuzz = await runFixture('fuzzer.mjs', [path, '200', '11']);
    expect(fuzz.code).toBe(0);
    const damaged = readFileSync(path);
    const keys = await runCli(['keys', path]);
    expect(keys.stderr).toMatch(/damage/i);
    const first = await runCliJson(['verify', path, '--json']);
    expect(first.code).toBe(1);
    expect(first.json.ok).toBe(false);
    expect(readFileSync(path).equals(damaged)).toBe(true);
    const second = await runCli(['verify', path]);
    expect(second.code).toBe(1);
    expect(second.stdout).toContain('--repair');
    const repair = await runCli(['verify', path, '--repair']);
    expect(repair.code, repair.stdout + repair.stderr).toBe(1); // it found problems, and dropped what they touched
    const after = await runCliJson(['verify', path, '--json']);
    expect(after.json).toMatchObject({ ok: true });
  });

  test('the server: GET routes write nothing; the page knows of damage', async () => {
    const path = tmp.file('served');
    await seed(path, { entries: [['k', 'v']], bulk: 300 });
    const fuzz = await runFixture('fuzzer.mjs', [path, '200', '11']);
    expect(fuzz.code).toBe(0);
    const before = readFileSync(path);
    const serve = await startServe([path]);
    try {
      const name = path.split('/').pop()!.replace(/\.shm$/, '');
      const base = new URL(serve.url);
      for (const route of ['stats', 'keys?limit=1000', 'entry?key=k', 'entry?key=bulk:1']) await httpGet(new URL(`/api/caches/${name}/${route}`, base).toString());
      await new Promise((r) => setTimeout(r, 1500)); // a few samples
      const stats = await httpGet(new URL(`/api/caches/${name}/stats`, base).toString());
      expect(stats.json.damage).toMatchObject({ ok: false });
      expect(stats.json.damage.problems.length).toBeGreaterThan(0);
      expect(readFileSync(path).equals(before)).toBe(true);
    } finally {
      await serve.stop();
    }
  });
});

describe('hostile values cost little to look at', () => {
  test('get of a shared-reference DAG and of nested arrays: --json, a pipe, bounded and quick', async () => {
    const path = await hostile('hostile');
    for (const key of ['dag', 'arrays']) {
      const started = Date.now();
      const j = await runCliJson(['get', path, key, '--json'], { timeoutMs: 10_000 });
      expect(j.code).toBe(0);
      expect(j.json.truncated).toBe(true);
      expect(j.stdout.length).toBeLessThan(1024 * 1024); // JSON_BUDGET, indented
      const p = await runCli(['get', path, key], { timeoutMs: 10_000 });
      expect(p.code).toBe(0);
      expect(p.stdout.length).toBeLessThan(64 * 1024);
      expect(Date.now() - started).toBeLessThan(8000);
    }
    const cycle = await runCliJson(['get', path, 'cycle', '--json']);
    expect(cycle.json.value).toMatchObject({ name: 'c', self: '[Circular]' });
  });

  test('the preview walker: a node and byte budget, cycle- and DAG-safe, escapes control and bidi characters', async () => {
    const { preview, boundedJson } = require(join(__dirname, '..', 'dist', 'cli', 'inspect.js'));
    const { dag, arrays } = sharedShapes();
    const started = Date.now();
    for (const v of [dag, arrays]) {
      const p = preview(v);
      expect(p.truncated).toBe(true);
      expect(Buffer.byteLength(p.preview)).toBeLessThanOrEqual(4096 + 64);
      const b = boundedJson(v);
      expect(b.truncated).toBe(true);
      expect(JSON.stringify(b.value).length).toBeLessThan(300 * 1024); // JSON_BUDGET: 256 KiB
    }
    expect(Date.now() - started).toBeLessThan(1000);
    const c: any = { a: [1, 'two', 3n, new Map([['m', 1]]), new Set([2]), Buffer.from('hi'), new Date(0)] };
    c.self = c;
    const p = preview(c);
    expect(p.truncated).toBe(false);
    expect(p.preview).toContain('[Circular]');
    expect(p.preview).toContain("'two'");
    expect(p.preview).toContain('3n');
    const bidi = preview({ s: 'a\u202eb\x1b[31m' }).preview;
    expect(bidi).not.toContain('\u202e');
    expect(bidi).not.toContain('\x1b');
    expect(bidi).toContain('\\u202e');
  });

  test('the entry route answers at once for a hostile value', async () => {
    const path = await hostile('hostile-served');
    const serve = await startServe([path]);
    try {
      const name = path.split('/').pop()!.replace(/\.shm$/, '');
      const started = Date.now();
      const r = await httpGet(new URL(`/api/caches/${name}/entry?key=dag`, serve.url).toString());
      expect(r.status).toBe(200);
      expect(r.json.truncated).toBe(true);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await serve.stop();
    }
  });
});


describe('control and bidi characters', () => {
  test('keys --json and get --json escape bidi controls; /metrics drops control characters from cache names', async () => {
    const path = await hostile('bidi');
    const keys = await runCli(['keys', path, '--json']);
    const get = await runCli(['get', path, 'bidi-string', '--json']);
    for (const out of [keys.stdout, get.stdout]) {
      expect(out).not.toMatch(/[\u202a-\u202e\u2066-\u2069\u200e\u200f]/);
      expect(out).toContain('\\u202e');
    }
    expect(JSON.parse(get.stdout).value).toBe('safe\u202eevil');
    const dir = join(path, '..', 'esc-dir');
    require('node:fs').mkdirSync(dir);
    await seed(join(dir, 'x\x1b]0;pwned\x07"q\\.shm'), { entries: [['k', 'v']] });
    const serve = await startServe([dir]);
    try {
      const m = await (async () => {
        for (let i = 0; i < 50; i++) {
          const r = await httpGet(new URL('/metrics', serve.url).toString());
          if (r.text.includes('shmcache_up{')) return r.text;
          await new Promise((res) => setTimeout(res, 100));
        }
        return '';
      })();
      expect(m).toContain('shmcache_up{');
      expect(m).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/); // eslint-disable-line no-control-regex
      expect(m).toContain('\\"q\\\\');
    } finally {
      await serve.stop();
    }
  });
});

describe('msgpack values', () => {
  async function msgpackSegment(name: string, mode?: 'damage'): Promise<string> {
    const path = tmp.file(name);
    const r = await runFixture('cli-msgpack.mjs', mode === undefined ? [path] : [path, mode]);
    expect(r.code, r.stderr).toBe(0);
    return path;
  }

  test('get --json decodes with the segment\'s structures; structures gone or different say so; hostile bytes fail at once; nothing is written', async () => {
    const path = await msgpackSegment('mp-get');
    const before = readFileSync(path);
    const ok = await runCliJson(['get', path, 'ok', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.json).toMatchObject({ key: 'ok', type: 'object', value: { name: 'kept', n: 3 } });
    for (const key of ['gone', 'mismatch']) {
      const r = await runCliJson(['get', path, key, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json, key).toMatchObject({ key, type: 'object', encoding: 'base64' });
      expect(r.json.undecodable, key).toContain('structures gone');
    }
    for (const key of ['huge-array', 'deep', 'trailing']) {
      const started = Date.now();
      const r = await runCliJson(['get', path, key, '--json'], { timeoutMs: 10_000 });
      expect(r.code, `${key}: ${r.stderr}`).toBe(0);
      expect(r.json, key).toMatchObject({ key, type: 'object', encoding: 'base64' });
      expect(r.json.undecodable, key).toMatch(/^\(cannot decode with the msgpack codec: /);
      expect(Date.now() - started, key).toBeLessThan(5000);
    }
    const trailing = await runCli(['get', path, 'trailing', '--json']);
    expect(trailing.stdout).not.toMatch(/[\u202e\x1b]/); // eslint-disable-line no-control-regex
    const deep = await runCliJson(['get', path, 'deep-ok', '--json'], { timeoutMs: 10_000 });
    expect(deep.code, deep.stderr).toBe(0);
    expect(Array.isArray(deep.json.value)).toBe(true);
    expect(deep.json.truncated).toBe(true); // the indentation is paid for
    expect(deep.stdout.length).toBeLessThan(1024 * 1024);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  test('a damaged structure pointer: the read-only get neither repairs nor writes it, and says structures gone', async () => {
    const path = await msgpackSegment('mp-damaged', 'damage');
    const before = readFileSync(path);
    const r = await runCliJson(['get', path, 'ok', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.undecodable).toContain('structures gone');
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  test('the entry route: decoded previews, structures gone, hostile bytes answered at once, nothing written', async () => {
    const path = await msgpackSegment('mp-served');
    const before = readFileSync(path);
    const serve = await startServe([path]);
    try {
      const name = path.split('/').pop()!.replace(/\.shm$/, '');
      const entry = (key: string) => httpGet(new URL(`/api/caches/${name}/entry?key=${encodeURIComponent(key)}`, serve.url).toString());
      const ok = await entry('ok');
      expect(ok.status).toBe(200);
      expect(ok.json.preview).toContain("'kept'");
      expect((await entry('gone')).json.preview).toContain('structures gone');
      expect((await entry('mismatch')).json.preview).toContain('structures gone');
      for (const key of ['huge-array', 'deep', 'trailing']) {
        const started = Date.now();
        const r = await entry(key);
        expect(r.status, key).toBe(200);
        expect(r.json.preview, key).toMatch(/^\(cannot decode with the msgpack codec: /);
        expect(Date.now() - started, key).toBeLessThan(3000);
      }
      expect((await entry('trailing')).json.preview).not.toMatch(/[\u202e\x1b]/); // eslint-disable-line no-control-regex
      const deep = await entry('deep-ok');
      expect(deep.status).toBe(200);
      expect(deep.json.truncated).toBe(true);
      expect((await entry('ok')).json.preview).toContain("'kept'"); // still decoding after the hostile ones
      expect(readFileSync(path).equals(before)).toBe(true);
    } finally {
      await serve.stop();
    }
  });
});
