import { attach } from './attach';
import { bytes, count, json, painter, table, ttl, visible, wantsColour } from './format';
import { damageNote, entryInfo, RAW_CODEC, sortedWindow, type EntryInfo } from './inspect';
import { LARGE_BYTES, LARGE_ENTRIES, Progress } from './progress';

export interface KeysOptions {
  limit?: number;
  json?: boolean;
}

export function keysCommand(path: string, prefix: string | undefined, opts: KeysOptions): number {
  const cache = attach(path, { codec: RAW_CODEC });
  try {
    const progress = new Progress();
    const s = cache.stats();
    const large = s.entries >= LARGE_ENTRIES || s.size >= LARGE_BYTES;
    if (large) progress.show(`listing keys of ${visible(s.path)} (${count(s.entries)} entries)…`, true);
    // With --limit, only the first n are kept (a bounded heap), never a sort of every key.
    const keyIter = (function* () {
      for (const [k] of cache.entries(prefix ?? '')) yield k;
    })();
    const win = opts.limit === undefined ? { keys: [...keyIter].sort(), total: -1 } : sortedWindow(keyIter, opts.limit);
    const total = win.total < 0 ? win.keys.length : win.total;
    const shown = win.keys;
    const rows: ({ key: string } & EntryInfo)[] = [];
    for (let i = 0; i < shown.length; i++) {
      const key = shown[i]!;
      if (large) progress.show(`reading entries ${count(i)} / ${count(shown.length)}`);
      const info = entryInfo(cache, key);
      if (info !== undefined) rows.push({ key, ...info }); // gone meanwhile: skipped
    }
    progress.done();
    const note = damageNote(cache, 1_000_000);
    if (note) process.stderr.write(`shmcache keys: warning: ${note}; damaged entries are not listed\n`);
    if (opts.json) {
      process.stdout.write(json({ path: s.path, prefix: prefix ?? '', total, keys: rows }) + '\n');
      return 0;
    }
    const paint = painter(wantsColour(process.stdout));
    const header = ['KEY', 'TYPE', 'BYTES', 'TTL'].map((h) => paint(h, 'bold'));
    const body = rows.map((r) => [visible(r.key), r.type, bytes(r.bytes), ttl(r.ttl)]);
    if (rows.length > 0) process.stdout.write(table([header, ...body], new Set([2])) + '\n');
    const more = total > rows.length ? `, ${count(rows.length)} shown (--limit)` : '';
    process.stdout.write(paint(`${count(total)} ${total === 1 ? 'key' : 'keys'}${prefix ? ` with prefix ${JSON.stringify(visible(prefix))}` : ''}${more}`, 'dim') + '\n');
    return 0;
  } finally {
    cache.close();
  }
}
