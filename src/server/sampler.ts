/**
 * Sampling caches once a second: each watched segment keeps its last hour
 * of rates for the charts and its latest stats() for the metrics. A sample
 * never throws: a cache that fails (damaged, removed, replaced, refused)
 * records the error, drops its handle and is attached again later, with a
 * growing delay so that a hostile segment costs little; the others go on.
 */
import { lstatSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Cache, CacheStats } from '../index';
import { attach } from '../cli/attach';
import { RAW_CODEC } from '../cli/inspect';

/** Seconds of history kept: one hour. */
export const HISTORY = 3600;
/** Most segments of one owner uid that one server lists (a folder may hold many files). */
export const MAX_PER_UID = 64;
/** Most files one server tries (listed or not). */
export const MAX_TRIED = 10_000;
/** A watched segment is verified (read-only: it only reports) at attach, then this often and when its repairs counter moves. */
const VERIFY_EVERY_MS = 60_000;
/** ... when it holds at most this many entries (verify() walks the whole segment, synchronously). */
const VERIFY_UP_TO = 200_000;

export const RATE_FIELDS = ['hits', 'misses', 'sets', 'deletes', 'evictions', 'expired'] as const;
export type RateField = (typeof RATE_FIELDS)[number];

/** Per-second series, oldest first; null where unknown (an error, or a counter that went down). */
export interface Series {
  /** Sample times, ms since the epoch. */
  t: number[];
  /** hits / (hits + misses) over that second; null when nothing was read. */
  hitRatio: (number | null)[];
  hits: (number | null)[];
  misses: (number | null)[];
  sets: (number | null)[];
  deletes: (number | null)[];
  evictions: (number | null)[];
  expired: (number | null)[];
}

const emptySeries = (): Series => ({ t: [], hitRatio: [], hits: [], misses: [], sets: [], deletes: [], evictions: [], expired: [] });

/** What an error says, for people: "ERR_SHMCACHE_CORRUPT: ...". */
export function describeError(err: unknown): { code: string; message: string } {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : 'ERROR';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return { code, message };
}

/** One segment being watched. */
export class Watched {
  readonly name: string;
  readonly path: string;
  /** Found by scanning a folder (dropped when its file goes), or named on the command line (kept, with an error). */
  readonly scanned: boolean;
  cache: Cache | undefined;
  /** The latest stats(), while the cache is healthy. */
  last: CacheStats | undefined;
  lastAt = 0;
  /** The file's owner, as the last lstat() said. */
  uid = -1;
  error: { code: string; message: string } | undefined;
  /** What the last verify() of the (read-only) handle found: it only reports. */
  damage: { ok: boolean; problems: string[]; checkedAt: number } | undefined;
  readonly series: Series = emptySeries();
  #dev = 0;
  #ino = 0;
  #retryAt = 0;
  #backoff = 0;
  #verifiedAt = -Infinity;
  #verifiedRepairs = -1;
  /** The previous successful sample, for rates. */
  #prev: { at: number; stats: CacheStats } | undefined;

  constructor(path: string, scanned: boolean, name?: string) {
    this.path = resolve(path);
    this.scanned = scanned;
    this.name = name ?? nameOf(this.path);
  }

  /** Takes one sample at `now`. Never throws. */
  sample(now: number): void {
    let st;
    try {
      st = lstatSync(this.path);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      this.#fail(
        e.code === 'ENOENT' ? { code: 'ERR_SHMCACHE_NOT_FOUND', message: `'${this.path}' does not exist (removed?)` } : describeError(err),
      );
      this.#detach();
      return this.#push(now, undefined);
    }
    this.uid = st.uid;
    if (this.cache && (st.dev !== this.#dev || st.ino !== this.#ino)) this.#detach(); // replaced: attach the new file
    if (!this.cache) {
      if (now < this.#retryAt) return this.#push(now, undefined);
      try {
        this.cache = attach(this.path, { codec: RAW_CODEC });
        this.#dev = st.dev;
        this.#ino = st.ino;
      } catch (err) {
        this.#fail(describeError(err));
        this.#backoff = Math.min(Math.max(1000, this.#backoff * 2), 30_000);
        this.#retryAt = now + this.#backoff;
        return this.#push(now, undefined);
      }
    }
    let stats: CacheStats;
    try {
      stats = this.cache.stats();
    } catch (err) {
      this.#fail(describeError(err));
      this.#detach();
      return this.#push(now, undefined);
    }
    if (stats.entries <= VERIFY_UP_TO && (now - this.#verifiedAt >= VERIFY_EVERY_MS || stats.repairs !== this.#verifiedRepairs)) {
      try {
        const r = this.cache.verify();
        this.damage = { ok: r.ok, problems: r.problems.slice(0, 20), checkedAt: now };
      } catch (err) {
        this.damage = { ok: false, problems: [`${describeError(err).code}: ${describeError(err).message}`], checkedAt: now };
      }
      this.#verifiedAt = now;
      this.#verifiedRepairs = stats.repairs;
    }
    this.error = undefined;
    this.#backoff = 0;
    this.last = stats;
    this.lastAt = now;
    this.#push(now, stats);
  }

  /**
   * Runs `fn` on the attached cache for a request; an error that means the
   * handle is no good (damage, a file cut short, closed) drops it so that
   * the next sample attaches again. Rethrows.
   */
  use<T>(fn: (cache: Cache) => T): T {
    if (!this.cache) {
      const e = this.error ?? { code: 'ERR_SHMCACHE_CLOSED', message: 'not attached yet' };
      throw Object.assign(new Error(e.message), { code: e.code });
    }
    try {
      return fn(this.cache);
    } catch (err) {
      const { code } = describeError(err);
      if (code === 'ERR_SHMCACHE_CORRUPT' || code === 'ERR_SHMCACHE_CLOSED' || code === 'ERR_SHMCACHE_IO') {
        this.#fail(describeError(err));
        this.#detach();
      }
      throw err;
    }
  }

  /**
   * Runs `fn` on a read-write handle of its own, opened for this mutation
   * alone and closed after (the watched handle is read-only): it waits for
   * this cache's file lock only, at most SHMCACHE_LOCK_TIMEOUT_MS (250 ms
   * under serve). Rethrows.
   */
  mutate<T>(fn: (cache: Cache) => T): T {
    const c = attach(this.path, { readOnly: false });
    try {
      return fn(c);
    } finally {
      c.close();
    }
  }

  #fail(error: { code: string; message: string }): void {
    this.error = error;
    this.last = undefined;
  }

  #detach(): void {
    const c = this.cache;
    this.cache = undefined;
    this.#verifiedAt = -Infinity;
    this.#prev = undefined;
    try {
      c?.close();
    } catch {}
  }

  #push(now: number, stats: CacheStats | undefined): void {
    const s = this.series;
    s.t.push(now);
    const prev = this.#prev;
    const dt = prev === undefined ? 0 : (now - prev.at) / 1000;
    // A counter that went down: the segment was reset, or is a new file.
    const usable = stats !== undefined && prev !== undefined && dt > 0 && dt <= 5 && RATE_FIELDS.every((f) => stats[f] >= prev.stats[f]);
    for (const f of RATE_FIELDS) s[f].push(usable ? (stats[f] - prev!.stats[f]) / dt : null);
    if (usable) {
      const reads = stats.hits - prev!.stats.hits + (stats.misses - prev!.stats.misses);
      s.hitRatio.push(reads > 0 ? (stats.hits - prev!.stats.hits) / reads : null);
    } else {
      s.hitRatio.push(null);
    }
    if (s.t.length > HISTORY) {
      for (const k of Object.keys(s) as (keyof Series)[]) s[k].shift();
    }
    if (stats !== undefined) this.#prev = { at: now, stats };
  }

  /** The series since `since` (exclusive), for the page's incremental updates. */
  seriesSince(since: number): Series {
    const s = this.series;
    let i = s.t.length;
    while (i > 0 && s.t[i - 1]! > since) i--;
    const out = emptySeries();
    for (const k of Object.keys(s) as (keyof Series)[]) (out[k] as unknown[]) = s[k].slice(i);
    return out;
  }

  close(): void {
    this.#detach();
  }
}

/** A segment's name: its file name without `.shm`. */
export function nameOf(path: string): string {
  const b = basename(path);
  return b.endsWith('.shm') && b.length > 4 ? b.slice(0, -4) : b;
}

/**
 * The segments of the command line: files (always listed), and folders
 * whose `*.shm` files are scanned again at every sample (one cache per
 * tenant). A scanned file is listed once it has attached (a valid
 * segment): junk files cost an attach now and then and hide no one. At
 * most MAX_PER_UID listed segments per owner uid, so that one tenant's
 * files cannot crowd out the others'. A name found in two places is
 * qualified with its folder (the path without `.shm`) for both; the names
 * `.` and `..` (files `..shm`, `...shm`) are refused.
 */
export class CacheSet {
  readonly #files: string[] = [];
  readonly #dirs: string[] = [];
  /** By path: every segment tried, listed or not yet. */
  readonly #watched = new Map<string, Watched>();
  /** By name: the listed ones. */
  #byName = new Map<string, Watched>();
  readonly #listed = new Set<Watched>();
  readonly #warned = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #warn: (message: string) => void;

  constructor(targets: string[], warn: (message: string) => void = () => {}) {
    this.#warn = warn;
    for (const t of targets) {
      const p = resolve(t);
      let isDir = false;
      try {
        isDir = statSync(p).isDirectory();
      } catch {}
      (isDir ? this.#dirs : this.#files).push(p);
    }
    this.#scan();
  }

  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#warn(message);
  }

  #scan(): void {
    const found: { path: string; scanned: boolean }[] = this.#files.map((path) => ({ path, scanned: false }));
    for (const dir of this.#dirs) {
      let names: string[];
      try {
        names = readdirSync(dir, { withFileTypes: true })
          .filter((d) => d.isFile() && d.name.endsWith('.shm') && d.name.length > 4)
          .map((d) => d.name)
          .sort();
      } catch (err) {
        this.#warnOnce(`dir:${dir}`, `cannot list ${dir}: ${describeError(err).message}`);
        continue;
      }
      for (const n of names) {
        if (found.length >= MAX_TRIED) {
          this.#warnOnce('max', `trying at most ${MAX_TRIED} files; skipping the rest`);
          break;
        }
        found.push({ path: join(dir, n), scanned: true });
      }
    }
    const counts = new Map<string, number>();
    for (const f of found) counts.set(nameOf(f.path), (counts.get(nameOf(f.path)) ?? 0) + 1);
    const seen = new Set<string>();
    for (const f of found) {
      if (seen.has(f.path)) continue;
      seen.add(f.path);
      const base = nameOf(f.path);
      if (base === '.' || base === '..' || base === '') {
        this.#warnOnce(`name:${f.path}`, `skipping ${f.path}: its name "${base}" cannot be served`);
        continue;
      }
      const name = counts.get(base)! > 1 ? f.path.replace(/\.shm$/, '') : base;
      if (counts.get(base)! > 1) this.#warnOnce(`dup:${f.path}`, `the name "${base}" is taken by more than one file: ${f.path} is served as "${name}"`);
      const w = this.#watched.get(f.path);
      if (w !== undefined && w.name === name) continue;
      if (w !== undefined) w.close();
      this.#watched.set(f.path, new Watched(f.path, f.scanned, name));
    }
    for (const [path, w] of this.#watched) {
      if (!seen.has(path)) {
        w.close();
        this.#watched.delete(path);
      }
    }
  }

  /** The listed ones: command-line files, and scanned files that attached, within the per-uid cap. */
  #relist(): void {
    for (const w of this.#listed) if (!this.#watched.has(w.path) || this.#watched.get(w.path) !== w) this.#listed.delete(w);
    const perUid = new Map<number, number>();
    for (const w of this.#listed) if (w.scanned) perUid.set(w.uid, (perUid.get(w.uid) ?? 0) + 1);
    for (const w of this.#watched.values()) {
      if (this.#listed.has(w)) continue;
      if (!w.scanned) {
        this.#listed.add(w);
        continue;
      }
      if (w.lastAt === 0) continue; // never attached: not listed, not counted
      const n = perUid.get(w.uid) ?? 0;
      if (n >= MAX_PER_UID) {
        this.#warnOnce(`uid:${w.uid}`, `watching at most ${MAX_PER_UID} segments of uid ${w.uid}; skipping the rest`);
        continue;
      }
      perUid.set(w.uid, n + 1);
      this.#listed.add(w);
    }
    this.#byName = new Map([...this.#listed].map((w) => [w.name, w]));
  }

  /** Scans the folders and samples every segment. */
  tick(now = Date.now()): void {
    this.#scan();
    for (const w of this.#watched.values()) w.sample(now);
    this.#relist();
  }

  /** Samples now, then once a second. */
  start(): void {
    this.tick();
    this.#timer = setInterval(() => this.tick(), 1000);
  }

  list(): Watched[] {
    return [...this.#listed].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  get(name: string): Watched | undefined {
    return this.#byName.get(name);
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    for (const w of this.#watched.values()) w.close();
  }
}
