// `shmcache watch`, `keys` and `verify` on a real pseudo-terminal (tmux):
// the full-screen view redrawn once a second, colour (and NO_COLOR), q to
// quit, and the progress lines of a large segment.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { cliPath, seed, startApp, tmuxSession, waitFor } from './fixtures/cli-lib.mjs';
import { tempDir } from './helpers';

const tmp = tempDir('shmcache-watch-');
const hasTmux = (() => {
  try {
    execFileSync('tmux', ['-V']);
    return true;
  } catch {
    return false;
  }
})();
const sessions: ReturnType<typeof tmuxSession>[] = [];
afterAll(() => sessions.forEach((s) => s.kill()));

/**
 * Sends `key` and waits for the pane's program to end. Under a loaded
 * machine a key sent through tmux was seen to go unread now and then (the
 * same binary quits in ~0.1 s by hand), so it is sent again each second;
 * a watch that never quits still fails after 20 s.
 */
async function quit(tty: ReturnType<typeof tmuxSession>, key: string): Promise<unknown> {
  let sent = 0;
  return waitFor(
    () => {
      const dead = tty.dead();
      if (!dead && Date.now() - sent >= 1000) {
        tty.keys(key);
        sent = Date.now();
      }
      return dead;
    },
    20_000,
    `watch to quit on ${key}`,
  );
}

/** Ended by its own exit (status 0 when tmux knows it), not by a signal. */
function expectQuit(dead: unknown): void {
  const d = dead as { status: number | null; signal: number | null };
  expect(d.signal).toBeNull();
  if (d.status !== null) expect(d.status).toBe(0);
}

function session(name: string): ReturnType<typeof tmuxSession> {
  const s = tmuxSession(join(tmp.dir, `tmux-${name}.sock`), name);
  sessions.push(s);
  return s;
}

// eslint-disable-next-line no-control-regex -- an SGR colour sequence
const COLOUR = /\x1b\[[0-9;]*3[1-7]m/;
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const cli = (...args: string[]) => [process.execPath, cliPath, ...args].map(quote).join(' ');

test.runIf(hasTmux)('watch redraws live rates, a fill bar and the top prefixes; q quits', async () => {
  const path = tmp.file('watched');
  await seed(path, {
    size: '4MB',
    entries: Array.from({ length: 30 }, (_, i) => [`user:${i}`, 'u']).concat(Array.from({ length: 10 }, (_, i) => [`sess/${i}`, 's'])),
  });
  const app = await startApp(path, 'both', 'app:', 100);
  const tty = session('watch');
  try {
    tty.start(cli('watch', path), { cols: 100, rows: 30, env: { TERM: 'xterm-256color', NO_COLOR: '' } });
    const screen = await waitFor(
      () => {
        const s = tty.capture();
        const m = /hits\/s\s+([\d.]+)/.exec(s);
        return m && Number(m[1]) > 0 && s.includes('top prefixes') ? s : undefined;
      },
      20_000,
      'a frame with a non-zero hits/s',
    );
    expect(screen).toContain(`shmcache watch ${path}`);
    for (const label of ['hits/s', 'misses/s', 'sets/s', 'evictions/s', 'expired/s', 'hit ratio', 'fill']) expect(screen).toContain(label);
    expect(screen).toMatch(/fill\s+[█░]+\s+[\d.]+%/);
    // Top prefixes by count: app (100), user (30), sess (10).
    const order = ['app', 'user', 'sess'].map((p) => screen.search(new RegExp(`^\\s+${p}\\s+\\d+`, 'm')));
    expect(order.every((i) => i > 0)).toBe(true);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(screen).toMatch(/^\s+user\s+30\s*$/m);
    // Redrawn: the clock in the first line moves.
    const clock = (s: string) => /(\d\d:\d\d:\d\d)\s+q quits/.exec(s)?.[1];
    const first = clock(screen);
    expect(first).toBeDefined();
    await waitFor(() => clock(tty.capture()) !== first, 10_000, 'a redraw');
    // Colour on a terminal.
    expect(tty.capture(true)).toMatch(COLOUR);
    expectQuit(await quit(tty, 'q'));
  } finally {
    const report = await app.stop();
    expect(report.errors).toBe(0);
  }
});

test.runIf(hasTmux)('NO_COLOR: the same view without colour', async () => {
  const path = tmp.file('plain');
  await seed(path, { entries: [['k:1', 'v']] });
  const tty = session('nocolor');
  tty.start(cli('watch', path), { cols: 100, rows: 30, env: { TERM: 'xterm-256color', NO_COLOR: '1' } });
  const screen = await waitFor(() => (tty.capture().includes('top prefixes') ? tty.capture(true) : undefined), 15_000, 'a frame');
  expect(screen).not.toMatch(COLOUR);
  expectQuit(await quit(tty, 'C-c'));
});

test.runIf(hasTmux)('keys and verify show progress on a terminal for a large segment', async () => {
  const path = tmp.file('large');
  await seed(path, { size: '8MB', bulk: 6000 });
  const raw = join(tmp.dir, 'progress.raw');
  const tty = session('progress');
  tty.start('bash --norc --noprofile', { cols: 120, rows: 40, env: { TERM: 'xterm-256color', PS1: '$ ' } });
  tty.pipeTo(raw);
  tty.keys(`${cli('keys', path, '--limit', '3')}; ${cli('verify', path)}; echo "END-$((40 + 2))"`, 'Enter');
  await waitFor(() => existsSync(raw) && readFileSync(raw, 'utf8').includes('END-42'), 30_000, 'the commands to finish');
  const out = readFileSync(raw, 'utf8');
  expect(out).toContain('listing keys of');
  expect(out).toContain('6,000 entries');
  expect(out).toContain('verifying');
  expect(out).toContain('\r\x1b[2K'); // the line is redrawn in place, then erased
  const screen = tty.capture();
  expect(screen).toMatch(/KEY\s+TYPE\s+BYTES\s+TTL/);
  expect(screen).toContain('6,000 keys, 3 shown');
  expect(screen).toMatch(/ok: no problems in/);
  expect(screen).not.toContain('listing keys of'); // erased once done
});
