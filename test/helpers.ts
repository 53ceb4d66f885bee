import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { ShmCacheError } from '../esm/index.mjs';

export const isRoot = process.getuid?.() === 0;
export const fixtures = join(__dirname, 'fixtures');

/** A fresh folder (on tmpfs when there is one) removed after the file's tests. */
export function tempDir(prefix = 'shmcache-test-'): { dir: string; file(name?: string): string } {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, prefix));
  let n = 0;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, file: (name = 'cache') => join(dir, `${name}-${++n}.shm`) };
}

export interface FixtureResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  messages: any[];
  stderr: string;
}

/** Runs test/fixtures/<script> in a fresh node process; stdout lines are JSON messages. */
export function runFixture(
  script: string,
  args: string[] = [],
  options: SpawnOptions & { timeoutMs?: number } = {},
): Promise<FixtureResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(fixtures, script), ...args], {
      ...options,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`fixture ${script} timed out; stderr: ${err}`));
    }, options.timeoutMs ?? 50_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const messages = out
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l));
      resolve({ code, signal, messages, stderr: err });
    });
  });
}

/** Runs fixtures/open.mjs: opens a cache and applies `ops`, reporting results or the error. */
export async function openInChild(
  path: string,
  cacheOptions: Record<string, unknown> = {},
  ops: unknown[][] = [],
  options: SpawnOptions & { timeoutMs?: number } = {},
): Promise<any> {
  const r = await runFixture('open.mjs', [path, JSON.stringify(cacheOptions), JSON.stringify(ops)], options);
  if (r.messages.length !== 1) throw new Error(`open.mjs said ${JSON.stringify(r.messages)}; stderr: ${r.stderr}`);
  return r.messages[0];
}

/** The ShmCacheError code `fn` throws (fails if it throws anything else, or nothing). */
export function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ShmCacheError);
    return (e as ShmCacheError).code;
  }
  throw new Error('did not throw');
}

/** Checks and closes every handle in `handles`, emptying it (for afterEach). */
export function verifyAndClose(handles: { isOpen: boolean; verify(): unknown; close(): void }[]): void {
  for (const c of handles.splice(0)) {
    if (c.isOpen) expect(c.verify()).toEqual({ ok: true, problems: [] });
    c.close();
  }
}

/** Resolves once `check()` is true, polling every few ms; fails after `timeoutMs`. */
export async function waitUntil(check: () => boolean, timeoutMs = 10_000, what = 'a condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Runs flock(1) holding flock(LOCK_EX) on `path` (as `cmd` prefixes it, e.g.
 * setpriv as another user) and resolves once the lock is held; the returned
 * child holds it until killed.
 */
export async function holdFlock(path: string, prefix: string[] = []): Promise<ChildProcess> {
  const argv = [...prefix, 'flock', '-x', path, 'sleep', '60'];
  const holder = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
  await waitUntil(() => {
    try {
      execFileSync('flock', ['-n', '-x', path, 'true']);
      return false;
    } catch {
      return true; // held
    }
  }, 10_000, `flock on ${path}`);
  return holder;
}

/** A tmpfs of `size` mounted at `<dir>/<name>` for the calling describe block (root only). */
export function tmpfsFor(dir: string, name: string, size: string): string {
  const mnt = join(dir, name);
  beforeAll(() => {
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt]);
  });
  afterAll(() => {
    execFileSync('umount', [mnt]);
  });
  return mnt;
}

// Values with exponentially many paths through few nodes: 6 levels of 60
// keys that all name the level below (60^6 paths to { leaf: 1 }), and 7
// levels of Array(50).fill() of the level below (50^7 paths to [1]).
export function sharedShapes(): { dag: any; arrays: any } {
  let dag: any = { leaf: 1 };
  for (let l = 0; l < 6; l++) {
    const o: any = {};
    for (let i = 0; i < 60; i++) o['k' + i] = dag;
    dag = o;
  }
  let arrays: any = [1];
  for (let l = 0; l < 7; l++) arrays = Array(50).fill(arrays);
  return { dag, arrays };
}
