/**
 * `shmcache watch <path>`: live rates, redrawn once a second. On a terminal
 * a full-screen view (q or Ctrl-C quits); elsewhere one line per sample.
 */
import { Watched } from '../server/sampler';
import { bar, bytes, count, painter, percent, rate, table, visible, wantsColour } from './format';
import { topPrefixes } from './inspect';
import { fillColour, ratioColour } from './stats';

export interface WatchOptions {
  /** Seconds between samples. Default 1. */
  interval?: number;
  /** Stop after this many samples. Default: never. */
  count?: number;
}

const last = <T>(a: T[]): T | undefined => a[a.length - 1];

export function watchCommand(path: string, opts: WatchOptions): Promise<number> {
  const w = new Watched(path, false);
  const tty = process.stdout.isTTY === true;
  const paint = painter(wantsColour(process.stdout));
  const intervalMs = Math.round((opts.interval ?? 1) * 1000);
  let frames = 0;
  let prefixes: { prefix: string; count: number }[] = [];
  let prefixesAt = -Infinity;

  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      w.close();
      if (tty) {
        process.stdout.write('\x1b[?25h\x1b[?1049l'); // cursor back, main screen back
        if (process.stdin.isTTY) process.stdin.setRawMode(false);
        process.stdin.pause();
        // A TTY stdin that was resumed keeps the process alive even paused.
        (process.stdin as unknown as { unref?: () => void }).unref?.();
      }
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(code);
    };
    const onSignal = (): void => finish(0);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    if (tty) {
      process.stdout.write('\x1b[?1049h\x1b[?25l'); // alternate screen, no cursor
      if (process.stdin.isTTY) {
        process.stdin.setRawMode(true);
        process.stdin.resume();
        process.stdin.on('data', (d: Buffer) => {
          const k = d.toString();
          if (k === 'q' || k === 'Q' || k === '\x03' || k === '\x1b') finish(0);
        });
      }
    }

    const tick = (): void => {
      const now = Date.now();
      w.sample(now);
      frames++;
      const s = w.last;
      // Prefix counts need every key: on a large segment, every 10th frame.
      if (s && w.cache && (s.entries < 100_000 || frames - prefixesAt >= 10)) {
        try {
          prefixes = topPrefixes(w.cache.keys(), 8);
          prefixesAt = frames;
        } catch {}
      }
      const series = w.series;
      const r = {
        hits: last(series.hits) ?? null,
        misses: last(series.misses) ?? null,
        sets: last(series.sets) ?? null,
        evictions: last(series.evictions) ?? null,
        expired: last(series.expired) ?? null,
        hitRatio: last(series.hitRatio) ?? null,
      };
      const time = new Date(now).toTimeString().slice(0, 8);
      if (!tty) {
        if (!s) {
          process.stdout.write(`${time} ${w.error ? `${w.error.code}: ${visible(w.error.message)}` : 'not attached'}\n`);
        } else {
          const fill = s.size > 0 ? s.used / s.size : 0;
          process.stdout.write(
            `${time} hits ${rate(r.hits)} misses ${rate(r.misses)} sets ${rate(r.sets)} evictions ${rate(r.evictions)} expired ${rate(r.expired)} hit ratio ${percent(r.hitRatio)} fill ${percent(fill)} entries ${count(s.entries)}\n`,
          );
        }
      } else {
        process.stdout.write('\x1b[H' + frame(w, s, r, prefixes, time, paint).map((l) => l + '\x1b[K').join('\n') + '\n\x1b[J');
      }
      if (opts.count !== undefined && frames >= opts.count) return finish(0);
      timer = setTimeout(tick, Math.max(0, intervalMs - (Date.now() - now)));
    };
    tick();
  });
}

function frame(
  w: Watched,
  s: Watched['last'],
  r: { hits: number | null; misses: number | null; sets: number | null; evictions: number | null; expired: number | null; hitRatio: number | null },
  prefixes: { prefix: string; count: number }[],
  time: string,
  paint: ReturnType<typeof painter>,
): string[] {
  const cols = process.stdout.columns || 80;
  const lines = [`${paint('shmcache watch', 'bold')} ${visible(w.path)}  ${paint(`${time}  q quits`, 'dim')}`, ''];
  if (!s) {
    lines.push(paint(w.error ? `${w.error.code}: ${visible(w.error.message)}` : 'not attached', 'red'), paint('(trying again)', 'dim'));
    return lines;
  }
  lines.push(
    ...table(
      [
        ['hits/s', rate(r.hits), 'misses/s', rate(r.misses), 'hit ratio', paint(percent(r.hitRatio), ratioColour(r.hitRatio))],
        ['sets/s', rate(r.sets), 'evictions/s', rate(r.evictions), 'expired/s', rate(r.expired)],
      ].map((row) => ['  ' + row[0], ...row.slice(1)]),
      new Set([1, 3]),
    ).split('\n'),
  );
  const fill = s.size > 0 ? s.used / s.size : 0;
  const width = Math.max(10, Math.min(40, cols - 50));
  lines.push('', `  fill  ${paint(bar(fill, width), fillColour(fill))}  ${percent(fill)}  ${bytes(s.used)} of ${bytes(s.size)}  ${count(s.entries)} entries`, '');
  lines.push(`  ${paint('top prefixes', 'bold')}`);
  if (prefixes.length === 0) lines.push(paint('  (no keys)', 'dim'));
  else {
    lines.push(
      ...table(
        prefixes.map((p) => ['  ' + (p.prefix === '' ? '(none)' : visible(p.prefix).slice(0, Math.max(8, cols - 20))), count(p.count)]),
        new Set([1]),
      ).split('\n'),
    );
  }
  lines.push('', paint(`  totals: ${count(s.hits)} hits, ${count(s.misses)} misses, ${count(s.sets)} sets, ${count(s.evictions)} evictions`, 'dim'));
  return lines;
}
