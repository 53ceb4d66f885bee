import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, test } from 'vitest';
import { fixtures, tempDir, waitUntil } from './helpers';

const tmp = tempDir();
const groups: ChildProcess[] = [];
afterEach(() => {
  for (const m of groups.splice(0)) {
    try {
      process.kill(-m.pid!, 'SIGKILL'); // the whole process group
    } catch {}
  }
});

/** A master in a new process group (setsid), as a service manager starts one. */
class Master {
  child: ChildProcess;
  #waiters: { tag: string; test: (m: any) => boolean; resolve: (m: any) => void }[] = [];
  #seen: { tag: string; msg: any }[] = [];

  constructor(env: Record<string, string | undefined> = {}) {
    const e = { ...process.env, ...env };
    if (!('SHMCACHE_STAMP' in env)) delete e.SHMCACHE_STAMP;
    this.child = spawn(process.execPath, [join(fixtures, 'pg-master.mjs')], {
      detached: true,
      env: e,
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    groups.push(this.child);
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const m = JSON.parse(line);
      this.#seen.push(m);
      this.#waiters = this.#waiters.filter((w) => {
        if (w.tag === m.tag && w.test(m.msg)) {
          w.resolve(m.msg);
          return false;
        }
        return true;
      });
    });
  }

  next(tag: string, test: (m: any) => boolean = () => true): Promise<any> {
    const seen = this.#seen.find((m) => m.tag === tag && test(m.msg));
    if (seen) {
      this.#seen.splice(this.#seen.indexOf(seen), 1);
      return Promise.resolve(seen.msg);
    }
    return new Promise((resolve) => this.#waiters.push({ tag, test, resolve }));
  }

  ready(): Promise<any> {
    return this.next('master', (m) => m.ready);
  }

  run(tag: string, script: string, args: string[]): void {
    this.child.stdin!.write(JSON.stringify({ run: script, args, tag }) + '\n');
  }

  /** Forks a worker with default options and returns its report. */
  async worker(tag: string, path: string, ops: unknown[][]): Promise<any> {
    this.run(tag, 'pg-worker.mjs', [path, JSON.stringify(ops)]);
    return this.next(tag, (m) => 'results' in m);
  }
}

const tick = () => new Promise((r) => setTimeout(r, 30)); // > one clock tick of start times

/** Resolves when the process `pid` is gone (reaped or a zombie no longer running). */
async function gone(pid: number): Promise<void> {
  await waitUntil(() => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
    } catch {
      return true;
    }
  }, 10_000, `process ${pid} to exit`);
}

/** Kills a master's whole process group and waits until its processes are gone. */
async function killGroup(m: Master, pids: number[] = []): Promise<void> {
  process.kill(-m.child.pid!, 'SIGKILL');
  await Promise.all([m.child.pid!, ...pids].map(gone));
}

describe('default start-time stamps with real process groups', () => {
  test('workers of one master share the cache, and a worker the master restarts keeps it warm', async () => {
    const path = tmp.file();
    const a = new Master();
    await a.ready();
    const a1 = await a.worker('a1', path, [['set', 'k', 'from a1'], ['get', 'k']]);
    expect(a1.results).toEqual([null, 'from a1']);
    expect(a1.stats.resets).toBe(0);
    expect(a1.stats.stamp).toBeGreaterThan(0);
    const a2 = await a.worker('a2', path, [['get', 'k']]);
    expect(a2).toMatchObject({ results: ['from a1'], stats: { stamp: a1.stats.stamp, resets: 0 } });
  });

  test('an inspecting process (a new group) beside a live master resets nothing', async () => {
    const path = tmp.file();
    const a = new Master();
    await a.ready();
    const a1 = await a.worker('a1', path, [['set', 'k', 'kept']]);
    await tick();
    // A cron job, a REPL or an admin tool: a process group of its own, newer.
    const inspector = new Master();
    await inspector.ready();
    const seen = await inspector.worker('i', path, [['get', 'k']]);
    expect(seen).toMatchObject({ results: ['kept'], stats: { stamp: a1.stats.stamp, resets: 0 } });
    expect(await a.worker('a2', path, [['get', 'k']])).toMatchObject({ results: ['kept'], stats: { resets: 0 } });
  });

  test('a newer app attached to a live worker (its master gone) resets nothing', async () => {
    const path = tmp.file();
    const a = new Master();
    await a.ready();
    await a.worker('a1', path, [['set', 'k', 'kept']]);
    a.run('holder', 'pg-holder.mjs', [path]);
    const holder = await a.next('holder', (m) => m.open);
    // Only the master dies; its worker lives on with the segment open.
    process.kill(a.child.pid!, 'SIGKILL');
    await gone(a.child.pid!);
    await tick();
    const b = new Master();
    await b.ready();
    const b1 = await b.worker('b1', path, [['get', 'k']]);
    expect(b1).toMatchObject({ results: ['kept'], stats: { stamp: holder.stamp, resets: 0 } });
  });

  test('a master restarted after all its processes died resets once; the older group then attaches as it is', async () => {
    const path = tmp.file();
    const old = new Master(); // started first: the older stamp
    await old.ready();
    await tick();
    const a = new Master();
    await a.ready();
    const a1 = await a.worker('a1', path, [['set', 'k', 'from a1']]);
    a.run('holder', 'pg-holder.mjs', [path]);
    const holder = await a.next('holder', (m) => m.open);
    await killGroup(a, [holder.pid]);
    await tick();
    const b = new Master();
    await b.ready();
    const b1 = await b.worker('b1', path, [['get', 'k'], ['set', 'k', 'from b1']]);
    expect(b1.results).toEqual([null, null]);
    expect(b1.stats.resets).toBe(1);
    expect(b1.stats.stamp).toBeGreaterThan(a1.stats.stamp);
    // Once: the next worker of the same group keeps what b1 wrote.
    const b2 = await b.worker('b2', path, [['get', 'k']]);
    expect(b2).toMatchObject({ results: ['from b1'], stats: { stamp: b1.stats.stamp, resets: 1 } });
    // A group older than the segment's stamp attaches as it is: no ping-pong.
    const o = await old.worker('o', path, [['get', 'k']]);
    expect(o).toMatchObject({ results: ['from b1'], stats: { stamp: b1.stats.stamp, resets: 1 } });
  });

  test('SHMCACHE_STAMP overrides the process group', async () => {
    const path = tmp.file();
    const a = new Master();
    await a.ready();
    const a1 = await a.worker('a1', path, [['set', 'k', 'v']]);
    const older = new Master({ SHMCACHE_STAMP: '1' });
    await older.ready();
    expect(await older.worker('o', path, [['get', 'k']])).toMatchObject({ results: ['v'], stats: { stamp: a1.stats.stamp, resets: 0 } });
    const newer = new Master({ SHMCACHE_STAMP: String(a1.stats.stamp + 1) });
    await newer.ready();
    expect(await newer.worker('n', path, [['get', 'k']])).toMatchObject({ results: [null], stats: { stamp: a1.stats.stamp + 1, resets: 1 } });
  });

  test('an explicit-stamp reset while another process is mid-operation: it never crashes nor reads a pre-reset value', async () => {
    const path = tmp.file();
    const a = new Master();
    await a.ready();
    await a.worker('seed', path, [['set', 'k', 'old']]);
    a.run('reader', 'pg-reader.mjs', [path, '1500']);
    await a.next('reader', (m) => m.started);
    await tick();
    // An explicit stamp resets whenever it is newer, even beside live users.
    const b = new Master({ SHMCACHE_STAMP: String(Date.now() + 60_000) });
    await b.ready();
    const b1 = await b.worker('b1', path, [['get', 'k']]);
    expect(b1).toMatchObject({ results: [null], stats: { resets: 1 } });
    const report = await a.next('reader', (m) => 'reads' in m);
    expect(report.sawReset).toBe(true);
    expect(report.violations).toBe(0);
    expect(report.reads).toBeGreaterThan(1000);
    expect(await a.next('reader', (m) => 'exit' in m)).toEqual({ exit: 0, signal: null });
  });
});
