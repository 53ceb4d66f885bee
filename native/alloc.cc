// Heap pages: each shard appends its entries to a page it owns (its current
// page of the entry's size class and queue); values larger than a page get a
// span of contiguous pages. When no page is free, the span the policy
// (evict.h) names is evicted: its entries that readers touched since they
// were written move to their shard's current main page when there is room,
// or stay compacted in the page, now a main one (a second chance); the rest
// are dropped, and the page changes hands. Page ownership is one atomic word per
// page, changed only by the owner shard's lock holder or by a CAS from free,
// so a process that dies anywhere leaves every page owned by exactly one
// shard or free; the shard's repair (DropShard) frees whatever it owned.
#include <sched.h>

#include <algorithm>

#include "crash.h"
#include "evict.h"
#include "lock.h"
#include "table.h"

namespace shmcache {

namespace {

constexpr uint32_t kCandidates = EvictPolicy::kCandidates;
constexpr uint32_t kScanLimit = 4096;
constexpr uint32_t kMaxSteps = 1u << 20;  // longest chain walked before calling it a cycle
// Chain steps one span's eviction may take to unlink its entries: a base
// plus 64 per entry the span can hold. Honest chains are a few entries long,
// so only a chain another process wrote (or flooded with colliding keys)
// gets near it; past it the shard is dropped as damaged, rather than one
// set() walking a long chain once per entry, under the shard's lock.
constexpr uint64_t kEvictStepsBase = 1u << 16;
constexpr uint64_t kEvictStepsPerEntry = 64;

bool Passed(const std::vector<uint64_t>& bits, uint32_t i) {
  return (bits[i / 64] >> (i % 64)) & 1;
}
void MarkPassed(std::vector<uint64_t>* bits, uint32_t i) {
  (*bits)[i / 64] |= uint64_t{1} << (i % 64);
}

}  // namespace

// Every number read from a page record or an entry is read once (Load) and
// checked in 64-bit arithmetic before it is used: another process may have
// written anything there, at any time.

void Store::Touch(uint64_t heap_off) const {
  if (seg_.read_only() || heap_off >= heap_bytes()) return;
  uint8_t& byte = access_bits()[heap_off / 512];
  uint8_t bit = static_cast<uint8_t>(1u << ((heap_off / 64) & 7));
  auto a = Atomic(byte);
  if ((a.load(std::memory_order_relaxed) & bit) == 0) a.fetch_or(bit, std::memory_order_relaxed);
}

bool Store::Touched(uint64_t heap_off) const {
  if (heap_off >= heap_bytes()) return false;
  uint8_t& byte = access_bits()[heap_off / 512];
  uint8_t bit = static_cast<uint8_t>(1u << ((heap_off / 64) & 7));
  return (Atomic(byte).load(std::memory_order_relaxed) & bit) != 0;
}

void Store::Untouch(uint64_t heap_off) const {
  if (heap_off >= heap_bytes()) return;
  uint8_t& byte = access_bits()[heap_off / 512];
  uint8_t bit = static_cast<uint8_t>(1u << ((heap_off / 64) & 7));
  auto a = Atomic(byte);
  if ((a.load(std::memory_order_relaxed) & bit) != 0)
    a.fetch_and(static_cast<uint8_t>(~bit), std::memory_order_relaxed);
}

uint32_t Store::HeadOf(uint32_t si, uint32_t ref) const {
  const Layout& l = L();
  uint64_t idx = OffsetOf(ref) / l.page_size;
  if (idx >= l.npages) return kNoPage;
  Page* p = page(static_cast<uint32_t>(idx));
  uint32_t head = Load(p->head);
  if (head > idx || Load(p->owner) != si + 1) return kNoPage;
  Page* hp = page(head);
  if (Load(hp->owner) != si + 1 || idx >= uint64_t{head} + Load(hp->span)) return kNoPage;
  return head;
}

void Store::FreeSpan(uint32_t head, uint32_t new_owner) {
  const Layout& l = L();
  if (head >= l.npages) return;
  Page* hp = page(head);
  uint32_t owner = Load(hp->owner);
  uint64_t span = std::max<uint32_t>(Load(hp->span), 1);
  if (head + span > l.npages) span = l.npages - head;
  // A damaged span record must not free pages of another shard, nor of
  // another span.
  for (uint64_t j = uint64_t{head} + 1; j < head + span; ++j) {
    Page* p = page(static_cast<uint32_t>(j));
    if (Load(p->owner) != owner || Load(p->head) != head) {
      span = j - head;
      break;
    }
  }
  uint64_t bytes = span * l.page_size;
  // Clear the access hints of the whole span (8 pages share no bitmap byte
  // with another span since pages are at least 4 KiB: 64 bits per 4 KiB).
  std::memset(access_bits() + uint64_t{head} * l.page_size / 512, 0, bytes / 512);
  for (uint64_t j = head; j < head + span; ++j) {
    uint32_t i = static_cast<uint32_t>(j);
    Page* p = page(i);
    BumpEpoch(i);
    Atomic(p->head).store(i, std::memory_order_relaxed);
    Atomic(p->span).store(0, std::memory_order_relaxed);
    Atomic(p->used).store(0, std::memory_order_relaxed);
    Atomic(p->live).store(0, std::memory_order_relaxed);
    Atomic(p->owner).store(new_owner, std::memory_order_release);
  }
}

void Store::AfterUnlink(uint32_t si, uint32_t head) {
  if (head == kNoPage) return;
  Page* hp = page(head);
  if (Load(hp->live) == 0 && !IsCurrent(shard(si), head)) FreeSpan(head, 0);
}

void Store::DropShard(uint32_t si) {
  const Layout& l = L();
  Shard* sh = shard(si);
  auto seq = Atomic(sh->seq);
  uint32_t s = seq.load(std::memory_order_relaxed);
  if ((s & 1) == 0) WriteBegin(sh->seq);
  std::memset(buckets(si), 0, uint64_t{l.buckets} * 4);
  for (uint32_t j = 0; j < l.npages; ++j) {
    if (Load(page(j)->owner) == si + 1) {
      Atomic(page(j)->span).store(1, std::memory_order_relaxed);  // free it alone
      FreeSpan(j, 0);
    }
  }
  Atomic(sh->cur_page[0]).store(kNoPage, std::memory_order_relaxed);
  Atomic(sh->cur_page[1]).store(kNoPage, std::memory_order_relaxed);
  Atomic(sh->main_page[0]).store(kNoPage, std::memory_order_relaxed);
  Atomic(sh->main_page[1]).store(kNoPage, std::memory_order_relaxed);
  Atomic(sh->timed).store(0, std::memory_order_relaxed);
  Atomic(sh->count).store(0, std::memory_order_relaxed);
  Atomic(sh->used).store(0, std::memory_order_relaxed);
  WriteReset(sh->seq);
}

// Takes one free page, or `k` contiguous free pages, for shard `si`.
uint32_t Store::TakeFreePages(uint32_t si, uint32_t k) {
  Header* h = header();
  uint32_t n = L().npages;
  if (k == 1) {
    uint32_t start = Load(h->free_hint) % n;
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t idx = static_cast<uint32_t>((uint64_t{start} + i) % n);
      Page* p = page(idx);
      uint32_t expected = 0;
      if (Load(p->owner) == 0 && Atomic(p->owner).compare_exchange_strong(expected, si + 1)) {
        Atomic(p->head).store(idx, std::memory_order_relaxed);
        Atomic(p->span).store(0, std::memory_order_relaxed);
        Atomic(h->free_hint).store(idx + 1, std::memory_order_relaxed);
        return idx;
      }
    }
    return kNoPage;
  }
  if (k == 0 || k > n) return kNoPage;
  uint32_t run = 0;
  for (uint32_t idx = 0; idx < n; ++idx) {
    run = Load(page(idx)->owner) == 0 ? run + 1 : 0;
    if (run < k) continue;
    uint32_t first = idx + 1 - k;
    uint32_t taken = 0;
    for (; taken < k; ++taken) {
      uint32_t expected = 0;
      Page* p = page(first + taken);
      if (!Atomic(p->owner).compare_exchange_strong(expected, si + 1)) break;
      Atomic(p->head).store(first + taken, std::memory_order_relaxed);
      Atomic(p->span).store(0, std::memory_order_relaxed);
    }
    if (taken == k) return first;
    for (uint32_t j = 0; j < taken; ++j) FreeSpan(first + j, 0);
    run = 0;
    idx = first + taken;
  }
  return kNoPage;
}

// Copies the `bytes` of entries gathered in scratch_ to heap offset `dst`
// and links each into its bucket of shard `ti`, with no access hint (caller
// between WriteBegin/WriteEnd). The entries are walked in scratch_, which
// only this process writes (their `alloc` words were set from the checked
// values), never in the mapping.
void Store::PlaceKept(uint32_t ti, uint64_t dst, uint64_t bytes) {
  uint32_t mask = L().buckets - 1;
  std::memcpy(heap() + dst, scratch_.data(), bytes);
  for (uint64_t off = 0; off < bytes;) {
    Entry kept;
    std::memcpy(&kept, scratch_.data() + off, kEntryBytes);
    Entry* e = reinterpret_cast<Entry*>(heap() + dst + off);
    uint32_t* bucket = &buckets(ti)[kept.hash & mask];
    Atomic(e->next).store(Load(*bucket), std::memory_order_relaxed);
    Atomic(e->flags).store(kLive, std::memory_order_relaxed);
    Atomic(*bucket).store(RefOf(dst + off), std::memory_order_relaxed);
    Untouch(dst + off);
    off += kept.alloc;
  }
}

// Evicts the span at `head` of shard `ti` (lock held). With `second_chance`,
// the live entries of a one-page span that readers touched since they were
// written are kept: compacted to the start of the page, which stays with the
// shard (kCompacted). Otherwise every entry is dropped and the pages of the
// span in [lo, hi) pass to `to`, the others become free (kFreed). A damaged
// span drops the whole shard instead (kDamaged).
Store::Evicted Store::EvictSpan(uint32_t ti, uint32_t head, uint32_t lo, uint32_t hi, uint32_t to,
                                bool second_chance) {
  Header* h = header();
  const Layout& l = L();
  Shard* sh = shard(ti);
  const uint64_t ps = l.page_size;
  if (head >= l.npages) {
    RepairShard(ti);
    return Evicted::kDamaged;
  }
  Page* hp = page(head);
  uint32_t span = Load(hp->span);
  uint64_t used = Load(hp->used);
  bool sound = span != 0 && uint64_t{head} + span <= l.npages && used <= span * ps &&
               Load(hp->owner) == ti + 1 && Load(hp->head) == head;
  // Every page the span claims must be one of its own continuation pages:
  // otherwise freeing the span would hand out another shard's pages.
  for (uint64_t j = uint64_t{head} + 1; sound && j < uint64_t{head} + span; ++j) {
    Page* p = page(static_cast<uint32_t>(j));
    sound = Load(p->owner) == ti + 1 && Load(p->head) == head && Load(p->span) == 0;
  }
  if (!sound) {
    RepairShard(ti);
    return Evicted::kDamaged;
  }
  second_chance = second_chance && span == 1;
  if (scratch_.size() < ps) scratch_.resize(ps);
  if (!evict_.ready()) evict_.Init(heap_bytes());
  const uint32_t cls_word = Load(hp->cls);
  uint64_t now = 0;
  uint64_t base = uint64_t{head} * ps;
  uint64_t kept = 0;
  bool damaged = false;
  uint32_t mask = l.buckets - 1;
  uint64_t budget = kEvictStepsBase + kEvictStepsPerEntry * (used / kEntryBytes);
  // Refs of this (one-page) span's entries that a walk unlinked in passing.
  static thread_local std::vector<uint64_t> passed;
  const uint32_t ref_lo = RefOf(base), ref_hi = RefOf(base + used);
  passed.clear();
  if (span == 1) passed.assign((ref_hi - ref_lo) / 64 + 1, 0);
  WriteBegin(sh->seq);
  for (uint64_t off = 0; off < used;) {
    if (off + kEntryBytes > used) {
      damaged = true;
      break;
    }
    Entry* e = reinterpret_cast<Entry*>(heap() + base + off);
    Entry hdr;
    LoadHeader(e, &hdr);
    uint64_t a = hdr.alloc;
    if (a < kEntryBytes || a % 8 != 0 || off + a > used) {
      damaged = true;
      break;
    }
    if (hdr.flags & kLive) {
      uint32_t ref = RefOf(base + off);
      if (passed.empty() || !Passed(passed, ref - ref_lo)) {
        uint32_t* link = &buckets(ti)[hdr.hash & mask];
        uint32_t steps = 0;
        CycleGuard guard;
        for (uint32_t at = Load(*link);
             at != 0 && at != ref && ++steps < kMaxSteps && !guard.Seen(at); at = Load(*link)) {
          Entry* x = EntryAt(at);
          if (x == nullptr) break;
          if (!passed.empty() && at > ref && at < ref_hi) {
            // An entry of this span that the walk passes (a newer one of the
            // same chain: honest chains are newest first) is unlinked now,
            // so that a long chain is walked once, not once per entry.
            Atomic(*link).store(Load(x->next), std::memory_order_relaxed);
            MarkPassed(&passed, at - ref_lo);
            continue;
          }
          link = &x->next;
        }
        if (Load(*link) != ref || steps > budget) {
          damaged = true;
          break;
        }
        budget -= steps;
        Atomic(*link).store(hdr.next, std::memory_order_relaxed);
      }
      if (now == 0 && hdr.expires != 0) now = static_cast<uint64_t>(NowMs());
      bool live = IsLive(&hdr, now == 0 ? 1 : now);
      if (second_chance && live && EvictPolicy::Keeps(Touched(base + off))) {
        unsigned char* to_keep = scratch_.data() + kept;
        std::memcpy(to_keep, e, a);
        // The copy says what was checked, whatever the mapping says now.
        std::memcpy(to_keep + offsetof(Entry, hash), &hdr.hash, sizeof hdr.hash);
        std::memcpy(to_keep + offsetof(Entry, alloc), &hdr.alloc, sizeof hdr.alloc);
        kept += a;
      } else {
        CrashHere(CrashPoint::kEvict);
        uint32_t count = Load(sh->count);
        uint64_t sh_used = Load(sh->used);
        if (count == 0 || sh_used < a) {
          damaged = true;  // the counters do not hold this entry
          break;
        }
        Atomic(sh->count).store(count - 1, std::memory_order_relaxed);
        Atomic(sh->used).store(sh_used - a, std::memory_order_relaxed);
        uint32_t timed = Load(sh->timed);
        if (hdr.expires != 0 && timed > 0)
          Atomic(sh->timed).store(timed - 1, std::memory_order_relaxed);
        auto counter = Atomic(live ? sh->evictions : sh->expired);
        counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        if (live) evict_.Dropped(cls_word, hdr.hash);
      }
      Atomic(e->flags).store(0, std::memory_order_relaxed);
    }
    off += a;
  }
  if (damaged) {
    RepairShard(ti);
    return Evicted::kDamaged;
  }
  evict_.Evicted(cls_word, kept > 0);
  // Kept entries go to the current page of their class (a one-page span
  // holds one class only) in the queue the policy keeps them in.
  uint32_t cls = ClassOf(cls_word);
  const uint32_t queue = EvictPolicy::KeptQueue();
  uint32_t& cur_slot = CurrentSlot(sh, cls, queue);
  uint32_t cur = Load(cur_slot);
  Page* cp = nullptr;
  uint64_t cp_used = 0;
  if (cur != kNoPage && cur != head && cur < l.npages) {
    cp = page(cur);
    cp_used = Load(cp->used);
    // Only a sound current page takes entries: its `used` and the kept
    // bytes are added in 64 bits and must stay within the page.
    if (Load(cp->owner) != ti + 1 || Load(cp->span) != 1 || Load(cp->head) != cur || cp_used > ps ||
        Load(cp->cls) != (cls | queue))
      cp = nullptr;
  }
  if (kept > 0 && cp != nullptr && cp_used + kept <= ps) {
    // The kept entries fit in the shard's current page: move them there and
    // free this page whole.
    PlaceKept(ti, uint64_t{cur} * ps + cp_used, kept);
    Atomic(cp->used).store(static_cast<uint32_t>(cp_used + kept), std::memory_order_relaxed);
    Atomic(cp->live).store(static_cast<uint32_t>(Load(cp->live) + kept), std::memory_order_relaxed);
    CrashHere(CrashPoint::kPromote);
    kept = 0;
  }
  if (kept > 0) {
    // Rewrite the page with the kept entries only and link them again.
    BumpEpoch(head);
    std::memset(access_bits() + base / 512, 0, ps / 512);
    PlaceKept(ti, base, kept);
    CrashHere(CrashPoint::kPromote);
    Atomic(hp->cls).store(cls | queue, std::memory_order_relaxed);
    // A current page of the other queue it may have been is one no more.
    uint32_t& other = CurrentSlot(sh, cls, queue ^ kMainBit);
    if (Load(other) == head) Atomic(other).store(kNoPage, std::memory_order_relaxed);
    Atomic(hp->used).store(static_cast<uint32_t>(kept), std::memory_order_relaxed);
    Atomic(hp->live).store(static_cast<uint32_t>(kept), std::memory_order_relaxed);
    Atomic(hp->birth).store(Atomic(h->clock).fetch_add(1, std::memory_order_relaxed) + 1,
                            std::memory_order_relaxed);
    // The page with more room left becomes the shard's current page.
    if (cur != head && (cp == nullptr || cp_used > kept)) {
      Atomic(cur_slot).store(head, std::memory_order_relaxed);
      if (cp != nullptr && Load(cp->live) == 0) FreeSpan(cur, 0);
    }
    WriteEnd(sh->seq);
    return Evicted::kCompacted;
  }
  for (uint32_t* c : {&sh->cur_page[0], &sh->cur_page[1], &sh->main_page[0], &sh->main_page[1]}) {
    uint32_t v = Load(*c);
    if (v >= head && v < uint64_t{head} + span)
      Atomic(*c).store(kNoPage, std::memory_order_relaxed);
  }
  // Hand the pages over, continuation pages first.
  for (uint32_t j = head + span; j-- > head;) {
    Atomic(page(j)->span).store(1, std::memory_order_relaxed);
    FreeSpan(j, (j >= lo && j < hi) ? to : 0);
  }
  WriteEnd(sh->seq);
  return Evicted::kFreed;
}

// The policy's next spans to evict, from all page records or kScanLimit of
// them from a rotating start.
uint32_t Store::OldestSpans(uint32_t* out) {
  Header* h = header();
  uint32_t n = L().npages;
  uint32_t count = std::min(n, kScanLimit);
  uint32_t start = n > kScanLimit ? static_cast<uint32_t>(Load(h->clock) * 2654435761u) % n : 0;
  return evict_.Candidates(page(0), n, start, count, out);
}

// Frees one page for shard `si` (lock held) by evicting the oldest spans it
// can lock. Returns the page, now owned by `si`, or kNoPage with *busy set
// to a shard whose lock was taken by someone else.
uint32_t Store::EvictForPage(uint32_t si, uint32_t* busy) {
  const Layout& l = L();
  constexpr int kRounds = 8;
  *busy = kNoPage;
  for (int round = 0; round < kRounds; ++round) {
    bool second_chance = round < kRounds - 1;
    uint32_t cands[kCandidates];
    uint32_t found = OldestSpans(cands);
    bool progress = false;
    for (uint32_t c = 0; c < found; ++c) {
      uint32_t idx = cands[c];
      uint32_t owner = Atomic(page(idx)->owner).load(std::memory_order_acquire);
      if (owner == 0) {
        uint32_t p = TakeFreePages(si, 1);
        if (p != kNoPage) return p;
        continue;
      }
      uint32_t ti = owner - 1;
      if (ti >= l.nshards) {
        // A damaged owner word names no shard: nobody can own this page.
        if (Atomic(page(idx)->owner).compare_exchange_strong(owner, si + 1)) {
          Atomic(page(idx)->head).store(idx, std::memory_order_relaxed);
          Atomic(page(idx)->span).store(0, std::memory_order_relaxed);
          Atomic(shard(si)->repairs).fetch_add(1, std::memory_order_relaxed);
          return idx;
        }
        continue;
      }
      if (ti != si) {
        LockResult r = TryLock(&shard(ti)->mutex, &held_);
        if (r != LockResult::kLocked && r != LockResult::kOwnerDied) {
          if (*busy == kNoPage) *busy = ti;
          continue;
        }
        if (r == LockResult::kOwnerDied) {
          RepairShard(ti);
          MarkConsistent(&shard(ti)->mutex);
          Unlock(&shard(ti)->mutex, &held_);
          uint32_t p = TakeFreePages(si, 1);
          if (p != kNoPage) return p;
          progress = true;
          continue;
        }
      }
      Evicted result = Evicted::kDamaged;
      Page* p = page(idx);
      if (Load(p->owner) == ti + 1 && Load(p->span) > 0 && Load(p->head) == idx)
        result = EvictSpan(ti, idx, idx, idx + 1, si + 1, second_chance);
      if (ti != si) Unlock(&shard(ti)->mutex, &held_);
      if (result == Evicted::kFreed) return idx;
      progress = true;
      uint32_t q = TakeFreePages(si, 1);
      if (q != kNoPage) return q;
    }
    if (!progress) break;
  }
  uint32_t p = TakeFreePages(si, 1);
  if (p != kNoPage || *busy != kNoPage) return p;
  // Nothing evictable although no page is free: the page records are
  // damaged (in a sound segment every owned page belongs to a span). Drop a
  // shard that owns pages; that frees all of them.
  for (uint32_t j = 0; j < l.npages; ++j) {
    uint32_t owner = Load(page(j)->owner);
    if (owner == 0 || owner > l.nshards) continue;
    uint32_t ti = owner - 1;
    if (ti != si) {
      LockResult r = TryLock(&shard(ti)->mutex, &held_);
      if (r != LockResult::kLocked && r != LockResult::kOwnerDied) {
        *busy = ti;
        return kNoPage;
      }
      if (r == LockResult::kOwnerDied) MarkConsistent(&shard(ti)->mutex);
    }
    RepairShard(ti);
    if (ti != si) Unlock(&shard(ti)->mutex, &held_);
    return TakeFreePages(si, 1);
  }
  return kNoPage;
}

// Frees `k` contiguous pages for shard `si` (lock held), evicting whatever
// stands in the window that starts at the oldest span. Returns the first
// page only once every page of the window is claimed by `si` (an eviction
// that found `si` itself damaged drops it, and with it what was claimed:
// the window is then claimed again).
uint32_t Store::EvictForRun(uint32_t si, uint32_t k, uint32_t* busy) {
  const Layout& l = L();
  *busy = kNoPage;
  uint32_t cands[kCandidates];
  uint32_t found = OldestSpans(cands);
  uint32_t start = found > 0 ? cands[0] : 0;
  if (uint64_t{start} + k > l.npages) start = l.npages - k;
  auto claimed = [&](uint32_t j) {
    Page* p = page(j);
    return Load(p->owner) == si + 1 && Load(p->span) == 0 && Load(p->head) == j;
  };
  auto release = [&]() {
    for (uint32_t j = start; j < start + k; ++j)
      if (claimed(j)) FreeSpan(j, 0);
  };
  for (int round = 0; round < 4; ++round) {
    uint64_t steps = 0;
    for (uint32_t j = start; j < start + k && ++steps < 8ull * k + 64;) {
      if (claimed(j)) {
        ++j;
        continue;
      }
      Page* p = page(j);
      uint32_t owner = Atomic(p->owner).load(std::memory_order_acquire);
      if (owner == 0 || owner > l.nshards) {
        // Free, or owned by no shard (damage): take it.
        if (Atomic(p->owner).compare_exchange_strong(owner, si + 1)) {
          Atomic(p->head).store(j, std::memory_order_relaxed);
          Atomic(p->span).store(0, std::memory_order_relaxed);
          ++j;
        }
        continue;
      }
      uint32_t ti = owner - 1;
      if (ti != si) {
        LockResult r = TryLock(&shard(ti)->mutex, &held_);
        if (r != LockResult::kLocked && r != LockResult::kOwnerDied) {
          release();
          *busy = ti;
          return kNoPage;
        }
        if (r == LockResult::kOwnerDied) {
          RepairShard(ti);
          MarkConsistent(&shard(ti)->mutex);
          Unlock(&shard(ti)->mutex, &held_);
          continue;
        }
      }
      if (Load(p->owner) == ti + 1) {
        uint32_t head = Load(p->head);
        Page* hp = head < l.npages ? page(head) : nullptr;
        if (hp != nullptr && Load(hp->owner) == ti + 1 && Load(hp->span) > 0 && head <= j &&
            j < uint64_t{head} + Load(hp->span)) {
          EvictSpan(ti, head, start, start + k, si + 1, false);
        } else {
          // Ownership without a consistent span: the shard is damaged.
          RepairShard(ti);
        }
      }
      if (ti != si) Unlock(&shard(ti)->mutex, &held_);
    }
    bool all = true;
    for (uint32_t j = start; j < start + k && all; ++j) all = claimed(j);
    if (all) return start;
  }
  release();
  return kNoPage;
}

uint32_t Store::Allocate(uint32_t si, uint64_t bytes, uint32_t h32, uint32_t* busy) {
  Header* h = header();
  const Layout& l = L();
  Shard* sh = shard(si);
  const uint64_t ps = l.page_size;
  *busy = kNoPage;
  uint32_t first;
  uint64_t off;
  const uint32_t queue = evict_.QueueOf(h32, bytes);
  if (bytes <= ps) {
    uint32_t cls = SizeClass(bytes);
    uint32_t& cur_slot = CurrentSlot(sh, cls, queue);
    uint32_t cur = Load(cur_slot);
    if (cur != kNoPage) {
      Page* cp = cur < l.npages ? page(cur) : nullptr;
      uint64_t used = cp != nullptr ? Load(cp->used) : 0;
      if (cp == nullptr || Load(cp->owner) != si + 1 || Load(cp->span) != 1 ||
          Load(cp->head) != cur || used > ps || Load(cp->cls) != (cls | queue)) {
        // Damaged: forget it; the shard is dropped when it is unlocked.
        Atomic(cur_slot).store(kNoPage, std::memory_order_relaxed);
        NoteDamage(si);
      } else if (used + bytes <= ps) {
        off = uint64_t{cur} * ps + used;
        Atomic(cp->used).store(static_cast<uint32_t>(used + bytes), std::memory_order_relaxed);
        goto write;
      } else {
        Atomic(cur_slot).store(kNoPage, std::memory_order_relaxed);
        if (Load(cp->live) == 0) FreeSpan(cur, 0);
      }
    }
    first = TakeFreePages(si, 1);
    evict_.SawFreePage(first != kNoPage);
    if (first == kNoPage) first = EvictForPage(si, busy);
    if (first == kNoPage || first >= l.npages) return 0;
    CrashHere(CrashPoint::kAlloc);
    Page* p = page(first);
    Atomic(p->head).store(first, std::memory_order_relaxed);
    Atomic(p->used).store(static_cast<uint32_t>(bytes), std::memory_order_relaxed);
    Atomic(p->live).store(0, std::memory_order_relaxed);
    Atomic(p->birth).store(Atomic(h->clock).fetch_add(1, std::memory_order_relaxed) + 1,
                           std::memory_order_relaxed);
    Atomic(p->span).store(1, std::memory_order_relaxed);
    Atomic(p->cls).store(cls | queue, std::memory_order_relaxed);
    Atomic(cur_slot).store(first, std::memory_order_relaxed);
    off = uint64_t{first} * ps;
  } else {
    uint64_t k64 = (bytes + ps - 1) / ps;
    if (k64 > l.npages) return 0;
    uint32_t k = static_cast<uint32_t>(k64);
    first = TakeFreePages(si, k);
    evict_.SawFreePage(first != kNoPage);
    if (first == kNoPage) first = EvictForRun(si, k, busy);
    if (first == kNoPage || uint64_t{first} + k > l.npages) return 0;
    for (uint32_t j = first + 1; j < first + k; ++j) {
      Atomic(page(j)->head).store(first, std::memory_order_relaxed);
      Atomic(page(j)->span).store(0, std::memory_order_relaxed);
    }
    Page* p = page(first);
    Atomic(p->head).store(first, std::memory_order_relaxed);
    Atomic(p->used).store(static_cast<uint32_t>(bytes), std::memory_order_relaxed);
    Atomic(p->live).store(0, std::memory_order_relaxed);
    Atomic(p->birth).store(Atomic(h->clock).fetch_add(1, std::memory_order_relaxed) + 1,
                           std::memory_order_relaxed);
    Atomic(p->span).store(k, std::memory_order_relaxed);
    Atomic(p->cls).store(kClassBit | queue, std::memory_order_relaxed);
    off = uint64_t{first} * ps;
  }
write:
  Entry* e = reinterpret_cast<Entry*>(heap() + off);
  std::memset(e, 0, kEntryBytes);
  Atomic(e->alloc).store(static_cast<uint32_t>(bytes), std::memory_order_relaxed);
  Untouch(off);
  return RefOf(off);
}

}  // namespace shmcache
