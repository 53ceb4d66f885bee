// Eviction policies simulated on the segment's real page structure, before
// any of them goes into native code: pages of the layout's page size (the
// same ComputeLayout arithmetic as native/segment.cc), shards each with a
// current page per size class and queue, entries appended to it (40-byte
// header, key, value, 8-byte aligned), an access bit per entry set by hits,
// and eviction of whole one-page spans, the oldest of up to 16 candidates
// first, 8 rounds as native/alloc.cc does (the last without second chances),
// with a second chance for touched entries, which move to their shard's
// current main page or are compacted in place. Each queue is a list of pages
// in birth order (a relabelled or reused page is pushed again; stale slots
// are skipped), so an eviction costs its candidates, not a scan of every
// page. Policies:
//
//   clock     the page FIFO with second chance used before S3-FIFO: one FIFO
//             of pages by birth, touched entries kept;
//   s3fifo    the first S3-FIFO (Yang et al., SOSP'23) at page granularity:
//             new entries go to a small FIFO of pages; while small pages are
//             over `--small` (10%) of the pages the oldest small page is
//             evicted: its touched entries move to the main FIFO, the others
//             are dropped and their key hashes go to a direct-mapped ghost
//             table (heap/128 slots times `--ghost`); a miss whose key is in
//             the ghost table goes to main directly. Main pages are evicted
//             as clock does (touched entries get a second chance in main);
//   adaptive  the policy in native/evict.{h,cc} (evict.h's header is its
//             spec): s3fifo with a small share that moves (initial `--small`
//             0.1, within `--minshare` 0.01 and `--maxshare` 0.9), a ghost of
//             heap/8 slots (`--ghost 16`) that also remembers main's drops,
//             with an origin bit: a ghost hit dropped from small grows the
//             share by `--step` 4 entries' worth, from main shrinks it by 4;
//             a small page evicted with nothing kept shrinks it by
//             `--scan-shrink` 16; pages taken while free pages remain go to
//             main;
//   lru       lru-cache with the same key+value bytes (sizeCalculation by
//             entry bytes), as bench/zipf.mjs compares;
//   lfu       a bound, not a candidate (only when asked for: ~1 min a trace at
//             10%): perfect LFU, an exact count of every key's accesses since
//             the start kept for every key ever seen, holding as many entries
//             as the segment holds when it first evicts. A miss is admitted
//             when its count is at least the lowest count held, and replaces
//             the oldest holder of that count. On an independent-reference
//             trace such as Zipf the count is all an online policy can know
//             of a key, so this is about the best any policy can do from an
//             empty cache without knowing the ranks.
// Ghost tables are 16-bit slots, at least 64 and at most 2^20 as in native
// code (adaptive's heap/8 reaches the cap from about 20% of the keys up:
// without it, 30% scan would be 75.01 rather than 73.05). An entry's worth
// is capacity entries' share of the pages here, the running mean entry size
// over the heap in native code; the native fingerprint mixes the hash
// first: the hit ratios differ by noise only.
//
// Traces (bench/zipf-trace.mjs, as bench/zipf.mjs and bench/hitratio.mjs):
//   zipf    s = 0.99 over 1,000,000 keys, 2,000,000 accesses;
//   scan    zipf plus, every 100,000 zipf accesses, one pass over new keys,
//           twice the cache's entries (the hit ratio counts zipf accesses);
//   shift   zipf whose hot set moves: every 250,000 accesses the rank-to-key
//           mapping rotates by 100,003 keys.
// Each access is a get; a miss sets the value (100 bytes; --large F makes a
// fraction F of keys 1,000-byte values, the large size class).
//
//   node bench/evict-sim.mjs [--sizes 1,2,5,10,20,30] [--traces zipf,scan,shift]
//        [--policies clock,s3fifo,adaptive,lru(,lfu)] [--large 0] [--json]
//        [--small 0.1] [--ghost F] [--freq N] [--warm-main]
//        [--step 4] [--scan-shrink 16] [--minshare 0.01] [--maxshare 0.9]
//        [--warm 0] [--accesses 2000000] [--capacity N] [--window N]
//   --small     s3fifo's small share, adaptive's initial one;
//   --ghost F   ghost slots = heap/128 x F (default 1 for s3fifo, 16 for
//               adaptive; 0 = no ghost table);
//   --freq N    access counts an entry keeps: 1 = one access bit, as native
//               code has (adaptive's default), 3 = two bits (s3fifo's
//               default, which docs/benchmark.md's S3-FIFO column and
//               bench/results/evict-sim.json were run with; the same at 10%
//               of the keys, 67.27 with one bit vs 67.57 at 2%, zipf). Main
//               evictions keep a nonzero count, one lower;
//   --warm-main s3fifo's pages taken while free pages remain start in main
//               (adaptive always does this);
//   --warm N    accesses before N do not count (steady state);
//   --capacity N  entries lru and lfu hold, with one size (default: as
//               many as the simulated segment holds when it first evicts),
//               to put them at the real addon's capacity (bench/hitratio.mjs
//               and bench/zipf.mjs print it);
//   --window N  prints each policy's hit ratio over every N counted accesses
//               (lfu and the simulated ones; S3-FIFO's as ratio/share/scan
//               keys in main:entries in main, in thousands).
// Tried on the way to adaptive, and taken out of this file (docs/benchmark.md
// has the numbers): s3fifo without a ghost; small shares of 1-30%; ghosts of
// 1/2 to 16 times heap/128; promotion from small asking for two touches
// while small is over twice its share; a floor on the fraction of evictions
// taken from main; a per-process count-min sketch (TinyLFU-style, 4-bit
// counters, aged) fed by hits or by dropped counts, used to admit misses to
// main, to keep untouched entries, or to make small candidates beat main's
// victim (at best 76.98 zipf, 73.31 scan, 66.79 shift at 10%, against
// adaptive's 77.09, 74.58, 68.85); for adaptive, steps of 1-8 entries, scan
// shrinks of 4-64, minimum shares of 0.01-0.05, maximum shares of 0.5-0.9,
// no warm main, warm main only until main holds 50-70% of the pages (with
// and without the share held still until small drains), ghosts of up to 2^24
// slots, and main evictions while ghost hits are frequent.
import { LRUCache } from 'lru-cache';
import { zipfTrace } from './zipf-trace.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const has = (name) => args.includes(`--${name}`);
const sizes = opt('sizes', '1,2,5,10,20,30').split(',').map(Number);
const traces = opt('traces', 'zipf,scan,shift').split(',');
const policies = opt('policies', 'clock,s3fifo,adaptive,lru').split(',');
for (const p of policies) if (!['clock', 's3fifo', 'adaptive', 'lru', 'lfu'].includes(p)) throw new Error(`unknown policy ${p}`);
const SMALL = Number(opt('small', '0.1'));
const GHOST = opt('ghost', null);
const largeFrac = Number(opt('large', '0'));
const FREQ = opt('freq', null);
const WARMMAIN = has('warm-main');
const STEP = Number(opt('step', '4'));
const SCANSHRINK = Number(opt('scan-shrink', '16'));
const MINSHARE = Number(opt('minshare', '0.01'));
const MAXSHARE = Number(opt('maxshare', '0.9'));
const KEYS = 1_000_000;
// --warm N: accesses before N count for nothing (default 0, as bench/zipf.mjs).
const WARM = Number(opt('warm', '0'));
const ACCESSES = Number(opt('accesses', '2000000'));
const WINDOW = Number(opt('window', '0'));
const MAX_GHOST_SLOTS = 2 ** 20;
const FROM_MAIN = 2; // a ghost slot's origin bit (adaptive)

// --- traces (bench/zipf-trace.mjs) ------------------------------------------
const { perm, ranks } = zipfTrace({ keys: KEYS, accesses: ACCESSES });

// A trace as key ids; scan keys are ids from KEYS up. `counted[n]` says
// whether access n counts toward the hit ratio.
function makeTrace(name, capacityEntries) {
  if (name === 'zipf') return { keys: Uint32Array.from(ranks, (r) => perm[r]), counted: null, nkeys: KEYS };
  if (name === 'shift') {
    return { keys: Uint32Array.from(ranks, (r, n) => perm[(r + Math.floor(n / 250_000) * 100_003) % KEYS]), counted: null, nkeys: KEYS };
  }
  const scanLen = 2 * capacityEntries;
  const scans = Math.floor((ACCESSES - 1) / 100_000);
  const total = ACCESSES + scans * scanLen;
  const keys = new Uint32Array(total);
  const counted = new Uint8Array(total);
  let at = 0;
  let next = KEYS;
  for (let n = 0; n < ACCESSES; n++) {
    if (n > 0 && n % 100_000 === 0) for (let j = 0; j < scanLen; j++) keys[at++] = next++;
    counted[at] = 1;
    keys[at++] = perm[ranks[n]];
  }
  return { keys, counted, nkeys: next };
}

// --- the segment's layout (native/segment.cc ComputeLayout) ------------------
const pow2floor = (x) => 2 ** Math.floor(Math.log2(x));
const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));
function layout(size) {
  const ps = clamp(pow2floor(size / 2048), 4096, 1 << 20);
  const nshards = clamp(pow2floor(size / ps / 16), 4, 64);
  const buckets = Math.max(pow2floor(size / 256) / nshards, 64);
  const pagesOff = 4096 + nshards * 128 + nshards * buckets * 4 + 256 * 64 + 64;
  const npages = Math.floor((size - pagesOff) / (ps + 32 + 8 + ps / 512));
  return { ps, nshards, npages };
}
const keyLen = (k) => 2 + String(k).length; // `z:${k}`
const valueLen = (k) => (largeFrac > 0 && ((Math.imul(k, 0x9e3779b1) >>> 0) / 2 ** 32) < largeFrac ? 1000 : 100);
const entryBytes = (k) => (40 + keyLen(k) + valueLen(k) + 7) & ~7;
const hashOf = (k) => {
  let h = Math.imul(k ^ 0x5bd1e995, 0x9e3779b1);
  h ^= h >>> 15;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
};

// --- the page simulator ------------------------------------------------------
class Segment {
  constructor(size, policy, nkeys, capacityEntries) {
    Object.assign(this, layout(size));
    this.s3 = policy === 's3fifo' || policy === 'adaptive';
    this.adaptive = policy === 'adaptive';
    this.warmMain = this.adaptive || (this.s3 && WARMMAIN);
    this.cap = capacityEntries;
    const n = this.npages;
    this.owner = new Int32Array(n); // shard + 1, 0 free
    this.birth = new Float64Array(n);
    this.used = new Int32Array(n);
    this.queue = new Uint8Array(n); // 0 small, 1 main
    this.cls = new Uint8Array(n);
    this.entries = Array.from({ length: n }, () => []);
    this.cur = new Int32Array(this.nshards * 4).fill(-1); // [shard][cls][queue]
    this.clock = 0;
    this.where = new Int32Array(nkeys).fill(-1); // page of the key's live entry
    this.bit = new Uint8Array(nkeys);
    this.freeList = [];
    for (let i = n - 1; i >= 0; i--) this.freeList.push(i);
    const factor = Number(GHOST ?? (this.adaptive ? 16 : 1));
    const slots = this.s3 && factor > 0 ? pow2floor(clamp(((n * this.ps) / 128) * factor, 64, MAX_GHOST_SLOTS)) : 0;
    this.ghost = new Uint16Array(slots);
    this.evictions = 0;
    this.maxFreq = this.s3 ? Number(FREQ ?? (this.adaptive ? 1 : 3)) : 1;
    this.share = SMALL;
    // Each queue's pages in birth order from qhead[q]; a slot is stale when
    // its page was freed, relabelled or reborn since (qbirth differs).
    this.qlist = [[], []];
    this.qbirth = [[], []];
    this.qhead = [0, 0];
    this.smallCount = 0;
  }
  qpush(p) {
    const q = this.queue[p];
    this.qlist[q].push(p);
    this.qbirth[q].push(this.birth[p]);
  }
  valid(q, j) {
    const p = this.qlist[q][j];
    return this.owner[p] && this.queue[p] === q && this.birth[p] === this.qbirth[q][j];
  }
  get(k) {
    if (this.where[k] >= 0) {
      if (this.bit[k] < this.maxFreq) this.bit[k]++;
      return true;
    }
    return false;
  }
  curIndex(si, cls, q) {
    return si * 4 + cls * 2 + (this.s3 ? q : 0);
  }
  // Moves the adaptive share by `entries` entries' worth.
  move(entries) {
    if (this.cap) this.share = clamp(this.share + entries / this.cap, MINSHARE, MAXSHARE);
  }
  set(k) {
    const h = hashOf(k);
    const si = h % this.nshards;
    const bytes = entryBytes(k);
    const cls = bytes <= 512 ? 0 : 1;
    let q = 0;
    if (this.ghost.length > 0) {
      const slot = h & (this.ghost.length - 1);
      const fp = (h >>> 16) | 1;
      const g = this.ghost[slot];
      if (this.adaptive ? (g & ~FROM_MAIN) === (fp & ~FROM_MAIN) : g === fp) {
        q = 1;
        this.ghost[slot] = 0;
        if (this.adaptive) this.move(g & FROM_MAIN ? -STEP : STEP);
      }
    }
    const ci = this.curIndex(si, cls, q);
    let p = this.cur[ci];
    if (p >= 0 && this.used[p] + bytes > this.ps) {
      this.cur[ci] = -1;
      p = -1;
    }
    if (p < 0) {
      const free = this.freeList.length > 0;
      p = free ? this.freeList.pop() : this.evictForPage();
      this.owner[p] = si + 1;
      this.birth[p] = ++this.clock;
      this.used[p] = 0;
      // A free page (nothing had to be evicted for it) may start in main:
      // the small FIFO only filters what would displace something.
      this.queue[p] = this.s3 ? (free && this.warmMain ? 1 : q) : 0;
      if (this.queue[p] === 0) this.smallCount++;
      this.qpush(p);
      this.cls[p] = cls;
      this.entries[p] = [];
      this.cur[ci] = p;
    }
    this.used[p] += bytes;
    this.entries[p].push(k);
    this.where[k] = p;
    this.bit[k] = 0;
  }
  // The policy's choice: the up-to-16 oldest pages of the queue to evict from.
  candidates() {
    const small = this.smallCount;
    const want = this.s3 && !(small > this.share * this.npages || small === this.npages) ? 1 : 0;
    const c = [];
    const L = this.qlist[want];
    while (this.qhead[want] < L.length && !this.valid(want, this.qhead[want])) this.qhead[want]++;
    if (this.qhead[want] > 100_000) {
      L.splice(0, this.qhead[want]);
      this.qbirth[want].splice(0, this.qhead[want]);
      this.qhead[want] = 0;
    }
    for (let j = this.qhead[want]; j < L.length && c.length < 16; j++) if (this.valid(want, j)) c.push(L[j]);
    return c;
  }
  evictForPage() {
    for (let round = 0; round < 8; round++) {
      const secondChance = round < 7;
      for (const idx of this.candidates()) {
        if (this.evictSpan(this.owner[idx] - 1, idx, secondChance)) return idx;
        if (this.freeList.length) return this.freeList.pop();
      }
    }
    throw new Error('nothing evictable');
  }
  // True when the page was freed (and is handed to the caller).
  evictSpan(ti, head, secondChance) {
    const fromSmall = this.s3 && this.queue[head] === 0;
    const kept = [];
    let keptBytes = 0;
    for (const k of this.entries[head]) {
      if (this.where[k] !== head) continue;
      const b = this.bit[k];
      if (secondChance && b >= 1) {
        this.bit[k] = fromSmall ? 0 : b - 1;
        kept.push(k);
        keptBytes += entryBytes(k);
      } else {
        this.where[k] = -1;
        this.evictions++;
        if (this.ghost.length > 0 && (fromSmall || this.adaptive)) {
          const h = hashOf(k);
          const fp = (h >>> 16) | 1;
          this.ghost[h & (this.ghost.length - 1)] = this.adaptive ? (fp & ~FROM_MAIN) | (fromSmall ? 0 : FROM_MAIN) : fp;
        }
      }
    }
    if (this.adaptive && fromSmall && kept.length === 0) this.move(-SCANSHRINK);
    const cls = this.cls[head];
    const ci = this.curIndex(ti, cls, 1);
    const cur = this.cur[ci];
    const place = (p, ks) => {
      for (const k of ks) {
        this.entries[p].push(k);
        this.where[k] = p;
        this.used[p] += entryBytes(k);
      }
    };
    if (kept.length && cur >= 0 && cur !== head && this.used[cur] + keptBytes <= this.ps) {
      place(cur, kept);
      kept.length = 0;
    }
    if (kept.length) {
      this.entries[head] = [];
      this.used[head] = 0;
      place(head, kept);
      this.birth[head] = ++this.clock;
      if (this.queue[head] === 0 && this.s3) this.smallCount--;
      this.queue[head] = this.s3 ? 1 : 0;
      this.qpush(head);
      const curNow = this.cur[ci];
      if (curNow !== head && (curNow < 0 || this.used[curNow] > keptBytes)) this.cur[ci] = head;
      return false;
    }
    for (let j = 0; j < this.cur.length; j++) if (this.cur[j] === head) this.cur[j] = -1;
    if (this.queue[head] === 0) this.smallCount--;
    this.owner[head] = 0;
    this.entries[head] = [];
    return true;
  }
  // Entries held when the first eviction happens (bench/zipf.mjs's capacity).
  static capacity(size) {
    const s = new Segment(size, 'clock', 4_000_000, 0);
    let i = 0;
    while (s.evictions === 0) s.set(KEYS + i++);
    let live = 0;
    for (let p = 0; p < s.npages; p++) for (const k of s.entries[p]) if (s.where[k] === p) live++;
    return live;
  }
}

// Perfect LFU (the `lfu` bound above): held keys by count, each count's in
// the order they reached it.
function runLfu(trace, capacityEntries) {
  const { keys, counted, nkeys } = trace;
  const count = new Uint32Array(nkeys);
  const held = new Uint8Array(nkeys);
  const byCount = [];
  const holders = (c) => byCount[c] ?? (byCount[c] = new Set());
  let size = 0;
  let hits = 0;
  let n = 0;
  const windows = [];
  let windowHits = 0;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const c = ++count[k];
    const hit = held[k] === 1;
    if (hit) {
      byCount[c - 1].delete(k);
      holders(c).add(k);
    } else if (size < capacityEntries) {
      held[k] = 1;
      size++;
      holders(c).add(k);
    } else {
      let low = 1;
      while (!byCount[low]?.size) low++;
      if (c >= low) {
        const victim = byCount[low].values().next().value;
        byCount[low].delete(victim);
        held[victim] = 0;
        held[k] = 1;
        holders(c).add(k);
      }
    }
    if ((!counted || counted[i]) && i >= WARM) {
      n++;
      if (hit) hits++;
      if (WINDOW > 0 && n % WINDOW === 0) {
        windows.push((((hits - windowHits) / WINDOW) * 100).toFixed(1));
        windowHits = hits;
      }
    }
  }
  if (WINDOW > 0) console.log(`  lfu: ${windows.join(' ')}`);
  return hits / n;
}

function run(policy, trace, size, capacityEntries) {
  if (policy === 'lfu') return runLfu(trace, capacityEntries);
  const { keys, counted } = trace;
  let hits = 0;
  let n = 0;
  if (policy === 'lru') {
    const keyBytes = keyLen(500_000);
    const lru = new LRUCache({ maxSize: capacityEntries * (keyBytes + 100), sizeCalculation: (v, k) => keyLen(k) + v });
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      const hit = lru.get(k) !== undefined;
      if (!hit) lru.set(k, valueLen(k));
      if ((!counted || counted[i]) && i >= WARM) {
        n++;
        if (hit) hits++;
      }
    }
    return hits / n;
  }
  const seg = new Segment(size, policy, trace.nkeys, capacityEntries);
  const windows = [];
  let windowHits = 0;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const hit = seg.get(k);
    if (!hit) seg.set(k);
    if ((!counted || counted[i]) && i >= WARM) {
      n++;
      if (hit) hits++;
      if (WINDOW > 0 && n % WINDOW === 0) {
        windows.push(windowOf(seg, (hits - windowHits) / WINDOW));
        windowHits = hits;
      }
    }
  }
  if (WINDOW > 0) console.log(`  ${policy}: ${windows.join(' ')}`);
  return hits / n;
}

// One --window's figures: its hit ratio, and for S3-FIFO the small share and
// how many of main's entries are scan keys, in thousands.
function windowOf(seg, ratio) {
  if (!seg.s3) return (ratio * 100).toFixed(1);
  let main = 0;
  let scanKeys = 0;
  for (let k = 0; k < seg.where.length; k++) {
    const p = seg.where[k];
    if (p >= 0 && seg.queue[p] === 1) {
      main++;
      if (k >= KEYS) scanKeys++;
    }
  }
  return `${(ratio * 100).toFixed(1)}/${(seg.share * 100).toFixed(0)}%/${Math.round(scanKeys / 1000)}k:${Math.round(main / 1000)}k`;
}

// The segment size whose capacity is about `pct`% of the keys.
function sizeFor(pct) {
  const target = (KEYS * pct) / 100;
  let lo = 1 << 20;
  let hi = 1 << 30;
  for (let i = 0; i < 30 && hi - lo > 4096; i++) {
    const mid = Math.round((lo + hi) / 2);
    const l = layout(mid);
    const approx = l.npages * Math.floor(l.ps / 152);
    if (approx < target) lo = mid;
    else hi = mid;
  }
  return hi;
}

const out = [];
for (const pct of sizes) {
  const size = sizeFor(pct);
  const capacityEntries = Segment.capacity(size);
  const peerEntries = Number(opt('capacity', capacityEntries));
  for (const t of traces) {
    const trace = makeTrace(t, capacityEntries);
    const row = { pct, size, capacityEntries, trace: t };
    for (const p of policies) row[p] = run(p, trace, size, p === 'lru' || p === 'lfu' ? peerEntries : capacityEntries);
    out.push(row);
    if (!args.includes('--json')) {
      console.log(
        `${String(pct).padStart(3)}% ${t.padEnd(6)} ${String(capacityEntries).padStart(7)} entries ` +
          policies.map((p) => `${p} ${(row[p] * 100).toFixed(2)}`).join('  '),
      );
    }
  }
}
if (args.includes('--json')) console.log(JSON.stringify(out));
