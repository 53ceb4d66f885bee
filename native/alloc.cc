// Heap pages: each shard appends its entries to a page it owns (its current
// page); values larger than a page get a span of contiguous pages. When no
// page is free, the oldest page (by the order pages were taken) is evicted:
// its entries that readers touched since they were written move to their
// shard's current page when there is room (a second chance), the rest are
// dropped, and the page changes hands. Page ownership is one atomic word per
// page, changed only by the owner shard's lock holder or by a CAS from free,
// so a process that dies anywhere leaves every page owned by exactly one
// shard or free; the shard's repair (DropShard) frees whatever it owned.
#include <sched.h>

#include <algorithm>

#include "crash.h"
#include "lock.h"
#include "table.h"

namespace shmcache {

namespace {

constexpr uint32_t kCandidates = 16;
constexpr uint32_t kScanLimit = 4096;

}  // namespace

void Store::Touch(uint64_t heap_off) const {
  uint8_t& byte = access_bits()[heap_off / 512];
  uint8_t bit = static_cast<uint8_t>(1u << ((heap_off / 64) & 7));
  auto a = Atomic(byte);
  if ((a.load(std::memory_order_relaxed) & bit) == 0) a.fetch_or(bit, std::memory_order_relaxed);
}

bool Store::Touched(uint64_t heap_off) const {
  uint8_t& byte = access_bits()[heap_off / 512];
  uint8_t bit = static_cast<uint8_t>(1u << ((heap_off / 64) & 7));
  return (Atomic(byte).load(std::memory_order_relaxed) & bit) != 0;
}

void Store::Untouch(uint64_t heap_off) const {
  uint8_t& byte = access_bits()[heap_off / 512];
  uint8_t bit = static_cast<uint8_t>(1u << ((heap_off / 64) & 7));
  auto a = Atomic(byte);
  if ((a.load(std::memory_order_relaxed) & bit) != 0)
    a.fetch_and(static_cast<uint8_t>(~bit), std::memory_order_relaxed);
}

uint32_t Store::HeadOf(uint32_t ref) const {
  uint32_t idx = static_cast<uint32_t>(OffsetOf(ref) / header()->page_size);
  if (idx >= header()->npages) return kNoPage;
  uint32_t head = page(idx)->head;
  return head < header()->npages ? head : kNoPage;
}

void Store::FreeSpan(uint32_t head, uint32_t new_owner) {
  Header* h = header();
  Page* hp = page(head);
  uint32_t owner = Atomic(hp->owner).load(std::memory_order_relaxed);
  uint32_t span = std::max<uint32_t>(hp->span, 1);
  if (head + span > h->npages) span = h->npages - head;
  // A damaged span record must not free pages of another shard.
  for (uint32_t j = head + 1; j < head + span; ++j) {
    if (Atomic(page(j)->owner).load(std::memory_order_relaxed) != owner) {
      span = j - head;
      break;
    }
  }
  uint64_t bytes = uint64_t{span} * h->page_size;
  // Clear the access hints of the whole span (8 pages share no bitmap byte
  // with another span since pages are at least 4 KiB: 64 bits per 4 KiB).
  std::memset(access_bits() + uint64_t{head} * h->page_size / 512, 0, bytes / 512);
  for (uint32_t j = head; j < head + span; ++j) {
    Page* p = page(j);
    BumpEpoch(j);
    p->head = j;
    p->span = 0;
    p->used = 0;
    p->live = 0;
    Atomic(p->owner).store(new_owner, std::memory_order_release);
  }
}

void Store::AfterUnlink(uint32_t si, uint32_t head) {
  if (head == kNoPage) return;
  Page* hp = page(head);
  if (hp->live == 0 && !IsCurrent(shard(si), head)) FreeSpan(head, 0);
}

void Store::DropShard(uint32_t si) {
  Header* h = header();
  Shard* sh = shard(si);
  auto seq = Atomic(sh->seq);
  uint32_t s = seq.load(std::memory_order_relaxed);
  if ((s & 1) == 0) WriteBegin(sh->seq);
  std::memset(buckets(si), 0, uint64_t{h->buckets} * 4);
  for (uint32_t j = 0; j < h->npages; ++j) {
    if (Atomic(page(j)->owner).load(std::memory_order_relaxed) == si + 1) {
      page(j)->span = 1;  // free it alone, whatever span it claimed
      FreeSpan(j, 0);
    }
  }
  sh->cur_page[0] = sh->cur_page[1] = kNoPage;
  sh->timed = 0;
  Atomic(sh->count).store(0, std::memory_order_relaxed);
  Atomic(sh->used).store(0, std::memory_order_relaxed);
  WriteReset(sh->seq);
}

// Takes one free page, or `k` contiguous free pages, for shard `si`.
uint32_t Store::TakeFreePages(uint32_t si, uint32_t k) {
  Header* h = header();
  uint32_t n = h->npages;
  if (k == 1) {
    uint32_t start = Atomic(h->free_hint).load(std::memory_order_relaxed) % n;
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t idx = (start + i) % n;
      Page* p = page(idx);
      uint32_t expected = 0;
      if (Atomic(p->owner).load(std::memory_order_relaxed) == 0 &&
          Atomic(p->owner).compare_exchange_strong(expected, si + 1)) {
        p->head = idx;
        p->span = 0;
        Atomic(h->free_hint).store(idx + 1, std::memory_order_relaxed);
        return idx;
      }
    }
    return kNoPage;
  }
  uint32_t run = 0;
  for (uint32_t idx = 0; idx < n; ++idx) {
    run = Atomic(page(idx)->owner).load(std::memory_order_relaxed) == 0 ? run + 1 : 0;
    if (run < k) continue;
    uint32_t first = idx + 1 - k;
    uint32_t taken = 0;
    for (; taken < k; ++taken) {
      uint32_t expected = 0;
      Page* p = page(first + taken);
      if (!Atomic(p->owner).compare_exchange_strong(expected, si + 1)) break;
      p->head = first + taken;
      p->span = 0;
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
// between WriteBegin/WriteEnd).
void Store::PlaceKept(uint32_t ti, uint64_t dst, uint32_t bytes) {
  uint32_t mask = header()->buckets - 1;
  std::memcpy(heap() + dst, scratch_.data(), bytes);
  for (uint32_t off = 0; off < bytes;) {
    Entry* e = reinterpret_cast<Entry*>(heap() + dst + off);
    uint32_t* bucket = &buckets(ti)[e->hash & mask];
    e->next = *bucket;
    e->flags = kLive;
    *bucket = RefOf(dst + off);
    Untouch(dst + off);
    off += e->alloc;
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
  Shard* sh = shard(ti);
  Page* hp = page(head);
  uint32_t ps = h->page_size;
  uint32_t span = hp->span;
  if (span == 0 || head + span > h->npages || hp->used > uint64_t{span} * ps) {
    DropShard(ti);
    return Evicted::kDamaged;
  }
  second_chance = second_chance && span == 1;
  if (scratch_.size() < ps) scratch_.resize(ps);
  uint64_t now = 0;
  uint64_t base = uint64_t{head} * ps;
  uint32_t used = hp->used;
  uint32_t kept = 0;
  bool damaged = false;
  WriteBegin(sh->seq);
  for (uint64_t off = 0; off < used;) {
    if (off + kEntryBytes > used) {
      damaged = true;
      break;
    }
    Entry* e = reinterpret_cast<Entry*>(heap() + base + off);
    uint32_t a = e->alloc;
    if (a < kEntryBytes || a % 8 != 0 || off + a > used) {
      damaged = true;
      break;
    }
    if (e->flags & kLive) {
      uint32_t ref = RefOf(base + off);
      uint32_t* link = &buckets(ti)[e->hash & (h->buckets - 1)];
      uint32_t steps = 0;
      while (*link != 0 && *link != ref && ++steps < (1u << 20)) {
        Entry* x = EntryAt(*link);
        if (x == nullptr) break;
        link = &x->next;
      }
      if (*link != ref) {
        damaged = true;
        break;
      }
      *link = e->next;
      if (now == 0 && e->expires != 0) now = static_cast<uint64_t>(NowMs());
      bool live = IsLive(e, now == 0 ? 1 : now);
      if (second_chance && live && Touched(base + off)) {
        std::memcpy(scratch_.data() + kept, e, a);
        kept += a;
      } else {
        CrashHere(CrashPoint::kEvict);
        Atomic(sh->count).store(sh->count - 1, std::memory_order_relaxed);
        Atomic(sh->used).store(sh->used - a, std::memory_order_relaxed);
        if (e->expires != 0 && sh->timed > 0) --sh->timed;
        auto counter = Atomic(live ? sh->evictions : sh->expired);
        counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      }
      e->flags = 0;
    }
    off += a;
  }
  if (damaged) {
    DropShard(ti);
    return Evicted::kDamaged;
  }
  // Kept entries go to the current page of their class (a one-page span
  // holds one class only).
  uint32_t cls = hp->cls != 0 ? 1 : 0;
  hp->cls = cls;
  uint32_t cur = sh->cur_page[cls];
  Page* cp = cur != kNoPage && cur != head && cur < h->npages ? page(cur) : nullptr;
  if (kept > 0 && cp != nullptr && cp->used + kept <= ps) {
    // The kept entries fit in the shard's current page: move them there and
    // free this page whole.
    PlaceKept(ti, uint64_t{cur} * ps + cp->used, kept);
    cp->used += kept;
    cp->live += kept;
    kept = 0;
  }
  if (kept > 0) {
    // Rewrite the page with the kept entries only and link them again.
    BumpEpoch(head);
    std::memset(access_bits() + base / 512, 0, ps / 512);
    PlaceKept(ti, base, kept);
    hp->used = kept;
    hp->live = kept;
    hp->birth = Atomic(h->clock).fetch_add(1, std::memory_order_relaxed) + 1;
    // The page with more room left becomes the shard's current page.
    if (cur != head && (cp == nullptr || cp->used > kept)) {
      sh->cur_page[cls] = head;
      if (cp != nullptr && cp->live == 0) FreeSpan(cur, 0);
    }
    WriteEnd(sh->seq);
    return Evicted::kCompacted;
  }
  for (uint32_t& c : sh->cur_page)
    if (c >= head && c < head + span) c = kNoPage;
  // Hand the pages over, continuation pages first.
  for (uint32_t j = head + span; j-- > head;) {
    page(j)->span = 1;
    FreeSpan(j, (j >= lo && j < hi) ? to : 0);
  }
  WriteEnd(sh->seq);
  return Evicted::kFreed;
}

// Picks up to kCandidates of the oldest span heads, oldest first.
uint32_t Store::OldestSpans(uint32_t* out) {
  Header* h = header();
  uint32_t n = h->npages;
  uint32_t count = std::min(n, kScanLimit);
  uint32_t start =
      n > kScanLimit ? static_cast<uint32_t>(Atomic(h->clock).load() * 2654435761u) % n : 0;
  uint64_t births[kCandidates];
  uint32_t found = 0;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t idx = (start + i) % n;
    Page* p = page(idx);
    if (Atomic(p->owner).load(std::memory_order_relaxed) == 0 || p->span == 0) continue;
    uint64_t b = p->birth;
    uint32_t pos = found;
    while (pos > 0 && births[pos - 1] > b) --pos;
    if (pos >= kCandidates) continue;
    uint32_t last = std::min(found, kCandidates - 1);
    for (uint32_t j = last; j > pos; --j) {
      births[j] = births[j - 1];
      out[j] = out[j - 1];
    }
    births[pos] = b;
    out[pos] = idx;
    if (found < kCandidates) ++found;
  }
  return found;
}

// Frees one page for shard `si` (lock held) by evicting the oldest spans it
// can lock. Returns the page, now owned by `si`, or kNoPage with *busy set
// to a shard whose lock was taken by someone else.
uint32_t Store::EvictForPage(uint32_t si, uint32_t* busy) {
  Header* h = header();
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
      if (ti >= h->nshards) {
        // A damaged owner word names no shard: nobody can own this page.
        if (Atomic(page(idx)->owner).compare_exchange_strong(owner, si + 1)) {
          page(idx)->head = idx;
          page(idx)->span = 0;
          return idx;
        }
        continue;
      }
      if (ti != si) {
        LockResult r = TryLock(&shard(ti)->mutex);
        if (r == LockResult::kBusy || r == LockResult::kUnrecoverable) {
          if (*busy == kNoPage && r == LockResult::kBusy) *busy = ti;
          continue;
        }
        if (r == LockResult::kOwnerDied) {
          DropShard(ti);
          MarkConsistent(&shard(ti)->mutex);
          Unlock(&shard(ti)->mutex);
          uint32_t p = TakeFreePages(si, 1);
          if (p != kNoPage) return p;
          progress = true;
          continue;
        }
      }
      Evicted result = Evicted::kDamaged;
      Page* p = page(idx);
      if (Atomic(p->owner).load(std::memory_order_relaxed) == ti + 1 && p->span > 0 &&
          p->head == idx) {
        result = EvictSpan(ti, idx, idx, idx + 1, si + 1, second_chance);
      }
      if (ti != si) Unlock(&shard(ti)->mutex);
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
  for (uint32_t j = 0; j < h->npages; ++j) {
    uint32_t owner = Atomic(page(j)->owner).load(std::memory_order_relaxed);
    if (owner == 0 || owner > h->nshards) continue;
    uint32_t ti = owner - 1;
    if (ti != si) {
      LockResult r = TryLock(&shard(ti)->mutex);
      if (r == LockResult::kBusy) {
        *busy = ti;
        return kNoPage;
      }
      if (r == LockResult::kUnrecoverable) continue;
      if (r == LockResult::kOwnerDied) MarkConsistent(&shard(ti)->mutex);
    }
    DropShard(ti);
    if (ti != si) Unlock(&shard(ti)->mutex);
    return TakeFreePages(si, 1);
  }
  return kNoPage;
}

// Frees `k` contiguous pages for shard `si` (lock held), evicting whatever
// stands in the window that starts at the oldest span.
uint32_t Store::EvictForRun(uint32_t si, uint32_t k, uint32_t* busy) {
  Header* h = header();
  *busy = kNoPage;
  uint32_t cands[kCandidates];
  uint32_t found = OldestSpans(cands);
  uint32_t start = found > 0 ? cands[0] : 0;
  if (start + k > h->npages) start = h->npages - k;
  auto claimed = [&](uint32_t j) {
    Page* p = page(j);
    return Atomic(p->owner).load(std::memory_order_relaxed) == si + 1 && p->span == 0 &&
           p->head == j;
  };
  auto release = [&]() {
    for (uint32_t j = start; j < start + k; ++j)
      if (claimed(j)) FreeSpan(j, 0);
  };
  for (uint32_t j = start; j < start + k;) {
    if (claimed(j)) {
      ++j;
      continue;
    }
    Page* p = page(j);
    uint32_t owner = Atomic(p->owner).load(std::memory_order_acquire);
    if (owner == 0) {
      if (Atomic(p->owner).compare_exchange_strong(owner, si + 1)) {
        p->head = j;
        p->span = 0;
        ++j;
      }
      continue;
    }
    uint32_t ti = owner - 1;
    if (ti >= h->nshards) {
      if (Atomic(p->owner).compare_exchange_strong(owner, si + 1)) {
        p->head = j;
        p->span = 0;
        ++j;
      }
      continue;
    }
    if (ti != si) {
      LockResult r = TryLock(&shard(ti)->mutex);
      if (r == LockResult::kBusy || r == LockResult::kUnrecoverable) {
        release();
        *busy = r == LockResult::kBusy ? ti : kNoPage;
        return kNoPage;
      }
      if (r == LockResult::kOwnerDied) {
        DropShard(ti);
        MarkConsistent(&shard(ti)->mutex);
        Unlock(&shard(ti)->mutex);
        continue;
      }
    }
    if (Atomic(p->owner).load(std::memory_order_relaxed) == ti + 1) {
      uint32_t head = p->head;
      Page* hp = head < h->npages ? page(head) : nullptr;
      if (hp != nullptr && Atomic(hp->owner).load(std::memory_order_relaxed) == ti + 1 &&
          hp->span > 0 && head <= j && j < head + hp->span) {
        EvictSpan(ti, head, start, start + k, si + 1, false);
      } else {
        // Ownership without a consistent span: the shard is damaged.
        DropShard(ti);
      }
    }
    if (ti != si) Unlock(&shard(ti)->mutex);
  }
  return start;
}

uint32_t Store::Allocate(uint32_t si, uint64_t bytes, uint32_t* busy) {
  Header* h = header();
  Shard* sh = shard(si);
  uint32_t ps = h->page_size;
  *busy = kNoPage;
  uint32_t first;
  uint64_t off;
  if (bytes <= ps) {
    uint32_t cls = SizeClass(bytes);
    uint32_t cur = sh->cur_page[cls];
    if (cur != kNoPage) {
      Page* cp = cur < h->npages ? page(cur) : nullptr;
      if (cp == nullptr || Atomic(cp->owner).load(std::memory_order_relaxed) != si + 1 ||
          cp->span != 1) {
        sh->cur_page[cls] = kNoPage;  // damaged: forget it, DropShard will reclaim
      } else if (cp->used + bytes <= ps) {
        off = uint64_t{cur} * ps + cp->used;
        cp->used += static_cast<uint32_t>(bytes);
        goto write;
      } else {
        sh->cur_page[cls] = kNoPage;
        if (cp->live == 0) FreeSpan(cur, 0);
      }
    }
    first = TakeFreePages(si, 1);
    if (first == kNoPage) first = EvictForPage(si, busy);
    if (first == kNoPage) return 0;
    CrashHere(CrashPoint::kAlloc);
    Page* p = page(first);
    p->head = first;
    p->used = static_cast<uint32_t>(bytes);
    p->live = 0;
    p->birth = Atomic(h->clock).fetch_add(1, std::memory_order_relaxed) + 1;
    p->span = 1;
    p->cls = cls;
    sh->cur_page[cls] = first;
    off = uint64_t{first} * ps;
  } else {
    uint32_t k = static_cast<uint32_t>((bytes + ps - 1) / ps);
    if (k > h->npages) return 0;
    first = TakeFreePages(si, k);
    if (first == kNoPage) first = EvictForRun(si, k, busy);
    if (first == kNoPage) return 0;
    for (uint32_t j = first + 1; j < first + k; ++j) {
      page(j)->head = first;
      page(j)->span = 0;
    }
    Page* p = page(first);
    p->head = first;
    p->used = static_cast<uint32_t>(bytes);
    p->live = 0;
    p->birth = Atomic(h->clock).fetch_add(1, std::memory_order_relaxed) + 1;
    p->span = k;
    p->cls = 1;
    off = uint64_t{first} * ps;
  }
write:
  Entry* e = reinterpret_cast<Entry*>(heap() + off);
  std::memset(e, 0, kEntryBytes);
  e->alloc = static_cast<uint32_t>(bytes);
  Untouch(off);
  return RefOf(off);
}

}  // namespace shmcache
