// What other local users and the file system can do to a tenant (DESIGN §1–§3),
// run for real: this process is root, the other uid is played by commands run
// through setpriv(1) with that uid. Each attack asserts the coded error and
// that the victim file is unchanged (by hash) or was never created.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { Cache, jail, tenantCache } from '../esm/index.mjs';
import { code, holdFlock, isRoot, runFixture, tempDir, waitUntil } from './helpers';

const tmp = tempDir('shmcache-neighbours-');
const MALLORY = 2101; // the other local user

/** Runs a command as MALLORY (uid and gid, no supplementary groups). */
function asMallory(cmd: string, ...args: string[]): string {
  return execFileSync('setpriv', ['--reuid', String(MALLORY), '--regid', String(MALLORY), '--clear-groups', cmd, ...args], {
    encoding: 'utf8',
  });
}

function hash(path: string): string {
  const st = statSync(path);
  return `${createHash('sha256').update(readFileSync(path)).digest('hex')} ${st.mode.toString(8)} ${st.uid} ${st.size}`;
}

/** A folder anyone may write, as /dev/shm and /tmp are (1777). */
let shared = '';
/** A folder only root may enter, holding a file only root may read. */
let rootOnly = '';
let secret = '';

beforeAll(() => {
  if (!isRoot) return;
  chmodSync(tmp.dir, 0o711);
  shared = join(tmp.dir, 'shared');
  mkdirSync(shared);
  chmodSync(shared, 0o1777);
  rootOnly = join(tmp.dir, 'root-only');
  mkdirSync(rootOnly, { mode: 0o700 });
  secret = join(rootOnly, 'some.conf');
  writeFileSync(secret, 'root: precious\n', { mode: 0o600 });
});

describe.runIf(isRoot)('another uid in a shared folder', () => {
  test('a planted <path>.lock.owner symlink: root opens the cache, the target is never written', () => {
    const before = hash(secret);
    const path = join(shared, 'site-1.shm');
    asMallory('ln', '-s', secret, `${path}.lock.owner`);
    asMallory('ln', '-s', secret, `${path}.lock`);
    const c = new Cache({ path, size: '1MB', stamp: false });
    c.set('k', 'v');
    expect(c.get('k')).toBe('v');
    c.close();
    expect(hash(secret)).toBe(before);
    expect(statSync(path).uid).toBe(0);
  });

  test('a symlink in a parent folder is never followed, and nothing is created behind it', () => {
    const home = join(shared, 'tenant-home');
    asMallory('mkdir', home);
    asMallory('ln', '-s', rootOnly, join(home, 'cache'));
    const before = readdirSync(rootOnly).sort();
    const c = tenantCache('site', { dir: join(home, 'cache'), size: '1MB', stamp: false });
    expect(code(() => c.open())).toBe('ERR_SHMCACHE_PERMISSION');
    // A missing folder below the link is not made through it either.
    const deeper = tenantCache('site', { dir: join(home, 'cache', 'sub'), size: '1MB', stamp: false });
    expect(code(() => deeper.open())).toBe('ERR_SHMCACHE_PERMISSION');
    // Nor a plain Cache whose path runs through the link.
    const plain = new Cache({ path: join(home, 'cache', 'site.shm'), size: '1MB', stamp: false });
    expect(code(() => plain.open())).toBe('ERR_SHMCACHE_PERMISSION');
    expect(readdirSync(rootOnly).sort()).toEqual(before);
  });

  test("another uid's file held under flock(LOCK_EX): PERMISSION at once, not a wait on the lock", async () => {
    const path = join(shared, 'site-2.shm');
    asMallory('sh', '-c', `umask 077; : > ${path}`);
    const before = hash(path);
    const holder = await holdFlock(path, ['setpriv', '--reuid', String(MALLORY), '--regid', String(MALLORY), '--clear-groups']);
    try {
      const started = Date.now();
      const r = await runFixture('open.mjs', [path, JSON.stringify({ size: '1MB', stamp: false }), JSON.stringify([['get', 'k']])], {
        env: { SHMCACHE_LOCK_TIMEOUT_MS: '20000' },
      });
      expect(r.messages[0]).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_PERMISSION' });
      expect(r.messages[0].message).toMatch(/owned by uid 2101/);
      // Refused before any lock was asked for: far less than the lock's 20 s.
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      holder.kill('SIGKILL');
    }
    expect(hash(path)).toBe(before);
  });

  test('a FIFO or a device where the segment should be is refused without being opened', () => {
    const fifo = join(shared, 'site-3.shm');
    asMallory('mkfifo', '-m', '600', fifo);
    // Opening a FIFO for reading would block until a writer came: refused first.
    expect(code(() => new Cache({ path: fifo, size: '1MB', stamp: false, create: false }).open())).toBe('ERR_SHMCACHE_PERMISSION');
    const dev = join(tmp.dir, 'site-4.shm');
    execFileSync('mknod', ['-m', '600', dev, 'c', '1', '3']); // /dev/null's numbers
    expect(code(() => new Cache({ path: dev, size: '1MB', stamp: false }).open())).toBe('ERR_SHMCACHE_PERMISSION');
    expect(statSync(dev).isCharacterDevice()).toBe(true);
  });

  test('a segment with a second hard link is refused, and left as it was', () => {
    const path = join(tmp.dir, 'site-5.shm');
    const c = new Cache({ path, size: '1MB', stamp: false });
    c.set('k', 'v');
    c.close();
    linkSync(path, join(tmp.dir, 'site-5-link.shm'));
    const before = hash(path);
    const again = new Cache({ path, size: '1MB', stamp: false });
    expect(code(() => again.open())).toBe('ERR_SHMCACHE_PERMISSION');
    expect(hash(path)).toBe(before);
  });

  test('a lock directory planted by another uid (mkdir X.shm.lock) blocks nobody', async () => {
    const path = join(shared, 'site-6.shm');
    asMallory('mkdir', `${path}.lock`);
    const r = await runFixture('open.mjs', [path, JSON.stringify({ size: '1MB', stamp: false }), JSON.stringify([['set', 'k', 1], ['get', 'k']])], {
      env: { SHMCACHE_LOCK_TIMEOUT_MS: '20000' },
    });
    expect(r.messages[0]).toMatchObject({ ok: true, results: [null, 1] });
  });

  test('another uid cannot open our segment, and cannot make us open theirs', async () => {
    const ours = join(shared, 'site-7.shm');
    const c = new Cache({ path: ours, size: '1MB', stamp: false });
    c.set('secret', 'root only');
    c.close();
    const before = hash(ours);
    const r = await runFixture('open.mjs', [ours, JSON.stringify({ size: '1MB', stamp: false }), JSON.stringify([['get', 'secret']])], {
      env: { TEST_DROP_TO: `${MALLORY}:${MALLORY}` },
    });
    expect(r.messages[0]).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_PERMISSION' });
    expect(hash(ours)).toBe(before);
    // Theirs: a valid segment of theirs, 0600, is still refused to root.
    const theirs = join(shared, 'site-8.shm');
    const made = await runFixture('open.mjs', [theirs, JSON.stringify({ size: '1MB', stamp: false }), JSON.stringify([['set', 'k', 'mallory']])], {
      env: { TEST_DROP_TO: `${MALLORY}:${MALLORY}` },
    });
    expect(made.messages[0]).toMatchObject({ ok: true });
    const theirsBefore = hash(theirs);
    expect(code(() => new Cache({ path: theirs, size: '1MB', stamp: false }).open())).toBe('ERR_SHMCACHE_PERMISSION');
    expect(hash(theirs)).toBe(theirsBefore);
  });
});

describe.runIf(isRoot)('folders another user can write', () => {
  test('a folder anyone may write without the sticky bit is refused: its files could be swapped', () => {
    const open = join(shared, 'wide-open');
    asMallory('mkdir', '-m', '0777', open);
    asMallory('chmod', '0777', open);
    const c = new Cache({ path: join(open, 'site.shm'), size: '1MB', stamp: false });
    expect(code(() => c.open())).toBe('ERR_SHMCACHE_PERMISSION');
    expect(readdirSync(open)).toEqual([]);
  });

  test("tenantCache() in a folder another uid owns (squatted before us) is refused, and nothing is made in it", () => {
    const squat = join(shared, 'squatted');
    asMallory('mkdir', '-m', '0755', squat);
    const c = tenantCache('site', { dir: squat, size: '1MB', stamp: false });
    expect(code(() => c.open())).toBe('ERR_SHMCACHE_PERMISSION');
    expect(readdirSync(squat)).toEqual([]);
  });

  test('the folder tenantCache() makes is 0700 through its own descriptor: a swapped-in link changes no mode', async () => {
    // The opener's mkdirat is held up 300 ms (strace); meanwhile Mallory, who
    // owns the parent, swaps the new folder for a link to a file of root's.
    const home = join(shared, 'race-home');
    asMallory('mkdir', home);
    const before = hash(secret);
    const swapper = spawn('setpriv', ['--reuid', String(MALLORY), '--regid', String(MALLORY), '--clear-groups', 'sh', '-c',
      `while :; do if [ -d ${home}/cache ] && [ ! -L ${home}/cache ]; then mv ${home}/cache ${home}/gone && ln -s ${secret} ${home}/cache && exit 0; fi; done`], { stdio: 'ignore' });
    try {
      const r = await new Promise<any>((resolve, reject) => {
        const child = spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=mkdirat,mkdir', '-e', 'inject=mkdirat:delay_exit=300000', process.execPath, join(__dirname, 'fixtures', 'tenant-open.mjs'), join(home, 'cache')], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        child.on('error', reject);
        child.on('close', () => resolve(JSON.parse(out.trim())));
      });
      await new Promise((resolve) => (swapper.exitCode !== null ? resolve(null) : swapper.once('exit', resolve)));
      expect(r).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_PERMISSION' });
    } finally {
      swapper.kill('SIGKILL');
    }
    expect(hash(secret)).toBe(before);
  });
});

describe.runIf(isRoot)('pid namespaces', () => {
  // A pid recorded by a process of another pid namespace names nothing here:
  // the segment cannot tell whether it lives, so it does not reset.
  async function holderIn(cmd: string[], path: string) {
    // The holder stores the value itself: what it stores is its group's.
    const child = spawn(cmd[0]!, [...cmd.slice(1), process.execPath, join(__dirname, 'fixtures', 'pg-holder.mjs'), path, 'kept'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    return child;
  }
  const newcomer = (cmd: string[], path: string) =>
    JSON.parse(execFileSync(cmd[0]!, [...cmd.slice(1), process.execPath, join(__dirname, 'fixtures', 'pg-worker.mjs'), path, JSON.stringify([['get', 'k']])], { encoding: 'utf8' }).trim().split('\n').pop()!);

  for (const [name, holderCmd, newcomerCmd] of [
    ['a holder in a container, a newcomer on the host', ['unshare', '-p', '-f', '--mount-proc', 'setsid'], ['setsid']],
    ['a holder on the host, a newcomer in a container', ['setsid'], ['unshare', '-p', '-f', '--mount-proc', 'setsid']],
  ] as const) {
    test(`${name}: no reset`, async () => {
      const path = tmp.file('pidns');
      const holder = await holderIn([...holderCmd], path);
      try {
        await new Promise((r) => setTimeout(r, 30)); // a later group start than the holder's
        const r = newcomer([...newcomerCmd], path);
        expect(r).toMatchObject({ results: ['kept'], stats: { resets: 0 } });
      } finally {
        // unshare and setsid fork: the holder is found by its segment path.
        execFileSync('pkill', ['-KILL', '-f', `pg-holder.mjs ${path}`]);
        holder.kill('SIGKILL');
      }
    });
  }
});

describe.runIf(isRoot)('hidden pids (hidepid=2)', () => {
  test("a cron job that cannot see the live master's /proc entry still counts it as alive: no reset", async () => {
    const dir = join(tmp.dir, 'hidepid');
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, MALLORY, MALLORY);
    const path = join(dir, 'app.shm');
    // The master: root, a process group of its own, alive throughout.
    const master = spawn(process.execPath, [join(__dirname, 'fixtures', 'pg-master.mjs')], { detached: true, stdio: ['pipe', 'pipe', 'inherit'] });
    const lines: any[] = [];
    master.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().trim().split('\n').map((l) => JSON.parse(l))));
    try {
      await waitUntil(() => lines.some((m) => m.msg?.ready));
      // Its worker runs as Mallory (the cache's owner) and stores a value.
      master.stdin!.write(JSON.stringify({ run: 'pg-worker-as.mjs', args: [`${MALLORY}:${MALLORY}`, path, JSON.stringify([['set', 'k', 'kept']])], tag: 'w' }) + '\n');
      await waitUntil(() => lines.some((m) => m.tag === 'w' && 'exit' in m.msg));
      await new Promise((r) => setTimeout(r, 30)); // a later group start
      // The cron job: Mallory, a new group, in a mount namespace whose /proc hides other users' processes.
      const out = execFileSync('unshare', ['-m', 'sh', '-c',
        `mount -t proc -o hidepid=2 proc /proc && exec setsid setpriv --reuid ${MALLORY} --regid ${MALLORY} --clear-groups ${process.execPath} ${join(__dirname, 'fixtures', 'pg-worker.mjs')} ${path} '[["get","k"]]'`], { encoding: 'utf8' });
      expect(JSON.parse(out.trim())).toMatchObject({ results: ['kept'], stats: { resets: 0 } });
    } finally {
      process.kill(-master.pid!, 'SIGKILL');
    }
  });
});

describe.runIf(isRoot)('files that are not segments are never written', () => {
  const cases: [string, (path: string) => void][] = [
    ['a 0600 file whose first 304 bytes are zero', (p) => writeFileSync(p, Buffer.concat([Buffer.alloc(304), Buffer.from('data after the zeros')]), { mode: 0o600 })],
    ['a file of zeros the size of a segment', (p) => writeFileSync(p, Buffer.alloc(2 * 1024 * 1024), { mode: 0o600 })],
    [
      'an ext4 image',
      (p) => {
        execFileSync('truncate', ['-s', '4M', p]);
        execFileSync('mkfs.ext4', ['-q', '-F', p]);
        chmodSync(p, 0o600);
      },
    ],
    [
      'an ISO-like file (zeros, then a volume descriptor at 32 KiB)',
      (p) => {
        const b = Buffer.alloc(64 * 1024);
        b.write('\x01CD001\x01', 32 * 1024, 'latin1');
        writeFileSync(p, b, { mode: 0o600 });
      },
    ],
  ];
  for (const [what, make] of cases) {
    test(`${what}: ERR_SHMCACHE_NOT_A_SEGMENT, bytes and size unchanged`, () => {
      const path = tmp.file('image');
      make(path);
      const before = hash(path);
      const c = new Cache({ path, size: '64MB', stamp: false });
      expect(code(() => c.open())).toBe('ERR_SHMCACHE_NOT_A_SEGMENT');
      expect(code(() => c.get('k'))).toBe('ERR_SHMCACHE_NOT_A_SEGMENT');
      expect(hash(path)).toBe(before);
    });
  }
});

describe.runIf(isRoot)('jail() ways out', () => {
  test('a root without a uid (or with uid 0) is refused before anything changes', async () => {
    for (const options of [{ root: tmp.dir }, { root: tmp.dir, gid: MALLORY }, { root: tmp.dir, uid: 0, gid: 0 }]) {
      const r = await runFixture('jail-probe.mjs', [JSON.stringify(options)]);
      expect(r.messages[0], JSON.stringify(options)).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_JAIL', cwd: process.cwd(), uid: 0 });
      expect(r.messages[0].message).toMatch(/needs a uid/);
    }
  });

  test('an open directory descriptor is refused, and listed; without it the same jail works', async () => {
    const root = join(tmp.dir, 'jail-root');
    mkdirSync(root, { recursive: true });
    const held = await runFixture('jail-probe.mjs', [JSON.stringify({ root, uid: MALLORY, gid: MALLORY }), rootOnly]);
    expect(held.messages[0]).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_JAIL', uid: 0 });
    expect(held.messages[0].message).toContain(`(${rootOnly})`);
    // A plain Node worker holds no directory descriptor of its own.
    const plain = await runFixture('jail-probe.mjs', [JSON.stringify({ root, uid: MALLORY, gid: MALLORY })]);
    expect(plain.messages[0]).toMatchObject({ ok: true, uid: MALLORY, cwd: '/' });
  });

  test('capabilities a non-root process held are gone after jail(): it cannot become root again', async () => {
    const root = join(tmp.dir, 'jail-caps');
    mkdirSync(root, { recursive: true });
    const caps = '+sys_chroot,+setuid,+setgid';
    const out = execFileSync('setpriv', ['--reuid', '2202', '--regid', '2202', '--clear-groups', '--inh-caps', caps, '--ambient-caps', caps,
      process.execPath, join(__dirname, 'fixtures', 'jail-probe.mjs'), JSON.stringify({ root, uid: MALLORY, gid: MALLORY })], { encoding: 'utf8' });
    const zero = '0000000000000000';
    expect(JSON.parse(out)).toMatchObject({ ok: true, uid: MALLORY, caps: { CapInh: zero, CapPrm: zero, CapEff: zero, CapAmb: zero } });
  });

  test('a procfs mounted inside the jail is refused (a way out through /proc/<pid>/root)', async () => {
    const root = join(tmp.dir, 'jail-proc');
    mkdirSync(join(root, 'proc'), { recursive: true });
    execFileSync('mount', ['-t', 'proc', 'proc', join(root, 'proc')]);
    try {
      const r = await runFixture('jail-probe.mjs', [JSON.stringify({ root, uid: MALLORY, gid: MALLORY })]);
      expect(r.messages[0]).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_JAIL', uid: 0 });
      expect(r.messages[0].message).toContain(join(root, 'proc'));
    } finally {
      execFileSync('umount', [join(root, 'proc')]);
    }
  });

  test('jail() from a worker thread is refused', async () => {
    const r = await runFixture('jail-probe.mjs', [JSON.stringify({ root: tmp.dir, uid: MALLORY, gid: MALLORY })], { env: { TEST_IN_WORKER: '1' } });
    expect(r.messages[0]).toMatchObject({ ok: false, code: 'ERR_SHMCACHE_JAIL', uid: 0 });
    expect(r.messages[0].message).toMatch(/main thread/);
  });

  test('jail() is refused in-process too, with the same code', () => {
    expect(code(() => jail({ root: '/nonexistent-root-without-uid' }))).toBe('ERR_SHMCACHE_JAIL');
    expect(existsSync('/nonexistent-root-without-uid')).toBe(false);
  });
});

describe.runIf(isRoot)('tenantCache() folders', () => {
  test('a missing folder is made 0700 at first use, not before', () => {
    const dir = join(tmp.dir, 'app', 'tenants');
    const c = tenantCache('site', { dir, size: '1MB', stamp: false });
    expect(existsSync(join(tmp.dir, 'app'))).toBe(false);
    c.set('k', 'v');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(tmp.dir, 'app')).mode & 0o777).toBe(0o700);
    c.close();
  });

  test('a folder a worker may not write, with its own file in it, attaches (no lock file needed)', async () => {
    const dir = join(tmp.dir, 'ro-folder');
    mkdirSync(dir, { mode: 0o755 });
    const path = join(dir, 'site.shm');
    const c = new Cache({ path, size: '1MB', stamp: false });
    c.set('k', 'from root');
    c.close();
    chownSync(path, MALLORY, MALLORY);
    const r = await runFixture('open.mjs', [path, JSON.stringify({ size: '1MB', stamp: false, create: false }), JSON.stringify([['get', 'k'], ['set', 'k', 'from worker'], ['get', 'k']])], {
      env: { TEST_DROP_TO: `${MALLORY}:${MALLORY}` },
    });
    expect(r.messages[0]).toMatchObject({ ok: true, results: ['from root', null, 'from worker'] });
    expect(readdirSync(dir)).toEqual(['site.shm']);
  });
});
