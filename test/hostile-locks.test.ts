// Attacks on the shard lock (native/lock.cc), the chain walks' cycle guard,
// read-only handles, hole refusal and the SIGBUS handler: each test is the
// reproducer of a finding, or pins down a behaviour that was attacked and
// held (see the comments). Processes that hold a lock are real handles,
// stopped with SIGSTOP inside the shard lock.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { Cache } from '../esm/index.mjs';
// @ts-expect-error: a plain .mjs fixture
import { parseLayout } from './fixtures/hostile-lib.mjs';
import { code, fixtures, holdFlock, isRoot, tempDir, tmpfsFor } from './helpers';

const tmp = tempDir('shmcache-hostile-locks-');
const children: ChildProcess[] = [];
const pids: number[] = [];
afterEach(() => {
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  for (const c of children.splice(0)) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
});

const canUnshare = isRoot && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;

function segment(size = 64 << 20): { path: string; layout: any } {
  const path = tmp.file('seg');
  const c = new Cache({ path, size, stamp: false }).open();
  c.set('warm', 'up');
  c.close();
  const fd = openSync(path, 'r');
  const head = Buffer.alloc(4096);
  readSync(fd, head, 0, 4096, 0);
  closeSync(fd);
  return { path, layout: parseLayout(head) };
}

/** The first shard whose lock word is nonzero: [shard, word], or null. */
function heldWord(path: string, l: any): [number, number] | null {
  const fd = openSync(path, 'r');
  const b = Buffer.alloc(128 * l.nshards);
  readSync(fd, b, 0, b.length, l.shardsOff);
  closeSync(fd);
  for (let i = 0; i < l.nshards; i++) {
    const w = b.readUInt32LE(i * 128);
    if (w !== 0) return [i, w];
  }
  return null;
}

/**
 * Starts fixtures/hostile-locks-holder.mjs (an honest writer of big values
 * to `key`), in a pid namespace of its own when `ownPidNs`, and stops it
 * with SIGSTOP while it holds the shard lock. Returns its (global) pid.
 */
async function stoppedHolder(path: string, l: any, key: string, ownPidNs: boolean): Promise<number> {
  const argv = [process.execPath, join(fixtures, 'hostile-locks-holder.mjs'), path, key];
  // In the namespace, `sh` is its pid 1 and node a child of it (so that its
  // TID is a small number that names some other thread, or none, here).
  const child = ownPidNs
    ? spawn('unshare', ['--pid', '--fork', '--kill-child', '--mount-proc', 'sh', '-c', 'true; "$0" "$@"; true', ...argv], { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise((r) => child.stdout!.once('data', r));
  let pid = child.pid!;
  if (ownPidNs) {
    const sh = execFileSync('pgrep', ['-P', String(pid)]).toString().trim();
    pid = Number(execFileSync('pgrep', ['-P', sh]).toString().trim());
  }
  for (let i = 0; i < 1000; i++) {
    if (i === 0) pids.push(pid);
    process.kill(pid, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 5));
    if (heldWord(path, l) !== null) return pid;
    process.kill(pid, 'SIGCONT');
    await new Promise((r) => setTimeout(r, 1 + (i % 3)));
  }
  throw new Error('never caught the holder inside the lock');
}

describe('the shard lock', () => {
  // Finding 1 (fixed in native/lock.cc): a TID is a number in its thread's
  // pid namespace. A handle in a container (its own pid namespace) sharing
  // the file held a shard lock; a process of the host namespace read the
  // TID as one of its own threads (none, or one that does not map the
  // file), declared the live holder dead after 0 ms and took the lock over:
  // two writers inside one shard at once. Now the holder tags the record
  // with its pid namespace and a holder of another namespace is waited for.
  test.runIf(canUnshare)('a live holder in another pid namespace is waited for, not taken over', async () => {
    const { path, layout } = segment();
    const pid = await stoppedHolder(path, layout, 'hot', true);
    const before = heldWord(path, layout)!;
    const c = new Cache({ path, create: false, stamp: false }).open();
    const t0 = performance.now();
    expect(code(() => c.set('hot', 'second writer'))).toBe('ERR_SHMCACHE_TIMEOUT');
    expect(performance.now() - t0).toBeGreaterThan(1500);
    // The holder still holds it, and its shard was not dropped under it.
    expect(heldWord(path, layout)![1] & 0x3fffffff).toBe(before[1] & 0x3fffffff);
    expect(c.stats().repairs).toBe(0);
    process.kill(pid, 'SIGCONT');
    c.close();
  }, 20_000);

  // The same in one namespace (what held before): the control case.
  test('a live holder of this namespace is waited for, then ERR_SHMCACHE_TIMEOUT', async () => {
    const { path, layout } = segment();
    const pid = await stoppedHolder(path, layout, 'hot', false);
    const c = new Cache({ path, create: false, stamp: false }).open();
    const t0 = performance.now();
    expect(code(() => c.set('hot', 'second writer'))).toBe('ERR_SHMCACHE_TIMEOUT');
    const ms = performance.now() - t0;
    expect(ms).toBeGreaterThan(1500);
    expect(ms).toBeLessThan(3500);
    process.kill(pid, 'SIGCONT');
    c.close();
  }, 20_000);
});

/** Runs a fixture to its end: exit code, signal, its last stdout line parsed. */
function run(script: string, args: string[], timeoutMs = 30_000): Promise<{ code: number | null; signal: string | null; out: any; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(fixtures, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      let parsed: any = null;
      try {
        parsed = JSON.parse(last);
      } catch {}
      resolve({ code, signal, out: parsed, stderr: stderr.slice(0, 2000) });
    });
  });
}

describe('lock words rewritten all the time', () => {
  // Attacked and held: a hostile handle rewrites every shard's lock word in
  // a tight loop (its own live pid, dead and foreign TIDs, 0 and the
  // waiters bit alone, FUTEX_OWNER_DIED over anything, 0x7fffffff, -1,
  // random words) while two honest workers, both taking dead owners' locks
  // over at once, run the hostile workload: no signal, no value that was
  // not written for its key, errors only ShmCacheErrors, no operation
  // stuck (the fixture's workload rounds are timed: a round of ~600
  // operations, each waiting at most ~2 s for a live holder).
  for (const mode of ['mix', 'dead', 'flags', 'zero']) {
    test(`mode ${mode}`, async () => {
      const path = tmp.file(`flip-${mode}`);
      new Cache({ path, size: 8 << 20, stamp: false }).open().close();
      const [flipper, ...workers] = await Promise.all([
        run('hostile-locks-flipper.mjs', [path, mode, '3000']),
        run('hostile-locks-worker.mjs', [path, '4000', '1']),
        run('hostile-locks-worker.mjs', [path, '4000', '2']),
      ]);
      expect(flipper.code, flipper.stderr).toBe(0);
      for (const w of workers) {
        expect({ code: w.code, signal: w.signal, stderr: w.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
        expect(w.out.bad).toEqual([]);
        expect(Object.keys(w.out.errors).filter((k) => k !== 'ERR_SHMCACHE_TIMEOUT' && k !== 'ERR_SHMCACHE_CORRUPT')).toEqual([]);
        expect(w.out.rounds).toBeGreaterThan(1);
      }
      // Nobody names a live holder here: dead owners cost a slice at most.
      if (mode !== 'mix') for (const w of workers) expect(w.out.errors.ERR_SHMCACHE_TIMEOUT ?? 0).toBe(0);
    }, 30_000);
  }
});

describe('long chains and loops (CycleGuard)', () => {
  /** fixtures/hostile-locks-chain.mjs on a fresh 64 MB segment: its report. */
  async function chain(n: number, loop: number, ops: string[], env: Record<string, string> = {}): Promise<any> {
    const path = tmp.file('chain');
    new Cache({ path, size: 64 << 20, stamp: false }).open().close();
    const r = await new Promise<any>((resolve) => {
      const child = spawn(process.execPath, [join(fixtures, 'hostile-locks-chain.mjs'), path, 'target', String(n), String(loop), JSON.stringify(ops)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      children.push(child);
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('close', (code, signal) => resolve({ code, signal, err, report: out.trim() ? JSON.parse(out.trim().split('\n').pop()!) : null }));
    });
    rmSync(path, { force: true });
    expect({ code: r.code, signal: r.signal, err: r.err }).toEqual({ code: 0, signal: null, err: '' });
    return r.report;
  }

  // Attacked and held: 2^20 distinct valid-looking entries in one chain (48
  // MB of a 64 MB segment), the key at its end. The guard does not misfire
  // on a chain that long (the key is found, nothing is dropped), and a walk
  // is linear: ~10-30 ms for 2^20 steps (measured on 2 cores).
  test('a chain of 2^20 distinct entries: found at its end, nothing dropped, linear walks', async () => {
    const r = await chain(1 << 20, 0, ['get', 'has', 'getMany', 'repairs']);
    expect(r.results['0:get']).toBe('end of the chain');
    expect(r.results['1:has']).toBe(true);
    expect(r.results['3:repairs']).toBe(0);
    expect(r.ms['0:get']).toBeLessThan(500);
    expect(r.ms['1:has']).toBeLessThan(500);
  }, 60_000);

  // Finding 2 (fixed in native/table.cc, VerifyShard): verify() listed every
  // damaged entry of a chain, and went on walking it. A hostile chain of
  // 2^20 entries whose hash fields do not match their keys made verify() of
  // a 64 MB segment return 2,097,152 problem strings in 11 s with 770 MB of
  // memory (a root tool verifying a tenant's 16 GiB file would be OOM-killed:
  // one such chain per bucket). Now one problem per chain, the shard dropped.
  test('verify() of a shard holding a 2^20-entry damaged chain reports one problem, fast', async () => {
    const r = await chain(1 << 20, 0, ['verify', 'get', 'repairs']);
    const v = r.results['0:verify'];
    expect(v.ok).toBe(false);
    expect(v.problems).toBeLessThan(10);
    expect(r.ms['0:verify']).toBeLessThan(2000);
    expect(r.results['2:repairs']).toBe(1);
  }, 60_000);

  // Finding 4: eviction unlinks each live entry of the evicted page by
  // walking its bucket's chain from the head. A hostile chain of 2^19 valid
  // entries whose oldest pages' entries sit at its end made each page
  // eviction walk ~680 entries x 2^19 steps: one set() took 15.8 s under the
  // shard lock (4894 sets in 60 s), and every other process's write to the
  // shard timed out meanwhile. EvictSpan now has a step budget (a base plus
  // 64 per entry the span can hold); past it the shard is dropped as damaged.
  test('eviction under a 2^19-entry chain whose oldest entries are last: no set takes seconds', async () => {
    const r = await chain(1 << 19, 0, ['fill', 'repairs'], { CHAIN_REVERSE: '1', FILL_N: '16000', FILL_MS: '12000' });
    expect(r.results['0:fill'].worstMs).toBeLessThan(2000);
    expect(r.results['1:repairs']).toBeGreaterThanOrEqual(1);
  }, 60_000);

  // Attacked and held: a loop of length 2, 3, 1000 or 2^19 entered after a
  // tail of ~2^20 entries. Every walk stops within about twice the tail and
  // loop (Brent): the first read costs ~100 ms (the lock-free walk, then the
  // locked one that drops the shard), later ones nothing; no operation
  // throws, verify() is clean afterwards.
  for (const loop of [2, 3, 1000, 1 << 19]) {
    test(`a loop of ${loop} after a long tail`, async () => {
      const r = await chain(1 << 20, loop, ['get', 'has', 'getMany', 'entries', 'keys', 'delete', 'set', 'get', 'verify', 'repairs']);
      expect(r.errors).toEqual({});
      expect(r.results['0:get']).toBeUndefined();
      expect(r.results['7:get']).toBe('again');
      expect(r.results['8:verify']).toEqual({ ok: true, problems: 0 });
      for (const [op, ms] of Object.entries(r.ms)) expect(ms, op).toBeLessThan(1000);
      expect(r.results['9:repairs']).toBe(1);
    }, 60_000);
  }
});

describe('readOnly handles', () => {
  // Attacked and held: every public method on a readOnly handle, while a
  // writer is stopped inside a shard lock (its sequence may be odd) and
  // another process holds the file's flock: the mapping is r--s (PROT_READ:
  // a write through it would be SIGSEGV), reads work or miss, nothing waits
  // (each method < 1 s), every write (set, add, delete, incr, decr, cas,
  // touch, setMany, deleteMany, clear, remember) throws
  // ERR_SHMCACHE_PERMISSION, and the file's bytes and mtime do not change.
  test('every method, with a writer stopped in a shard lock and the file lock held', async () => {
    const { path, layout } = segment();
    const c = new Cache({ path, create: false, stamp: false }).open();
    for (let i = 0; i < 200; i++) c.set(`k:${i}`, `v${i}`, { ttl: 100_000 });
    c.set('n:1', 5);
    c.close();
    const pid = await stoppedHolder(path, layout, 'hot', false);
    const flock = await holdFlock(path);
    children.push(flock);
    const before = readFileSync(path);
    const mtime = (await import('node:fs')).statSync(path).mtimeMs;
    const r = await run('hostile-locks-readonly.mjs', [path]);
    expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
    expect(r.out.maps).toEqual(['r--s']);
    expect(r.out.bad).toEqual([]);
    for (const m of ['set', 'add', 'delete', 'incr', 'decr', 'cas', 'touch', 'setMany', 'deleteMany', 'clear', 'remember'])
      expect(r.out.results[m], m).toBe('ERR_SHMCACHE_PERMISSION');
    expect(r.out.results.keys).toBeGreaterThan(150);
    // Compared while the writer is still stopped: once it runs on, its own
    // slot and shards change (the header and slots are compared only,
    // since it was stopped inside a shard's lock).
    expect((await import('node:fs')).statSync(path).mtimeMs).toBe(mtime);
    expect(readFileSync(path).subarray(0, layout.shardsOff).equals(before.subarray(0, layout.shardsOff))).toBe(true);
    process.kill(pid, 'SIGCONT');
  }, 30_000);

  // Attacked and held: each of the ~940 boundary mutations of
  // fixtures/hostile-lib.mjs on a full segment, attached readOnly, through
  // every reading method: no signal, only ShmCacheErrors (151 opens refused
  // ERR_SHMCACHE_CORRUPT), writes ERR_SHMCACHE_PERMISSION, no byte changed.
  test('every boundary mutation, attached readOnly', async () => {
    const template = tmp.file('ro-template');
    // @ts-expect-error: a plain .mjs fixture
    (await import('./fixtures/hostile-lib.mjs')).fill(template);
    const r = await run('hostile-locks-rofuzz.mjs', [template, tmp.dir], 90_000);
    expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
    expect(r.out.bad).toEqual([]);
    expect(r.out.changed).toEqual([]);
    expect(r.out.cases).toBeGreaterThan(300);
  }, 120_000);
});

describe('a dead holder whose TID was handed out again', () => {
  // Finding 3 (fixed in native/lock.cc): a writer killed inside a shard
  // lock leaves its TID in the word; when the kernel hands that number to a
  // thread of a new process that maps the file (a new worker), the waiter
  // saw a live thread that maps the file and waited: every write to the
  // shard threw ERR_SHMCACHE_TIMEOUT after 2 s, for as long as the new
  // worker lived. The holder now stamps the record with its thread's start
  // time, and a thread with another start time is not the holder.
  const canChoosePid = isRoot && (() => {
    try {
      readFileSync('/proc/sys/kernel/ns_last_pid');
      return true;
    } catch {
      return false;
    }
  })();
  test.runIf(canChoosePid)('the shard is recovered at once, not timed out', async () => {
    const { path } = segment(8 << 20);
    const lib = join(__dirname, '..', 'dist', 'index.js');
    let reused = false;
    // Other processes fork too: try until the new worker gets the dead TID.
    for (let attempt = 0; attempt < 20 && !reused; attempt++) {
      const dead = spawnSync(process.execPath, ['-e', `const { Cache } = require(${JSON.stringify(lib)}); new Cache({ path: ${JSON.stringify(path)}, create: false, stamp: false }).set('hot', 'x');`], { env: { ...process.env, SHMCACHE_CRASH_AT: 'locked' } });
      expect(dead.signal).toBe('SIGKILL');
      (await import('node:fs')).writeFileSync('/proc/sys/kernel/ns_last_pid', String(dead.pid - 1));
      const live = spawn(process.execPath, ['-e', `const { Cache } = require(${JSON.stringify(lib)}); globalThis.c = new Cache({ path: ${JSON.stringify(path)}, create: false, stamp: false }).open(); console.log('open'); setTimeout(() => {}, 60000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(live);
      await new Promise((r) => live.stdout!.once('data', r));
      if (live.pid !== dead.pid) {
        // Not reused: this attempt's lock is recovered by the next crash's set.
        live.kill('SIGKILL');
        continue;
      }
      reused = true;
      const c = new Cache({ path, create: false, stamp: false }).open();
      const t0 = performance.now();
      c.set('hot', 'after the reuse');
      expect(performance.now() - t0).toBeLessThan(500);
      expect(c.get('hot')).toBe('after the reuse');
      c.close();
    }
    expect(reused).toBe(true);
  }, 60_000);
});

describe('holes', () => {
  // Attacked: a legit segment copied with `cp --sparse=always` (or rsync -S)
  // has holes where its bytes are zero, and is refused like a punched one
  // (ERR_SHMCACHE_CORRUPT, by design: docs/design.md, test/segment.test.ts):
  // a false positive with no way out in the message. The message now says
  // how to reserve the blocks again; after `fallocate -l`, it opens intact.
  // (A plain `cp`, `cat >`, or a copy from ext4 keep every block: opened.)
  test('a sparse copy is refused with a remedy, which works', () => {
    const { path } = segment(8 << 20);
    const c = new Cache({ path, create: false, stamp: false }).open();
    for (let i = 0; i < 100; i++) c.set(`k${i}`, `v${i}`);
    c.close();
    const copy = tmp.file('sparse');
    execFileSync('cp', ['--sparse=always', path, copy]);
    chmodSync(copy, 0o600);
    let message = '';
    try {
      new Cache({ path: copy, create: false, stamp: false }).open();
    } catch (e: any) {
      expect(e.code).toBe('ERR_SHMCACHE_CORRUPT');
      message = e.message;
    }
    expect(message).toMatch(/has holes.*fallocate -l 8388608/);
    execFileSync('fallocate', ['-l', String(8 << 20), copy]);
    const d = new Cache({ path: copy, create: false, stamp: false }).open();
    expect(d.get('k5')).toBe('v5');
    expect(d.verify()).toEqual({ ok: true, problems: [] });
    d.close();
  });

  // Attacked and held: holes punched in the heap of a segment attached
  // read-write (MAP_POPULATE'd), once with room on the file system (the
  // pages come back as zeros: damage, every shard repaired, no wrong value)
  // and once on a file system filled up right after (the faults SIGBUS: the
  // pages are lost, the handle throws ERR_SHMCACHE_CORRUPT from then on).
  describe.runIf(isRoot)('punched while attached', () => {
    const mnt = tmpfsFor(tmp.dir, 'small', '10m');
    for (const full of [false, true]) {
      test(full ? 'on a file system filled up meanwhile' : 'with room left', async () => {
        const path = join(mnt, `p-${full}.shm`);
        const r = await run('hostile-locks-punch.mjs', [path, full ? join(mnt, 'filler') : '']);
        rmSync(path, { force: true });
        rmSync(join(mnt, 'filler'), { force: true });
        expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
        expect(r.out.bad).toBe(0);
        expect(r.out.other).toEqual([]);
        if (full) expect(r.out.codes.ERR_SHMCACHE_CORRUPT).toBeGreaterThan(0);
        else expect(r.out.repairs).toBeGreaterThan(0);
      }, 30_000);
    }
  });
});

describe('SIGBUS', () => {
  // Attacked and held: the file cut short (then extended again, so the lost
  // range is holes) while two worker threads read and write through their
  // own handles: no signal reaches node, no wrong value, those handles throw
  // ERR_SHMCACHE_CORRUPT from their first lost page on; a new opener
  // refuses the file (holes).
  test('truncated and extended again under reads in flight in other threads', async () => {
    const path = tmp.file('bus');
    const r = await run('hostile-locks-bus.mjs', ['threads', path]);
    expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
    for (const t of r.out.threads) {
      expect(t.wrong).toBe(0);
      expect(Object.keys(t.errors)).toEqual(['ERR_SHMCACHE_CORRUPT']);
    }
    expect(r.out.reopen).toBe('ERR_SHMCACHE_CORRUPT');
  }, 30_000);

  // Attacked and held: the handler's table has 16384 slots. The 16385th
  // mapping of a process is refused (ERR_SHMCACHE_IO, nothing mapped
  // unprotected); closing one makes room; a truncation then reaches the last
  // and the first handle as lost pages, not a signal. (~15 s: 16384 opens.)
  test('16385 mappings in one process', async () => {
    const path = tmp.file('many');
    const r = await run('hostile-locks-bus.mjs', ['many', path], 90_000);
    expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
    expect(r.out.refused).toMatchObject({ at: 16384, code: 'ERR_SHMCACHE_IO' });
    expect(r.out.again).toBe('ok');
  }, 120_000);
});
