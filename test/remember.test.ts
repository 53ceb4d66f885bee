import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, test } from 'vitest';
import { Cache, ShmCacheError } from '../esm/index.mjs';
import { setClockOffsetForTesting } from '../dist/testing.js';
import { fixtures, tempDir } from './helpers';

const tmp = tempDir();
const children: ChildProcess[] = [];
afterEach(() => {
  setClockOffsetForTesting(0);
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

interface Rememberer {
  child: ChildProcess;
  events: any[];
  producing: Promise<void>;
  done: Promise<any>;
}

function rememberInChild(path: string, key: string, config: Record<string, unknown>): Rememberer {
  const child = spawn(process.execPath, [join(fixtures, 'remember-child.mjs'), path, key, JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const events: any[] = [];
  let onProducing!: () => void;
  let onDone!: (m: any) => void;
  const producing = new Promise<void>((r) => (onProducing = r));
  const done = new Promise<any>((r) => (onDone = r));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const m = JSON.parse(line);
    events.push(m);
    if (m.event === 'producing') onProducing();
    else onDone(m);
  });
  child.on('exit', (code, signal) => onDone({ event: 'exit', code, signal }));
  return { child, events, producing, done };
}

const produced = (rs: Rememberer[]) => rs.filter((r) => r.events.some((e) => e.event === 'producing')).length;

const CODECS = ['v8', 'msgpack'] as const;

describe.each(CODECS)('remember() across processes (codec %s)', (codec) => {
  const rememberIn = (path: string, key: string, config: Record<string, unknown>): Rememberer => rememberInChild(path, key, { codec, ...config });

  test.each(['async', 'sync'])('one %s producer across four processes; the others get its value', async (mode) => {
    const path = tmp.file();
    const rs = [0, 1, 2, 3].map((i) => rememberIn(path, 'k', { mode, delayMs: 400, value: `from ${i}` }));
    const results = await Promise.all(rs.map((r) => r.done));
    expect(produced(rs)).toBe(1);
    const values = new Set(results.map((r) => r.value));
    expect(results.every((r) => r.event === 'result')).toBe(true);
    expect(values.size).toBe(1);
    const c = new Cache({ path, stamp: false, codec });
    expect(c.get('k')).toBe([...values][0]);
    c.close();
  });

  test('an object value: one producer, every process gets it whole, another handle reads it', async () => {
    const path = tmp.file();
    const rs = [0, 1, 2, 3].map((i) => rememberIn(path, 'obj', { mode: 'async', delayMs: 300, value: { from: i, rows: [{ id: 1, name: 'a' }, { id: 2, name: 'b' }] }}));
    const results = await Promise.all(rs.map((r) => r.done));
    expect(produced(rs)).toBe(1);
    expect(results.every((r) => r.event === 'result')).toBe(true);
    const values = new Set(results.map((r) => JSON.stringify(r.value)));
    expect(values.size).toBe(1);
    const value = JSON.parse([...values][0]!);
    expect(value.rows).toEqual([{ id: 1, name: 'a' }, { id: 2, name: 'b' }]);
    for (const other of CODECS) {
      const c = new Cache({ path, stamp: false, codec: other });
      expect(c.get('obj'), `read with ${other}`).toEqual(value);
      c.close();
    }
  });

  test('a throwing producer stores nothing; its error goes to its own caller; a waiter takes over', async () => {
    const path = tmp.file();
    const a = rememberIn(path, 'k', { mode: 'throw', delayMs: 300 });
    await a.producing;
    const b = rememberIn(path, 'k', { mode: 'async', value: 'from a waiter' });
    const c = rememberIn(path, 'k', { mode: 'async', value: 'from a waiter' });
    const [ra, rb, rc] = await Promise.all([a.done, b.done, c.done]);
    expect(ra).toMatchObject({ event: 'error', message: 'boom from the producer' });
    expect(rb).toEqual({ event: 'result', value: 'from a waiter' });
    expect(rc).toEqual({ event: 'result', value: 'from a waiter' });
    expect(produced([b, c])).toBe(1);
  });

  test('a claimant killed mid-produce: a waiter takes the claim over well within wait', async () => {
    const path = tmp.file();
    const a = rememberIn(path, 'k', { mode: 'hang' });
    await a.producing;
    const b = rememberIn(path, 'k', { mode: 'async', value: 'after the crash', wait: 10_000 });
    await new Promise((r) => setTimeout(r, 200)); // b is waiting on a's claim
    expect(b.events).toEqual([]);
    const killed = Date.now();
    a.child.kill('SIGKILL');
    expect(await b.done).toEqual({ event: 'result', value: 'after the crash' });
    expect(Date.now() - killed).toBeLessThan(1000);
    expect(produced([b])).toBe(1);
  });

  test('TIMEOUT when the claimant is alive but does not finish within wait', async () => {
    const path = tmp.file();
    const a = rememberIn(path, 'k', { mode: 'hang' });
    await a.producing;
    const b = rememberIn(path, 'k', { mode: 'async', wait: 300 });
    expect(await b.done).toMatchObject({ event: 'error', code: 'ERR_SHMCACHE_TIMEOUT' });
    expect(produced([b])).toBe(0);
  });
});

describe.each(CODECS)('remember() in one process (codec %s)', (codec) => {
  test('a live value is returned without producing; the produced value is stored with its ttl', async () => {
    const c = new Cache<any>({ path: tmp.file(), size: '1MB', stamp: false, codec });
    c.set('have', 'cached');
    let calls = 0;
    expect(await c.remember('have', () => ++calls)).toBe('cached');
    expect(calls).toBe(0);
    expect(await c.remember('new', async () => ({ n: ++calls }), { ttl: 1000 })).toEqual({ n: 1 });
    expect(c.get('new')).toEqual({ n: 1 });
    setClockOffsetForTesting(1000);
    expect(c.get('new')).toBeUndefined();
    expect(await c.remember('new', () => ++calls)).toBe(2);
    c.close();
  });

  test('a produced value counts one set, not two (the claim is no set)', async () => {
    const c = new Cache<string>({ path: tmp.file(), size: '1MB', stamp: false, codec });
    expect(await c.remember('k', () => 'made')).toBe('made');
    expect(c.stats().sets).toBe(1);
    // A producer returning undefined drops its claim: no set at all.
    expect(await c.remember('nothing', () => undefined as never)).toBeUndefined();
    expect(c.stats().sets).toBe(1);
    c.close();
  });

  test('concurrent calls in one process run the producer once', async () => {
    const c = new Cache<any>({ path: tmp.file(), size: '1MB', stamp: false, codec });
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const first = c.remember('k', async () => {
      calls++;
      await gate;
      return 'v';
    });
    const second = c.remember('k', () => {
      calls++;
      return 'other';
    });
    // While the claim is held the key reads as absent.
    expect(c.get('k')).toBeUndefined();
    expect(c.has('k')).toBe(false);
    expect(c.keys()).toEqual([]);
    release();
    expect(await Promise.all([first, second])).toEqual(['v', 'v']);
    expect(calls).toBe(1);
    c.close();
  });

  test('a producer returning undefined stores nothing; a throwing one rejects with its error', async () => {
    const c = new Cache<any>({ path: tmp.file(), size: '1MB', stamp: false, codec });
    expect(await c.remember('u', () => undefined)).toBeUndefined();
    expect(c.has('u')).toBe(false);
    const err = new Error('mine');
    await expect(c.remember('t', () => { throw err; })).rejects.toBe(err);
    await expect(c.remember('t', async () => { throw err; })).rejects.toBe(err);
    expect(await c.remember('t', () => 'later')).toBe('later');
    c.close();
  });

  test('bad arguments are coded errors and change nothing', async () => {
    const c = new Cache<any>({ path: tmp.file(), size: '1MB', stamp: false, codec });
    await expect(c.remember('', () => 1)).rejects.toMatchObject({ code: 'ERR_SHMCACHE_INVALID_KEY' });
    await expect(c.remember('k', 'nope' as never)).rejects.toMatchObject({ code: 'ERR_SHMCACHE_INVALID_OPTION' });
    await expect(c.remember('k', () => 1, { wait: -1 })).rejects.toBeInstanceOf(ShmCacheError);
    await expect(c.remember('k', () => 1, { ttl: 1.5 })).rejects.toMatchObject({ code: 'ERR_SHMCACHE_INVALID_OPTION' });
    expect(c.has('k')).toBe(false);
    c.close();
    await expect(c.remember('k', () => 1)).rejects.toMatchObject({ code: 'ERR_SHMCACHE_CLOSED' });
  });
});
