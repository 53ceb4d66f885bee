import type { CacheStats } from '../index';
import { attach } from './attach';
import { bar, bytes, count, json, painter, percent, table, visible, wantsColour, type Colour } from './format';

/** Hits over reads; null before the first read. */
export function hitRatio(s: { hits: number; misses: number }): number | null {
  const reads = s.hits + s.misses;
  return reads > 0 ? s.hits / reads : null;
}

/** Green, yellow or red for a hit ratio. */
export function ratioColour(r: number | null): Colour {
  return r === null ? 'dim' : r >= 0.9 ? 'green' : r >= 0.6 ? 'yellow' : 'red';
}

/** Green, yellow or red for a fill ratio (full is normal for a cache, but evictions follow). */
export function fillColour(r: number): Colour {
  return r < 0.8 ? 'green' : r < 0.95 ? 'yellow' : 'red';
}

export function formatStats(s: CacheStats, colour: boolean): string {
  const paint = painter(colour);
  const fill = s.size > 0 ? s.used / s.size : 0;
  const ratio = hitRatio(s);
  const rows = [
    ['size', bytes(s.size), 'used', `${bytes(s.used)} (${percent(fill)}) ${paint(bar(fill, 20), fillColour(fill))}`],
    ['entries', count(s.entries), 'free pages', `${count(s.freePages)} of ${count(s.pages)} (${bytes(s.pageSize)} each)`],
    ['hits', count(s.hits), 'hit ratio', paint(percent(ratio), ratioColour(ratio))],
    ['misses', count(s.misses), 'max value', bytes(s.maxValueSize)],
    ['sets', count(s.sets), 'deletes', count(s.deletes)],
    ['evictions', count(s.evictions), 'expired', count(s.expired)],
    ['repairs', paint(count(s.repairs), s.repairs > 0 ? 'yellow' : 'dim'), 'resets', count(s.resets)],
    ['generation', count(s.generation), 'stamp', String(s.stamp)],
    ['shards', count(s.shards), '', ''],
  ];
  return `${paint(visible(s.path), 'bold')}\n${table(rows.map((r) => ['  ' + r[0]!, r[1]!, r[2]!, r[3]!]), new Set([1]))}\n`;
}

export function statsCommand(path: string, opts: { json?: boolean }): number {
  const cache = attach(path);
  try {
    const s = cache.stats();
    if (opts.json) process.stdout.write(json({ ...s, hitRatio: hitRatio(s) }) + '\n');
    else process.stdout.write(formatStats(s, wantsColour(process.stdout)));
    return 0;
  } finally {
    cache.close();
  }
}
