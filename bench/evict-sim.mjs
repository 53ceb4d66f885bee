// Eviction policies simulated on the segment's real page structure, before
// any of them goes into native code: pages of the layout's page size (the
// same ComputeLayout arithmetic as native/segment.cc), shards each with a
// current page per size class, entries appended to it (40-byte header, key,
// value, 8-byte aligned), an access bit per entry set by hits, and eviction
// of whole one-page spans with a second chance for touched entries, which
// move to their shard's current page or are compacted in place. Policies:
//
//   clock   today's policy (native/alloc.cc before S3-FIFO): one FIFO of
//           pages by birth, oldest of up to 16 candidates evicted first,
//           touched entries kept;
//   s3fifo  S3-FIFO (Yang et al., SOSP'23) at page granularity: new entries
//           go to a small FIFO of pages (pages labelled "small"); when small
//           pages are over `small` of the heap the oldest small page is
//           evicted: its touched entries move to the main FIFO (the shard's
//           main current page, or the page compacted and relabelled main),
//           the others are dropped and their key hashes go to a ghost table;
//           a miss whose key is in the ghost table is inserted into main
//           directly. Main pages are evicted as clock does (touched entries
//           get a second chance in main);
//   s3noghost  s3fifo without the ghost table;
//   lru     lru-cache with the same key+value bytes (sizeCalculation by entry
//           bytes), as bench/zipf.mjs compares.
//
// Traces (bench/zipf.mjs's generator, seed and key permutation):
//   zipf    s = 0.99 over 1,000,000 keys, 2,000,000 accesses;
//   scan    zipf plus, every 100,000 zipf accesses, one pass over new keys,
//           twice the cache's entries (the hit ratio counts zipf accesses);
//   shift   zipf whose hot set moves: every 250,000 accesses the rank-to-key
//           mapping rotates by 100,003 keys.
// Each access is a get; a miss sets the value (100 bytes; --large F makes a
// fraction F of keys 1,000-byte values, the large size class).
//
//   node bench/evict-sim.mjs [--sizes 1,2,5,10,20,30] [--traces zipf,scan,shift]
//                            [--policies clock,s3fifo,s3noghost,lru] [--small 0.1]
//                            [--ghost 1] [--large 0] [--json]
// Variants tried (docs/benchmark.md): --freq 1|3 (access counts kept, 3 =
// two bits), --adapt R, --warm-main; --warm N and --accesses N for the
// steady state.
import { LRUCache } from 'lru-cache';
import { zipfTrace } from './zipf-trace.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const sizes = opt('sizes', '1,2,5,10,20,30').split(',').map(Number);
const traces = opt('traces', 'zipf,scan,shift').split(',');
const policies = opt('policies', 'clock,s3fifo,s3noghost,lru').split(',');
const smallFrac = Number(opt('small', '0.1'));
const ghostFactor = Number(opt('ghost', '1'));
const largeFrac = Number(opt('large', '0'));
// Access counts an entry keeps (s3fifo, s3noghost): 1 = one access bit; 3 =
// two bits (entries of 128 bytes or more have two bits of the bitmap). Main
// evictions keep an entry whose count is nonzero, one count lower.
const maxFreq = Number(opt('freq', '3'));
const KEYS = 1_000_000;
// --adapt R: while small pages are over R times their share, promotion from
// small asks for two touches (the probation is longer than it should be).
const ADAPT = Number(opt('adapt', '0'));
// --warm-main: pages taken while free pages remain start in main (tried: worse).
const WARMMAIN = process.argv.includes('--warm-main');
// --warm N: accesses before N count for nothing (default 0, as bench/zipf.mjs).
const WARM = Number(opt('warm', '0'));
const ACCESSES = Number(opt('accesses', '2000000'));

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
  constructor(size, policy, nkeys) {
    Object.assign(this, layout(size));
    this.policy = policy;
    this.s3 = policy !== 'clock';
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
    const ghostSlots = policy === 's3fifo' ? pow2floor(Math.max(64, ((n * this.ps) / 128) * ghostFactor)) : 0;
    this.ghost = new Uint16Array(ghostSlots);
    this.evictions = 0;
    this.maxFreq = this.s3 ? maxFreq : 1;
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
  set(k) {
    const h = hashOf(k);
    const si = h % this.nshards;
    const bytes = entryBytes(k);
    const cls = bytes <= 512 ? 0 : 1;
    let q = 0;
    if (this.ghost.length > 0) {
      const slot = h & (this.ghost.length - 1);
      const fp = (h >>> 16) | 1;
      if (this.ghost[slot] === fp) {
        q = 1;
        this.ghost[slot] = 0;
      }
    }
    const ci = this.curIndex(si, cls, q);
    let p = this.cur[ci];
    if (p >= 0 && this.used[p] + bytes > this.ps) {
      this.cur[ci] = -1;
      p = -1;
    }
    if (p < 0) {
      // A free page (nothing had to be evicted for it) starts in main:
      // the small FIFO only filters what would displace something.
      const free = this.freeList.length > 0;
      p = free ? this.freeList.pop() : this.evictForPage();
      this.owner[p] = si + 1;
      this.birth[p] = ++this.clock;
      this.used[p] = 0;
      this.queue[p] = free && WARMMAIN ? 1 : q;
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
    let small = 0;
    for (let i = 0; i < this.npages; i++) if (this.owner[i] && this.queue[i] === 0) small++;
    this.smallRatio = small / this.npages / smallFrac;
    let want = -1;
    if (this.s3) want = small > smallFrac * this.npages || small === this.npages ? 0 : 1;
    const c = [];
    for (let i = 0; i < this.npages; i++) {
      if (!this.owner[i] || (want >= 0 && this.queue[i] !== want)) continue;
      c.push(i);
    }
    c.sort((a, b) => this.birth[a] - this.birth[b]);
    return c.slice(0, 16);
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
      const need = fromSmall && ADAPT > 0 && this.smallRatio > ADAPT ? 2 : 1;
      if (secondChance && this.bit[k] >= need) {
        this.bit[k] = fromSmall ? 0 : this.bit[k] - 1;
        kept.push(k);
        keptBytes += entryBytes(k);
      } else {
        this.where[k] = -1;
        this.evictions++;
        if (fromSmall && this.ghost.length > 0) {
          const h = hashOf(k);
          this.ghost[h & (this.ghost.length - 1)] = (h >>> 16) | 1;
        }
      }
    }
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
      this.queue[head] = 1;
      const curNow = this.cur[ci];
      if (curNow !== head && (curNow < 0 || this.used[curNow] > keptBytes)) this.cur[ci] = head;
      return false;
    }
    for (let j = 0; j < this.cur.length; j++) if (this.cur[j] === head) this.cur[j] = -1;
    this.owner[head] = 0;
    this.entries[head] = [];
    return true;
  }
  // Entries held when the first eviction happens (bench/zipf.mjs's capacity).
  static capacity(size) {
    const s = new Segment(size, 'clock', 4_000_000);
    let i = 0;
    while (s.evictions === 0) s.set(KEYS + i++);
    let live = 0;
    for (let p = 0; p < s.npages; p++) for (const k of s.entries[p]) if (s.where[k] === p) live++;
    return live;
  }
}

function run(policy, trace, size, capacityEntries) {
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
  const seg = new Segment(size, policy, trace.nkeys);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const hit = seg.get(k);
    if (!hit) seg.set(k);
    if ((!counted || counted[i]) && i >= WARM) {
      n++;
      if (hit) hits++;
    }
  }
  return hits / n;
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
  for (const t of traces) {
    const trace = makeTrace(t, capacityEntries);
    const row = { pct, size, capacityEntries, trace: t };
    for (const p of policies) row[p] = run(p, trace, size, capacityEntries);
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
