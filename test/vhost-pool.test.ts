import { chmodSync, chownSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
// @ts-expect-error: the example is plain JavaScript
import { Supervisor } from '../examples/vhost-pool/supervisor.mjs';
import { isRoot, tempDir } from './helpers';

const tmp = tempDir();

function makeJail(name: string, uid: number): string {
  chmodSync(tmp.dir, 0o755);
  const root = join(tmp.dir, name);
  mkdirSync(join(root, 'var', 'cache'), { recursive: true });
  chownSync(join(root, 'var', 'cache'), uid, uid);
  chmodSync(join(root, 'var', 'cache'), 0o755);
  return root;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function call(port: number, path: string): Promise<any> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return res.json();
}

async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.runIf(isRoot)('examples/vhost-pool: per-tenant pools of jailed workers', () => {
  const supervisor = new Supervisor();
  afterAll(() => supervisor.stopAll());

  test('stopping tenant A leaves tenant B serving; crashed workers come back with the cache warm', async () => {
    const rootA = makeJail('site-a', 2201);
    const rootB = makeJail('site-b', 2202);
    const portA = await supervisor.startTenant({ name: 'site-a', root: rootA, uid: 2201, gid: 2201, workers: 2 });
    const portB = await supervisor.startTenant({ name: 'site-b', root: rootB, uid: 2202, gid: 2202, workers: 2 });
    const pidsA: number[] = supervisor.pids('site-a');
    const pidsB: number[] = supervisor.pids('site-b');
    expect(pidsA).toHaveLength(2);
    expect(pidsB).toHaveLength(2);

    // The same key on both sites: each has its own cache.
    await call(portA, '/set?key=greeting&value=hello-from-a');
    await call(portB, '/set?key=greeting&value=hello-from-b');
    for (let i = 0; i < 10; i++) {
      expect((await call(portA, '/get?key=greeting')).value).toBe('hello-from-a');
      expect((await call(portB, '/get?key=greeting')).value).toBe('hello-from-b');
    }
    const statsB = await call(portB, '/stats');
    expect(statsB).toMatchObject({ path: '/var/cache/site-b.shm', uid: 2202 });
    for (const [root, uid, name] of [[rootA, 2201, 'site-a'], [rootB, 2202, 'site-b']] as const) {
      const st = statSync(join(root, 'var', 'cache', `${name}.shm`));
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.uid).toBe(uid);
    }

    // A crashed worker of B is restarted, and finds B's cache warm.
    process.kill(pidsB[0]!, 'SIGKILL');
    await until(() => supervisor.pids('site-b').length === 2 && !supervisor.pids('site-b').includes(pidsB[0]), 'a restarted worker');
    for (let i = 0; i < 10; i++) expect((await call(portB, '/get?key=greeting')).value).toBe('hello-from-b');

    // Stopping A touches only A's processes.
    const liveB: number[] = supervisor.pids('site-b');
    await supervisor.stopTenant('site-a');
    for (const pid of pidsA) expect(alive(pid)).toBe(false);
    for (const pid of liveB) expect(alive(pid)).toBe(true);
    await expect(call(portA, '/get?key=greeting')).rejects.toThrow();
    for (let i = 0; i < 10; i++) expect((await call(portB, '/incr?key=hits')).value).toBe(i + 1);

    // Restarting A brings it back on its port with its cache warm.
    const again = await supervisor.startTenant({ name: 'site-a', root: rootA, uid: 2201, gid: 2201, workers: 1, port: portA });
    expect(again).toBe(portA);
    expect((await call(portA, '/get?key=greeting')).value).toBe('hello-from-a');
  });
});
