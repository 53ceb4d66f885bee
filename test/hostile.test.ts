// A segment file is hostile input (DESIGN §2): whatever its bytes, and
// whatever another process writes into it while it is mapped, a process
// using it never crashes, never hangs, and never returns a value that was not
// written for that key. Each case runs in a child process; it passes when the
// child exits without a signal, within 5 s per case, having seen only
// ShmCacheErrors and only values written for their key (self-describing
// values: fixtures/selfcheck.mjs). The mutator (fixtures/hostile-lib.mjs)
// knows every record of the layout and writes boundary values into each field.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { beforeAll, describe, expect, test } from 'vitest';
// @ts-expect-error: a plain .mjs fixture
import { applyMutation, fill, mutations, readBytes, scan } from './fixtures/hostile-lib.mjs';
import { generator } from './fixtures/selfcheck.mjs';
import { fixtures, isRoot, tempDir } from './helpers';

const tmp = tempDir('shmcache-hostile-');
const CASE_MS = 5000;
let template = '';
let all: any[] = [];

beforeAll(() => {
  template = tmp.file('template');
  fill(template);
  all = mutations(scan(readBytes(template)));
});

interface ChildResult {
  done: any[];
  problems: string[];
}

/**
 * Runs fixtures/hostile-child.mjs with `job`. A case that does not finish
 * within CASE_MS kills the child; a signal, a non-zero exit, or a case
 * started and never finished is a problem naming that case.
 */
function runChild(job: object, caseMs = CASE_MS): Promise<ChildResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(fixtures, 'hostile-child.mjs'), JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const done: any[] = [];
    const problems: string[] = [];
    let current: string | undefined;
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        problems.push(`${current ?? 'start-up'}: no progress for ${caseMs} ms (killed)`);
        child.kill('SIGKILL');
      }, caseMs);
    };
    arm();
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = JSON.parse(line);
      if (m.start !== undefined) current = m.start;
      if (m.done !== undefined) {
        done.push(m);
        current = undefined;
      }
      arm();
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== null || code !== 0)
        problems.push(`${current ?? 'between cases'}: the child ended with code ${code} signal ${signal}: ${stderr.slice(0, 2000)}`);
      for (const d of done) {
        for (const b of d.bad ?? []) problems.push(`${d.done}: ${b}`);
        if (d.ms > CASE_MS) problems.push(`${d.done}: took ${d.ms} ms`);
      }
      resolve({ done, problems });
    });
  });
}

function split<T>(items: T[], n: number): T[][] {
  const out: T[][] = Array.from({ length: n }, () => []);
  items.forEach((x, i) => out[i % n]!.push(x));
  return out;
}

test('the mutator covers every record kind and field', () => {
  const records = new Set(all.map((m) => m.name.replace(/\[.*?\]/, '').split('.')[0]));
  expect([...records].sort()).toEqual(['bucket', 'entry', 'header', 'marks', 'page', 'shard', 'slot']);
  expect(all.length).toBeGreaterThan(300);
});

test('every field of every record, boundary values, at rest on a full segment', async () => {
  const cases = all.map((m) => ({ name: m.name + ` @${m.at}`, mutations: [m] }));
  const results = await Promise.all(split(cases, 2).map((part, i) => runChild({ mode: 'rest', template, dir: tmp.dir, cases: part, seed: 100 + i })));
  expect(results.flatMap((r) => r.problems)).toEqual([]);
  const done = results.flatMap((r) => r.done);
  expect(done.length).toBe(cases.length);
  // Header damage is refused at open; damage found inside is repaired.
  expect(done.filter((d) => d.errors.ERR_SHMCACHE_CORRUPT).length).toBeGreaterThan(0);
  expect(done.filter((d) => d.repairs > 0).length).toBeGreaterThan(0);
}, 120_000);

test('a random fuzz of the same, several fields at once', async () => {
  const rand = generator(20240611);
  const cases = Array.from({ length: 40 }, (_, i) => {
    const n = 1 + rand(4);
    const ms = Array.from({ length: n }, () => all[rand(all.length)]);
    return { name: `fuzz ${i}: ${ms.map((m) => m.name).join(', ')}`, mutations: ms };
  });
  const results = await Promise.all(split(cases, 2).map((part, i) => runChild({ mode: 'rest', template, dir: tmp.dir, cases: part, seed: 900 + i })));
  expect(results.flatMap((r) => r.problems)).toEqual([]);
}, 60_000);

test('every field of every record rewritten while two other processes use the segment', async () => {
  const path = tmp.file('live');
  copyFileSync(template, path);
  const fd = (await import('node:fs')).openSync(path, 'r+');
  const workers = [0, 1].map((i) => {
    let ready!: () => void;
    const started = new Promise<void>((r) => (ready = r));
    const run = new Promise<ChildResult>((resolve) => {
      const child = spawn(process.execPath, [join(fixtures, 'hostile-child.mjs'), JSON.stringify({ mode: 'live', path, seed: 7 + i, ms: 6000 })], { stdio: ['ignore', 'pipe', 'pipe'] });
      const done: any[] = [];
      const problems: string[] = [];
      let stderr = '';
      let last = Date.now();
      const stall = setInterval(() => {
        if (Date.now() - last > CASE_MS) {
          problems.push(`worker ${i}: no progress for ${CASE_MS} ms after ${applied} (killed)`);
          child.kill('SIGKILL');
        }
      }, 200);
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      createInterface({ input: child.stdout }).on('line', (line) => {
        const m = JSON.parse(line);
        last = Date.now();
        if (m.beat === 0) ready();
        if (m.done) done.push(m);
      });
      child.on('close', (code, signal) => {
        clearInterval(stall);
        ready();
        if (signal !== null || code !== 0) problems.push(`worker ${i} ended with code ${code} signal ${signal} after ${applied}: ${stderr.slice(0, 2000)}`);
        for (const d of done) for (const b of d.bad) problems.push(`worker ${i}: ${b}`);
        resolve({ done, problems });
      });
    });
    return { started, run };
  });
  let applied = 'no mutation';
  await Promise.all(workers.map((w) => w.started));
  for (const m of all) {
    applyMutation(fd, m);
    applied = m.name;
    await new Promise((r) => setTimeout(r, 2));
  }
  applied = `all ${all.length} mutations`;
  const results = await Promise.all(workers.map((w) => w.run));
  (await import('node:fs')).closeSync(fd);
  expect(results.flatMap((r) => r.problems)).toEqual([]);
  for (const r of results) expect(r.done[0].ops).toBeGreaterThan(1000);
}, 60_000);

describe("the issue's reproducers", () => {
  const names = [
    'used-wraps',
    'span-wraps-deletes',
    'verify-span-used-alloc',
    'header-while-open',
    'lock-dead-tid',
    'lock-live-holder-timeout',
    'kind-robust-lost-sigkill',
    'kind-einval',
    'has-zeroed-expires',
    'lock-list-rewritten',
    'chain-self-loop',
  ];
  for (const name of names) {
    test(name, async () => {
      const r = await runChild({ mode: 'scenario', template, dir: tmp.dir, names: [name] });
      expect(r.problems).toEqual([]);
      expect(r.done.map((d) => d.done)).toEqual([name]);
      if (name === 'lock-live-holder-timeout') expect(r.done[0].errors.ERR_SHMCACHE_TIMEOUT).toBe(1);
      if (name === 'header-while-open' || name === 'used-wraps') expect(r.done[0].ops).toBeGreaterThan(500);
    }, 20_000);
  }
});

describe.runIf(isRoot)('a damaged segment on a read-only mount', () => {
  test('reads, keys() and verify() report and repair nothing, write nothing; writes are PERMISSION', async () => {
    const mnt = join(tmp.dir, 'ro-fs');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
    try {
      const path = join(mnt, 'site.shm');
      copyFileSync(template, path);
      const s = scan(readBytes(path));
      const l = s.layout;
      const e = s.entries[10];
      // A chain pointing past the heap, a damaged value byte, a page owner naming no shard.
      applyMutation(path, { at: l.bucketsOff + (e.shard * l.buckets + e.bucket) * 4, bytes: 4, value: String(l.heapBytes / 8 + 1), kind: 'n' });
      const v = s.entries[20];
      applyMutation(path, { at: l.heapOff + v.off + 40 + v.key.length, bytes: 1, value: '255', kind: 'n' });
      applyMutation(path, { at: l.pagesOff + 5 * 32, bytes: 4, value: '4000', kind: 'n' });
      execFileSync('mount', ['-o', 'remount,ro', mnt]);
      const before = readFileSync(path);
      const r = await runChild({ mode: 'readonly', path, keys: s.entries.slice(0, 400).map((x: any) => x.key) });
      expect(r.problems).toEqual([]);
      expect(r.done[0].problems.length).toBeGreaterThan(0);
      expect(r.done[0].keys).toBeGreaterThan(100);
      expect(readFileSync(path).equals(before)).toBe(true);
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });
});
