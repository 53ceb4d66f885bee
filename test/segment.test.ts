import {
  chmodSync,
  chownSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
  existsSync,
  readdirSync,
} from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { Cache, ShmCacheError } from '../esm/index.mjs';
import { code, holdFlock, isRoot, openInChild, runFixture, tempDir, tmpfsFor, waitUntil } from './helpers';

const tmp = tempDir();
const MB = 1024 * 1024;

function openError(path: string, options: Record<string, unknown> = {}): ShmCacheError {
  const c = new Cache({ path, size: '1MB', stamp: false, ...options });
  try {
    c.open();
  } catch (e) {
    expect(e).toBeInstanceOf(ShmCacheError);
    expect(c.isOpen).toBe(false);
    return e as ShmCacheError;
  }
  c.close();
  throw new Error(`opening ${path} did not fail`);
}

function makeSegment(size = '1MB'): string {
  const path = tmp.file();
  const c = new Cache({ path, size, stamp: false });
  c.set('k', 'v');
  c.close();
  return path;
}

function poke(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
}

describe('creation', () => {
  test('mode is exactly 0600 whatever the umask', async () => {
    for (const umask of ['0277', '0000', '0022']) {
      const path = tmp.file();
      const r = await openInChild(path, { size: '1MB' }, [['set', 'a', 1]], { env: { TEST_UMASK: umask } });
      expect(r.ok).toBe(true);
      expect(statSync(path).mode & 0o7777).toBe(0o600);
    }
  });

  test('owned by the effective uid, blocks reserved up front', () => {
    const path = makeSegment('4MB');
    const st = statSync(path);
    expect(st.uid).toBe(process.geteuid!());
    expect(st.size).toBe(4 * MB);
    expect(st.blocks * 512).toBeGreaterThanOrEqual(4 * MB);
  });

  test('an existing segment keeps its own size', () => {
    const path = makeSegment('2MB');
    const c = new Cache({ path, size: '8MB', stamp: false });
    expect(c.open().capacity).toBe(2 * MB);
    expect(c.get('k')).toBe('v');
    c.close();
    expect(statSync(path).size).toBe(2 * MB);
  });

  test('an empty file counts as new', () => {
    const path = tmp.file();
    writeFileSync(path, '', { mode: 0o600 });
    const c = new Cache({ path, size: '1MB', stamp: false });
    c.set('a', 'b');
    expect(c.get('a')).toBe('b');
    c.close();
    expect(statSync(path).size).toBe(MB);
  });

  test('a creation that died after its "being created" magic is finished, never shrunk', () => {
    const path = tmp.file();
    const bytes = Buffer.alloc(2 * MB);
    bytes.write('SHMCINIT', 0, 'latin1');
    writeFileSync(path, bytes, { mode: 0o600 });
    const c = new Cache({ path, size: '1MB', stamp: false });
    c.set('a', 'b');
    expect(c.stats().size).toBe(2 * MB); // never shrunk
    c.close();
    expect(statSync(path).size).toBe(2 * MB);
    expect(readFileSync(path).subarray(0, 8).toString('latin1')).toBe('SHMCACHE');
  });

  test('a larger file than the segment is left at its size', () => {
    const path = makeSegment('1MB');
    truncateSync(path, 3 * MB);
    const c = new Cache({ path, size: '1MB', stamp: false });
    expect(c.get('k')).toBe('v');
    c.close();
    expect(statSync(path).size).toBe(3 * MB);
  });

  test('no file but the segment is made or touched: a lock directory beside it changes nothing', () => {
    const path = tmp.file();
    mkdirSync(path + '.lock'); // what the old creation lock left, or another user planted
    const c = new Cache({ path, size: '1MB', stamp: false });
    c.set('a', 1);
    expect(c.get('a')).toBe(1);
    c.close();
    const dir = join(path, '..');
    const name = path.slice(dir.length + 1);
    expect(readdirSync(dir).filter((f) => f.startsWith(name)).sort()).toEqual([name, `${name}.lock`]);
  });
});

describe('ERR_SHMCACHE_PERMISSION', () => {
  test('a symlink is refused and its target untouched', () => {
    const target = tmp.file('target');
    writeFileSync(target, 'precious', { mode: 0o600 });
    const link = tmp.file('link');
    symlinkSync(target, link);
    const e = openError(link);
    expect(e.code).toBe('ERR_SHMCACHE_PERMISSION');
    expect(e.message).toMatch(/is a symbolic link/);
    expect(readFileSync(target, 'utf8')).toBe('precious');
  });

  test('group or other bits are refused', () => {
    const path = makeSegment();
    chmodSync(path, 0o640);
    const e = openError(path);
    expect(e.code).toBe('ERR_SHMCACHE_PERMISSION');
    expect(e.message).toMatch(/mode 0640/);
    chmodSync(path, 0o604);
    expect(openError(path).code).toBe('ERR_SHMCACHE_PERMISSION');
  });

  test('something other than a regular file is refused', () => {
    const dir = join(tmp.dir, 'a-directory.shm');
    mkdirSync(dir, { mode: 0o700 });
    expect(openError(dir).code).toBe('ERR_SHMCACHE_PERMISSION');
    const fifo = join(tmp.dir, 'a-fifo.shm');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    expect(openError(fifo).code).toBe('ERR_SHMCACHE_PERMISSION');
  });

  test.runIf(isRoot)('a file owned by another uid is refused and untouched', () => {
    const path = makeSegment();
    const before = readFileSync(path);
    chownSync(path, 65534, 65534);
    const e = openError(path);
    expect(e.code).toBe('ERR_SHMCACHE_PERMISSION');
    expect(e.message).toMatch(/owned by uid 65534/);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  test.runIf(isRoot)('another uid cannot open a 0600 segment', async () => {
    chmodSync(tmp.dir, 0o711);
    const shared = join(tmp.dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const path = join(shared, 'root.shm');
    const c = new Cache({ path, size: '1MB', stamp: false });
    c.set('secret', 'root only');
    c.close();
    const r = await openInChild(path, { size: '1MB', stamp: false }, [['get', 'secret']], {
      env: { TEST_DROP_TO: '65534:65534' },
    });
    expect(r).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_PERMISSION' });
    expect(r.message).toMatch(/owned by uid 0, not by this process's uid 65534/);
  });
});

describe('ERR_SHMCACHE_NOT_A_SEGMENT', () => {
  test('a file of random bytes is never overwritten', () => {
    const path = tmp.file();
    const data = randomBytes(2 * MB);
    writeFileSync(path, data, { mode: 0o600 });
    const e = openError(path);
    expect(e.code).toBe('ERR_SHMCACHE_NOT_A_SEGMENT');
    expect(readFileSync(path).equals(data)).toBe(true);
  });

  test('a short text file is never overwritten', () => {
    const path = tmp.file();
    writeFileSync(path, 'hello\n', { mode: 0o600 });
    expect(openError(path).code).toBe('ERR_SHMCACHE_NOT_A_SEGMENT');
    expect(readFileSync(path, 'utf8')).toBe('hello\n');
  });

  test('a small file of zeros is not taken for an interrupted creation', () => {
    const path = tmp.file();
    writeFileSync(path, Buffer.alloc(4096), { mode: 0o600 });
    expect(openError(path).code).toBe('ERR_SHMCACHE_NOT_A_SEGMENT');
    expect(statSync(path).size).toBe(4096);
  });
});

describe('ERR_SHMCACHE_CORRUPT', () => {
  test('a damaged header field fails its checksum', () => {
    const path = makeSegment();
    poke(path, 40, Buffer.from([0xff]));
    const e = openError(path);
    expect(e.code).toBe('ERR_SHMCACHE_CORRUPT');
    expect(e.message).toMatch(/checksum/);
  });

  test('random bytes over the header after the magic', () => {
    for (let i = 0; i < 10; i++) {
      const path = makeSegment();
      poke(path, 8 + (i % 4) * 16, randomBytes(96));
      expect(openError(path).code).toBe('ERR_SHMCACHE_CORRUPT');
    }
  });

  test('another format version', () => {
    const path = makeSegment();
    poke(path, 8, Buffer.from([99, 0, 0, 0]));
    const e = openError(path);
    expect(e.code).toBe('ERR_SHMCACHE_CORRUPT');
    expect(e.message).toMatch(/format version 99/);
  });

  test('a format-5 segment (lock words without the holder namespace mark, which its builds would read as a dead TID) is refused', () => {
    const path = makeSegment();
    poke(path, 8, Buffer.from([5, 0, 0, 0]));
    const e = openError(path);
    expect(e.code).toBe('ERR_SHMCACHE_CORRUPT');
    expect(e.message).toMatch(/format version 5, this build reads version 6/);
  });

  test('a segment truncated below its size', () => {
    const path = makeSegment('2MB');
    truncateSync(path, MB);
    const e = openError(path);
    expect(e.code).toBe('ERR_SHMCACHE_CORRUPT');
    expect(e.message).toMatch(/shorter/);
    expect(statSync(path).size).toBe(MB);
  });
});

describe('readOnly: true, how tools look at a cache', () => {
  test('reads work, nothing in the file changes (no slot, no hint, no lock, no repair), writes are PERMISSION', () => {
    const path = makeSegment();
    const rw = new Cache({ path, size: '1MB', stamp: false });
    for (let i = 0; i < 200; i++) rw.set(`k${i}`, `v${i}`);
    rw.close();
    const bucketsOff = 4096 + 16 * 128; // the first shard's first bucket head
    poke(path, bucketsOff, Buffer.from([0xff, 0xff, 0xff, 0x7f])); // damage a chain
    const before = readFileSync(path);
    const ro = new Cache({ path, readOnly: true });
    let seen = 0;
    for (let i = 0; i < 200; i++) if (ro.get(`k${i}`) === `v${i}`) seen++;
    expect(seen).toBeGreaterThan(100);
    ro.has('k1');
    ro.keys();
    expect([...ro.entries()].length).toBeGreaterThan(100);
    ro.stats();
    expect(ro.verify().ok).toBe(false); // reported, not repaired
    try {
      ro.set('k1', 'x');
      throw new Error('a write through a read-only handle did not throw');
    } catch (e) {
      expect(e).toMatchObject({ code: 'ERR_SHMCACHE_PERMISSION', errno: 30 });
    }
    ro.close();
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  test('a file lock held by another process does not make it wait', async () => {
    const path = makeSegment();
    const holder = await holdFlock(path);
    try {
      const r = await openInChild(path, { readOnly: true }, [['get', 'k']], { env: { SHMCACHE_LOCK_TIMEOUT_MS: '20000' } });
      expect(r).toMatchObject({ ok: true, results: ['v'] });
      expect(r.elapsedMs).toBeLessThan(10_000); // not the 20 s lock wait
    } finally {
      holder.kill('SIGKILL');
    }
  });

  test('a missing or never-initialized file is NOT_FOUND and nothing is made; create: true with it is an option error', () => {
    const path = tmp.file();
    expect(code(() => new Cache({ path, readOnly: true }).open())).toBe('ERR_SHMCACHE_NOT_FOUND');
    expect(existsSync(path)).toBe(false);
    writeFileSync(path, '', { mode: 0o600 });
    expect(code(() => new Cache({ path, readOnly: true }).open())).toBe('ERR_SHMCACHE_NOT_FOUND');
    expect(statSync(path).size).toBe(0);
    expect(code(() => new Cache({ path, readOnly: true, create: true }))).toBe('ERR_SHMCACHE_INVALID_OPTION');
  });
});

describe('a segment with holes', () => {
  test('is refused (its blocks were released: touching its pages would allocate memory), and left as it was', () => {
    const path = makeSegment('2MB');
    execFileSync('fallocate', ['--punch-hole', '--offset', String(MB), '--length', String(MB), path]);
    const before = statSync(path);
    for (const options of [{ readOnly: true }, { stamp: false as const }]) {
      const e = openError(path, options);
      expect(e.code).toBe('ERR_SHMCACHE_CORRUPT');
      expect(e.message).toMatch(/has holes/);
    }
    expect(statSync(path).blocks).toBe(before.blocks);
  });
});

describe('two first openers of a new file', () => {
  /** Runs open.mjs with its fchmod (the creator's step between O_EXCL and the file lock) held up by strace. */
  function slowCreator(path: string, options: Record<string, unknown>, ops: unknown[][]) {
    const child = spawn(
      'strace',
      ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=fchmod', '-e', 'inject=fchmod:delay_exit=1500000', process.execPath, join(__dirname, 'fixtures', 'open.mjs'), path, JSON.stringify(options), JSON.stringify(ops)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const done = new Promise<any>((resolve) => child.on('close', () => resolve(JSON.parse(out.trim().split('\n').pop()!))));
    return { child, done };
  }

  test('the creator finds the file initialized by the other under the lock: it attaches, nothing is lost', async () => {
    const path = tmp.file('race');
    const a = slowCreator(path, { size: '1MB', stamp: false }, [['set', 'a', 'from A'], ['get', 'b']]);
    await waitUntil(() => existsSync(path), 10_000, 'the slow creator to create the file');
    const b = new Cache({ path, size: '1MB', stamp: false });
    b.set('b', 'from B'); // B wins the lock and initializes while A waits in fchmod
    const r = await a.done;
    expect(r).toMatchObject({ ok: true, results: [null, 'from B'] });
    expect(b.get('b')).toBe('from B');
    expect(b.get('a')).toBe('from A');
    b.close();
  });

  test.runIf(isRoot)('a creator that then fails (no space) never unlinks the file the other initialized', async () => {
    const mnt = join(tmp.dir, 'race-fs');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
    try {
      const path = join(mnt, 'site.shm');
      const a = slowCreator(path, { size: '64MB', stamp: false }, [['get', 'b']]);
      await waitUntil(() => existsSync(path), 10_000, 'the slow creator to create the file');
      const b = new Cache({ path, size: '1MB', stamp: false });
      b.set('b', 'from B');
      const r = await a.done;
      expect(r).toMatchObject({ ok: true, results: ['from B'] });
      expect(statSync(path).size).toBe(MB);
      const again = new Cache({ path, size: '1MB', stamp: false, create: false });
      expect(again.get('b')).toBe('from B');
      again.close();
      b.close();
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});

describe.runIf(isRoot)('a segment on a read-only mount', () => {
  const mnt = tmpfsFor(tmp.dir, 'ro-fs', '4m');

  test('attaches read-only: reads work, writes are PERMISSION (EROFS), nothing in the file changes', async () => {
    const path = join(mnt, 'site.shm');
    const c = new Cache({ path, size: '1MB', stamp: false });
    for (let i = 0; i < 50; i++) c.set(`k${i}`, `v${i}`);
    c.set('n', 7);
    c.close();
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    try {
      const before = readFileSync(path);
      // Default options: a newer process group, which must not try to reset.
      const r = await openInChild(path, {}, [['get', 'k3'], ['has', 'k4'], ['get', 'n'], ['get', 'missing'], ['keys', 'n']]);
      expect(r).toMatchObject({ ok: true, results: ['v3', true, 7, null, ['n']] });
      const ro = new Cache({ path, size: '1MB' });
      expect(ro.get('k1')).toBe('v1');
      for (const write of [() => ro.set('k1', 'x'), () => ro.delete('k1'), () => ro.incr('n'), () => ro.clear()]) {
        try {
          write();
          throw new Error('a write to a read-only segment did not throw');
        } catch (e) {
          expect(e).toMatchObject({ code: 'ERR_SHMCACHE_PERMISSION', errno: 30 });
        }
      }
      expect(ro.get('k1')).toBe('v1');
      expect(ro.verify().ok).toBe(true);
      ro.close();
      expect(readFileSync(path).equals(before)).toBe(true);
    } finally {
      execFileSync('mount', ['-o', 'remount,rw', mnt]);
    }
  });
});

describe('a segment from another boot', () => {
  const SHARDS_OFF = 4096; // the first shard's mutex; its lock word is its first int
  const BOOT_ID_OFF = 304;
  const bootId = () => Buffer.from(readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim().replace(/-/g, ''), 'hex');

  test('gets new locks at open: a lock word naming a thread of that boot blocks nothing, and the boot id is ours again', () => {
    const path = makeSegment();
    expect(readFileSync(path).subarray(BOOT_ID_OFF, BOOT_ID_OFF + 16).equals(bootId())).toBe(true);
    poke(path, BOOT_ID_OFF, randomBytes(16)); // as if made before a reboot
    poke(path, SHARDS_OFF, Buffer.from([0x39, 0x30, 0, 0])); // held by thread 12345 of that boot
    const c = new Cache({ path, size: '1MB', stamp: false }).open();
    const file = readFileSync(path);
    expect(file.readUInt32LE(SHARDS_OFF)).toBe(0);
    expect(file.subarray(BOOT_ID_OFF, BOOT_ID_OFF + 16).equals(bootId())).toBe(true);
    for (let i = 0; i < 64; i++) c.set(`k${i}`, i); // every shard, the first one too
    for (let i = 0; i < 64; i++) expect(c.get(`k${i}`)).toBe(i);
    expect(c.verify()).toEqual({ ok: true, problems: [] });
    c.close();
  });

  test('a boot id rewritten in a segment a live process uses renews nothing (its mutexes may be in use)', async () => {
    const path = makeSegment();
    const holder = spawn(process.execPath, [join(__dirname, 'fixtures', 'pg-holder.mjs'), path], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
      poke(path, BOOT_ID_OFF, randomBytes(16));
      poke(path, SHARDS_OFF, Buffer.from([0x39, 0x30, 0, 0]));
      const c = new Cache({ path, size: '1MB', stamp: false }).open();
      const file = readFileSync(path);
      expect(file.readUInt32LE(SHARDS_OFF), 'a mutex was re-initialized beside a live user').toBe(12345);
      expect(file.subarray(BOOT_ID_OFF, BOOT_ID_OFF + 16).equals(bootId())).toBe(true);
      c.close();
      poke(path, SHARDS_OFF, Buffer.alloc(4)); // leave the holder a sound lock
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

describe('a file cut short under a live mapping', () => {
  // The file's owner may truncate it while any process (a root tool, say)
  // has it mapped: touching a page past the new end would be a SIGBUS.
  for (const after of [0, 4096, 512 * 1024]) {
    test(`truncated to ${after} bytes: no signal, no wrong value, verify() says so`, async () => {
      const path = tmp.file('cut');
      const r = await runFixture('truncate-under.mjs', [path, String(after)]);
      expect(r.signal, r.stderr).toBeNull();
      expect(r.code, r.stderr).toBe(0);
      const report = r.messages[0];
      expect(report.wrong).toBe(0);
      for (const e of report.errors) expect(e).toMatch(/^ERR_SHMCACHE_/);
      if (report.verify) {
        expect(report.verify.ok).toBe(false);
        expect(report.verify.problems.join('\n')).toMatch(/truncated/);
      }
    });
  }
});

describe('ERR_SHMCACHE_IO and ERR_SHMCACHE_TIMEOUT', () => {
  test('a missing folder is NOT_FOUND and names the folder, not a lock', () => {
    const dir = join(tmp.dir, 'no', 'such');
    const e = openError(join(dir, 'dir.shm'));
    expect(e.code).toBe('ERR_SHMCACHE_NOT_FOUND');
    expect(e.errno).toBe(2);
    expect(e.message).toContain(`the folder '${dir}'`);
    expect(existsSync(join(tmp.dir, 'no'))).toBe(false);
  });

  test('a file lock held by a live process times out (ERR_SHMCACHE_TIMEOUT), and nothing changes', async () => {
    const path = makeSegment();
    const before = readFileSync(path);
    // util-linux flock(1) holds flock(LOCK_EX) on the segment, as a creator would.
    const holder = await holdFlock(path);
    try {
      const r = await openInChild(path, { size: '1MB' }, [['get', 'k']], { env: { SHMCACHE_LOCK_TIMEOUT_MS: '200' } });
      expect(r).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_TIMEOUT', syscall: 'flock' });
    } finally {
      holder.kill('SIGKILL');
    }
    expect(readFileSync(path).equals(before)).toBe(true);
  });
});

describe.runIf(isRoot)('ERR_SHMCACHE_NO_SPACE', () => {
  const mnt = tmpfsFor(tmp.dir, 'small-fs', '2m');

  test('a full file system fails at creation and the file is removed', () => {
    const path = join(mnt, 'big.shm');
    const e = openError(path, { size: '8MB' });
    expect(e.code).toBe('ERR_SHMCACHE_NO_SPACE');
    expect(e.errno).toBe(28);
    expect(e.syscall).toBe('posix_fallocate');
    expect(existsSync(path)).toBe(false);
    const ok = new Cache({ path, size: '1MB', stamp: false });
    ok.set('a', 1);
    expect(ok.get('a')).toBe(1);
    ok.close();
  });
});
