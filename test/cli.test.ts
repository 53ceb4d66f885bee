// The shmcache bin, run as users run it: a real process per command.
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { runCli, runCliJson, seed, startApp } from './fixtures/cli-lib.mjs';
import { isRoot, runFixture, tempDir } from './helpers';

const tmp = tempDir('shmcache-cli-');
const COMMANDS = ['stats', 'keys', 'get', 'delete', 'clear', 'verify', 'watch', 'serve'];
const XSS = '<img src=x onerror=alert(1)>';

async function sample(name = 'cli'): Promise<string> {
  const path = tmp.file(name);
  await seed(path, {
    entries: [
      ['user:1', 'Ada'],
      ['user:2', 'Grace', 60_000],
      ['user:3', 'é😀'],
      ['session/abc', { id: 7, tags: ['a', 'b'] }],
      ['bin', { $bytes: Buffer.from([0, 1, 2, 0x1b, 0xff]).toString('base64') }],
      ['count', 42],
      [XSS, 'x'],
      ['esc\x1b[2Jkey', 'value\x1b[31m'],
    ],
  });
  return path;
}

describe('usage', () => {
  test('--help on the program and on each command exits 0', async () => {
    const top = await runCli(['--help']);
    expect(top.code).toBe(0);
    for (const c of COMMANDS) expect(top.stdout).toContain(c);
    const helps = await Promise.all(COMMANDS.map((c) => runCli([c, '--help'])));
    helps.forEach((r, i) => {
      expect(r.code, COMMANDS[i]).toBe(0);
      expect(r.stdout).toContain(`Usage: shmcache ${COMMANDS[i]}`);
    });
    expect((await runCli(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  test('bad usage exits 2', async () => {
    const cases = [
      [],
      ['nope'],
      ['stats'],
      ['get', '/x.shm'],
      ['keys', '/x.shm', '--limit', 'x'],
      ['keys', '/x.shm', '--limit', '0'],
      ['stats', '/x.shm', '--bogus'],
      ['serve', '/x.shm', '--port', '70000'],
      ['serve', '/x.shm', '--token', 'a', '--token-file', '/etc/hostname'],
      ['watch', '/x.shm', '--interval', '0'],
    ];
    const results = await Promise.all(cases.map((args) => runCli(args)));
    results.forEach((r, i) => {
      expect(r.code, cases[i]!.join(' ')).toBe(2);
      expect(r.stderr, cases[i]!.join(' ')).not.toBe('');
    });
  });
});

describe('never creates, never resets, never grows', () => {
  test('a missing path exits 1 naming the code and the path, and creates nothing', async () => {
    const path = join(tmp.dir, 'missing.shm');
    const inMissingDir = join(tmp.dir, 'no-such-dir', 'x.shm');
    const cases = [
      ['stats', path],
      ['keys', path],
      ['get', path, 'k'],
      ['delete', path, 'k'],
      ['clear', path],
      ['verify', path],
      ['watch', path, '--count', '1'],
      ['stats', inMissingDir],
    ];
    const results = await Promise.all(cases.map((args) => runCli(args)));
    for (const [i, args] of cases.entries()) {
      const r = results[i]!;
      const target = args[1]!;
      if (args[0] === 'watch') {
        // watch keeps trying (a file may come back): each sample says why it has none.
        expect(r.code).toBe(0);
        expect(r.stdout).toContain('ERR_SHMCACHE_NOT_FOUND');
      } else {
        expect(r.code, args.join(' ')).toBe(1);
        expect(r.stderr).toContain('ERR_SHMCACHE_NOT_FOUND');
        expect(r.stderr).toContain(target);
      }
    }
    expect(existsSync(path)).toBe(false);
    expect(existsSync(join(tmp.dir, 'no-such-dir'))).toBe(false);
  });

  test('a segment with an older stamp is not reset, and keeps its size, whatever the stamp of the command', async () => {
    const path = tmp.file('stamp');
    const before = await seed(path, { size: '1MB', stamp: 1, entries: [['k', 'v']] });
    const size = statSync(path).size;
    // A new process group (detached) with a newer explicit stamp too: the
    // command would reset the segment if it attached with default options.
    const env = { SHMCACHE_STAMP: String(Date.now() * 1000) };
    const cases = [['stats', path], ['keys', path], ['get', path, 'k'], ['verify', path], ['watch', path, '--count', '1', '--interval', '0.1'], ['delete', path, 'other']];
    const results = await Promise.all(cases.map((args) => runCli(args, { env, detached: true })));
    results.forEach((r, i) => expect(r.code, `${cases[i]!.join(' ')}: ${r.stderr}`).toBe(0));
    const { json } = await runCliJson(['stats', path, '--json']);
    expect(json.stamp).toBe(before.stamp);
    expect(json.resets).toBe(0);
    expect(json.entries).toBe(1);
    expect(json.size).toBe(before.size);
    expect(statSync(path).size).toBe(size);
  });

  test('a file that is not a segment exits 1 and is left as it was', async () => {
    const path = join(tmp.dir, 'not-a-segment.shm');
    writeFileSync(path, 'hello, not a segment', { mode: 0o600 });
    const r = await runCli(['stats', path]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_SHMCACHE_NOT_A_SEGMENT');
    expect(readFileSync(path, 'utf8')).toBe('hello, not a segment');
  });
});

describe('commands', () => {
  test('stats: a table for people, every counter in --json', async () => {
    const path = await sample();
    const r = await runCli(['stats', path]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(path);
    expect(r.stdout).toMatch(/entries\s+8/);
    expect(r.stdout).toMatch(/size\s+1\.0 MiB/);
    expect(r.stdout).not.toContain('\x1b['); // no colour into a pipe
    const { json, code } = await runCliJson(['stats', path, '--json']);
    expect(code).toBe(0);
    for (const k of ['size', 'used', 'entries', 'hits', 'misses', 'sets', 'deletes', 'evictions', 'expired', 'repairs', 'resets', 'stamp', 'generation', 'pages', 'freePages', 'pageSize', 'maxValueSize', 'shards']) {
      expect(typeof json[k], k).toBe('number');
    }
    expect(json.path).toBe(path);
    expect(json.entries).toBe(8);
    expect(json).toHaveProperty('hitRatio');
  });

  test('keys: sorted, with type, bytes and TTL; prefix, --limit, --json; keys escaped for the terminal', async () => {
    const path = await sample();
    const { json } = await runCliJson(['keys', path, '--json']);
    expect(json.total).toBe(8);
    const keys = json.keys.map((k: any) => k.key);
    expect(keys).toEqual([...keys].sort());
    const byKey = new Map(json.keys.map((k: any) => [k.key, k]));
    expect(byKey.get('user:1')).toMatchObject({ type: 'string', bytes: 3 });
    expect(byKey.get('user:3')).toMatchObject({ type: 'string', bytes: Buffer.byteLength('é😀') });
    expect(byKey.get('bin')).toMatchObject({ type: 'bytes', bytes: 5 });
    expect(byKey.get('count')).toMatchObject({ type: 'number' });
    expect(byKey.get('session/abc')).toMatchObject({ type: 'object' });
    for (const k of json.keys) {
      expect(typeof k.bytes).toBe('number');
      if (typeof k.ttl === 'number') expect(k.ttl).toBeGreaterThanOrEqual(0);
      else expect(k.ttl).toBeNull();
    }
    const user2 = byKey.get('user:2') as any;
    if (typeof user2.ttl === 'number') expect(user2.ttl).toBeGreaterThan(50_000);

    const prefixed = await runCliJson(['keys', path, 'user:', '--json']);
    expect(prefixed.json.keys.map((k: any) => k.key)).toEqual(['user:1', 'user:2', 'user:3']);
    const limited = await runCliJson(['keys', path, '--limit', '2', '--json']);
    expect(limited.json.total).toBe(8);
    expect(limited.json.keys).toHaveLength(2);

    const human = await runCli(['keys', path]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^KEY\s+TYPE\s+BYTES\s+TTL/);
    expect(human.stdout).toMatch(/user:1\s+string\s+3 B/);
    expect(human.stdout).toContain(XSS);
    expect(human.stdout).toContain('esc\\x1b[2Jkey');
    expect(human.stdout).not.toContain('\x1b');
    expect(human.stdout).toContain('8 keys');
    expect((await runCli(['keys', path, 'user:', '--limit', '1'])).stdout).toContain('3 keys with prefix "user:", 1 shown');
  });

  test('get: each type as stored into a pipe, in --json, exit 1 when missing', async () => {
    const path = await sample();
    expect((await runCli(['get', path, 'user:3'])).stdout).toBe('é😀');
    expect((await runCli(['get', path, 'count'])).stdout).toBe('42\n');
    const raw = await new Promise<Buffer>((resolve) => {
      const { spawn } = require('node:child_process') as typeof import('node:child_process');
      const child = spawn(process.execPath, [join(__dirname, '..', 'dist', 'cli', 'main.js'), 'get', path, 'bin']);
      const chunks: Buffer[] = [];
      child.stdout.on('data', (d: Buffer) => chunks.push(d));
      child.on('close', () => resolve(Buffer.concat(chunks)));
    });
    expect([...raw]).toEqual([0, 1, 2, 0x1b, 0xff]);

    const str = await runCliJson(['get', path, 'user:1', '--json']);
    expect(str.json).toMatchObject({ key: 'user:1', type: 'string', bytes: 3, value: 'Ada' });
    const obj = await runCliJson(['get', path, 'session/abc', '--json']);
    expect(obj.json).toMatchObject({ key: 'session/abc', type: 'object', value: { id: 7, tags: ['a', 'b'] } });
    const bin = await runCliJson(['get', path, 'bin', '--json']);
    expect(bin.json).toMatchObject({ type: 'bytes', bytes: 5, encoding: 'base64', value: Buffer.from([0, 1, 2, 0x1b, 0xff]).toString('base64') });
    const esc = await runCliJson(['get', path, 'esc\x1b[2Jkey', '--json']);
    expect(esc.json.value).toBe('value\x1b[31m');
    expect(esc.stdout).not.toContain('\x1b'); // escaped in the JSON text

    const missing = await runCli(['get', path, 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('"nope"');
    expect(missing.stderr).toContain(path);
    const missingJson = await runCli(['get', path, 'nope', '--json']);
    expect(missingJson.code).toBe(1);
    expect(missingJson.stdout.trim()).toBe('null');
    const badKey = await runCli(['get', path, 'x'.repeat(2000)]);
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toContain('ERR_SHMCACHE_INVALID_KEY');
  });

  test('delete and clear', async () => {
    const path = await sample();
    const first = await runCliJson(['delete', path, 'user:1', '--json']);
    expect(first.json).toEqual({ key: 'user:1', deleted: true });
    const again = await runCli(['delete', path, 'user:1']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing deleted');
    expect((await runCli(['get', path, 'user:1'])).code).toBe(1);
    expect((await runCliJson(['stats', path, '--json'])).json.entries).toBe(7);
    const cleared = await runCliJson(['clear', path, '--json']);
    expect(cleared.json).toEqual({ path, cleared: 7 });
    expect((await runCliJson(['stats', path, '--json'])).json.entries).toBe(0);
    expect((await runCli(['clear', path])).stdout).toContain('cleared');
  });

  test('verify: 0 when ok; 1 with the problems after damage; --repair drops what they touched', async () => {
    const path = tmp.file('damaged');
    await seed(path, { bulk: 500 });
    const ok = await runCliJson(['verify', path, '--json']);
    expect(ok.code).toBe(0);
    expect(ok.json).toEqual({ path, ok: true, problems: [], repaired: false });
    expect((await runCli(['verify', path])).stdout).toContain('ok');
    const fuzz = await runFixture('fuzzer.mjs', [path, '200', '11']);
    expect(fuzz.code).toBe(0);
    const bad = await runCli(['verify', path]);
    expect(bad.code, bad.stdout + bad.stderr).toBe(1);
    expect(bad.stdout).toMatch(/\d+ problems? in/);
    expect(bad.stdout).toContain('nothing was changed');
    const repaired = await runCliJson(['verify', path, '--repair', '--json']);
    expect(repaired.json).toMatchObject({ ok: false, repaired: true });
    // What verify --repair found is dropped: the segment is consistent again.
    const after = await runCliJson(['verify', path, '--json']);
    expect(after.code).toBe(0);
    expect(after.json.ok).toBe(true);
  });

  test('watch without a terminal: one plain line per sample', async () => {
    const path = await sample();
    const r = await runCli(['watch', path, '--count', '3', '--interval', '0.2']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(l).toMatch(/^\d\d:\d\d:\d\d hits \S+ misses \S+ sets \S+ evictions \S+ expired \S+ hit ratio \S+ fill \S+ entries 8$/);
    expect(r.stdout).not.toContain('\x1b');
  });

  test('no progress lines when stderr is not a terminal', async () => {
    const path = tmp.file('large');
    await seed(path, { size: '4MB', bulk: 6000 });
    const keys = await runCli(['keys', path, '--limit', '3']);
    const verify = await runCli(['verify', path]);
    expect(keys.code).toBe(0);
    expect(verify.code).toBe(0);
    expect(keys.stderr).toBe('');
    expect(verify.stderr).toBe('');
  });
});

test('a segment a live app is writing and reading: every command works, the app sees no error', async () => {
  const path = tmp.file('live');
  const app = await startApp(path, 'both', 'app:', 300);
  try {
    const s1 = await runCliJson(['stats', path, '--json']);
    expect(s1.code).toBe(0);
    expect(s1.json.entries).toBeGreaterThan(0);
    const keys = await runCliJson(['keys', path, 'app:', '--json']);
    expect(keys.code).toBe(0);
    expect(keys.json.total).toBeGreaterThan(0);
    const got = await runCliJson(['get', path, keys.json.keys[0].key, '--json']);
    if (got.code === 0) expect(got.json.value).toMatch(/^value /);
    else expect(got.code).toBe(1); // replaced or evicted in between: a miss, never an error
    expect((await runCli(['verify', path])).code).toBe(0);
    expect((await runCli(['delete', path, 'app:1'])).code).toBe(0);
    expect((await runCli(['watch', path, '--count', '2', '--interval', '0.3'])).code).toBe(0);
    const s2 = await runCliJson(['stats', path, '--json']);
    expect(s2.json.sets).toBeGreaterThan(s1.json.sets); // the app went on
    expect(s2.json.resets).toBe(0);
  } finally {
    const report = await app.stop();
    expect(report.errors, report.lastError).toBe(0);
    expect(report.ops).toBeGreaterThan(0);
  }
});

describe.runIf(isRoot)('root and tenants', () => {
  const TENANT = 12_345;
  const OTHER = 23_456;

  async function tenantSegment(): Promise<string> {
    const dir = join(tmp.dir, `tenant-${TENANT}`);
    if (!existsSync(dir)) {
      mkdirSync(dir, { mode: 0o700 });
      chownSync(dir, TENANT, TENANT);
      chmodSync(tmp.dir, 0o755);
    }
    const path = join(dir, `site-${Date.now()}.shm`);
    await seed(path, { entries: [['page:/', 'home']] }, { CLI_DROP_TO: `${TENANT}:${TENANT}` });
    return path;
  }

  test('root attaches to a tenant-owned file as its owner; the file stays the tenant\'s', async () => {
    const path = await tenantSegment();
    expect(statSync(path).uid).toBe(TENANT);
    const s = await runCliJson(['stats', path, '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(s.json.entries).toBe(1);
    expect((await runCli(['get', path, 'page:/'])).stdout).toBe('home');
    expect((await runCli(['delete', path, 'page:/'])).code).toBe(0);
    expect((await runCli(['verify', path])).code).toBe(0);
    const st = statSync(path);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([TENANT, TENANT, 0o600]);
  });

  test('another unprivileged uid is refused (PERMISSION); with CAP_SETUID and CAP_SETGID alone it attaches', async () => {
    const path = await tenantSegment();
    const asOther = ['setpriv', `--reuid=${OTHER}`, `--regid=${OTHER}`, '--clear-groups'];
    const refused = await runCli(['stats', path], { prefix: asOther });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('ERR_SHMCACHE_PERMISSION');
    const caps = ['--inh-caps=+setuid,+setgid', '--ambient-caps=+setuid,+setgid'];
    const allowed = await runCliJson(['stats', path, '--json'], { prefix: [...asOther, ...caps] });
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.json.entries).toBe(1);
  });
});

test('EPIPE: a closed pipe ends the command quietly', async () => {
  const path = tmp.file('pipe');
  await seed(path, { size: '4MB', bulk: 3000 });
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync('bash', ['-c', `set -o pipefail; node ${join(__dirname, '..', 'dist', 'cli', 'main.js')} keys ${path} | head -1; echo "rc=\${PIPESTATUS[0]}"`], {
    encoding: 'utf8',
  });
  expect(out).toMatch(/^KEY/);
  expect(out).toMatch(/rc=0/);
});
