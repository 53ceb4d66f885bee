// The per-shard hash tables and the operations of the public API.
//
// Readers take no lock: they read the shard's sequence counter, walk the
// bucket chain copying what they need, and read the counter again; if it
// moved (or was odd) they retry. Every ref they follow is bounds-checked, so
// a chain rewritten under their feet costs a retry, never a bad read. After a
// few odd reads in a row they take the shard mutex instead, which is also how
// a writer that died mid-change gets repaired.
//
// Writers hold the shard's robust mutex and make the counter odd only while
// they relink the chain; entry bytes are written before they are linked.
#include "table.h"

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>

#include "crash.h"
#include "jail.h"
#include "lock.h"

namespace shmcache {

namespace {

constexpr uint32_t kMaxSteps = 1u << 20;  // longest chain walked before calling it a cycle
constexpr int kSpins = 2000;
constexpr double kMaxSafe = 9007199254740991.0;

bool IsSafeInteger(double v) {
  return std::isfinite(v) && std::trunc(v) == v && std::fabs(v) <= kMaxSafe;
}

uint64_t Align8(uint64_t v) { return (v + 7) & ~uint64_t{7}; }

using Walk = WalkResult;

uint64_t EntrySeed(const Entry& e, uint64_t key_hash) {
  return Mix(e.hash ^ (uint64_t{e.key_len} << 32) ^ (uint64_t{e.type} << 48),
             (e.value_len ^ (uint64_t{e.generation} << 32)) | 1) ^
         e.expires ^ key_hash;
}

uint32_t Fold(uint64_t h) { return static_cast<uint32_t>(h ^ (h >> 32)); }

}  // namespace

uint32_t EntryCheck(const Entry& e, uint64_t key_hash, const unsigned char* value) {
  return Fold(Checksum(value, e.value_len, EntrySeed(e, key_hash)));
}

uint32_t EntryCopyCheck(const Entry& e, uint64_t key_hash, unsigned char* out,
                        const unsigned char* value) {
  return Fold(CopyChecksum(out, value, e.value_len, EntrySeed(e, key_hash)));
}

uint32_t EntryCheck(const Entry& e, const unsigned char* key, const unsigned char* value) {
  return EntryCheck(e, KeyHash(key, e.key_len), value);
}

uint32_t ShardOfKey(const unsigned char* key, uint32_t klen, uint32_t nshards) {
  return static_cast<uint32_t>(KeyHash(key, klen) >> 40) & (nshards - 1);
}

Store::~Store() { Close(); }

Entry* Store::EntryAt(uint32_t ref, uint64_t extra) const {
  if (ref == 0) return nullptr;
  uint64_t off = OffsetOf(ref);
  uint64_t limit = heap_bytes();
  if (off >= limit || limit - off < kEntryBytes + extra) return nullptr;
  return reinterpret_cast<Entry*>(heap() + off);
}

bool Store::OwnedBy(uint32_t ref, uint64_t bytes, uint32_t si) const {
  if (bytes == 0) return false;
  uint64_t off = OffsetOf(ref);
  uint64_t ps = L().page_size;
  uint64_t last = (off + bytes - 1) / ps;
  if (last >= L().npages) return false;
  for (uint64_t j = off / ps; j <= last; ++j)
    if (Load(page(static_cast<uint32_t>(j))->owner) != si + 1) return false;
  return true;
}

bool Store::Sound(uint32_t si, uint32_t ref, const Entry& e) const {
  uint64_t need = Align8(uint64_t{kEntryBytes} + e.key_len + e.value_len);
  return (e.flags & kLive) != 0 && e.key_len != 0 && e.key_len <= kMaxKey &&
         e.value_len <= L().max_value && e.alloc >= need && e.alloc % 8 == 0 &&
         OwnedBy(ref, e.alloc, si);
}

bool Store::IsLive(const Entry* e, uint64_t now) const {
  if (e->generation != Atomic(header()->generation).load(std::memory_order_acquire)) return false;
  return e->expires == 0 || e->expires > now;
}

bool Store::LockShard(uint32_t si) {
  Shard* sh = shard(si);
  if (__builtin_expect(policy_.base != seg_.base(), 0)) {
    policy_ = LockPolicy{};
    policy_.base = seg_.base();
    policy_.path = &seg_.path();
    policy_.ctx = this;
    policy_.not_a_handle = [](const void* ctx, uint32_t tgid) {
      const Store* st = static_cast<const Store*>(ctx);
      if (Load(st->header()->unslotted) != 0) return false;  // some handle has no slot
      for (uint32_t i = 0; i < kSlots; ++i)
        if (Load(st->slot(i)->pid) == tgid) return false;
      return true;
    };
    policy_.ns_has_handle = [](const void* ctx, uint32_t ns, uint32_t mark) {
      const Store* st = static_cast<const Store*>(ctx);
      if (Load(st->header()->unslotted) != 0) return true;  // some handle has no slot
      for (uint32_t i = 0; i < kSlots; ++i) {
        if (Load(st->slot(i)->pid) == 0) continue;
        uint32_t its = Load(st->slot(i)->pidns);
        if (ns != 0 ? its == ns : NamespaceMark(its) == mark) return true;
      }
      return false;
    };
  }
  switch (Lock(&sh->mutex, &policy_, &held_)) {
    case LockResult::kLocked:
      // Odd with nobody inside: no writer left it so (one that died
      // would have made the lock say so), the file was written.
      if (__builtin_expect((Load(sh->seq) & 1) != 0, 0)) RepairShard(si);
      return true;
    case LockResult::kOwnerDied:
      // The last writer died holding the lock, maybe half-way through a
      // change, or the mutex itself was damaged and repaired: drop the
      // shard's entries rather than trust them.
      RepairShard(si);
      MarkConsistent(&sh->mutex);
      return true;
    case LockResult::kTimeout: lock_error_ = WriteStatus::kTimeout; return false;
    default: lock_error_ = WriteStatus::kCorrupt; return false;
  }
}

void Store::RepairShard(uint32_t si) {
  DropShard(si);
  Atomic(shard(si)->repairs).fetch_add(1, std::memory_order_relaxed);
  if (damaged_ == si) damaged_ = kNoPage;
}

int64_t Store::memo_hits_offset() const {
  if (slot_ >= kSlots) return -1;
  return static_cast<int64_t>(L().slots_off + uint64_t{slot_} * sizeof(Slot) +
                              offsetof(Slot, memo_hits));
}

void Store::CountRead(bool hit) {
  if (seg_.read_only()) return;  // not even a hint in a read-only mapping
  if (slot_ < kSlots) {
    auto c = Atomic(hit ? slot(slot_)->hits : slot(slot_)->misses);
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  } else {
    Atomic(hit ? header()->shared_hits : header()->shared_misses)
        .fetch_add(1, std::memory_order_relaxed);
  }
}

// Asks for every line of a found entry's key and value at once, so that the
// copy that follows waits for memory about once instead of line by line.
// Bounded: a larger value is copied while the hardware streams it.
static inline void PrefetchValue(const Entry* e, uint32_t klen, uint32_t vlen) {
  const char* p = reinterpret_cast<const char*>(e);
  uint64_t end = std::min<uint64_t>(uint64_t{kEntryBytes} + klen + vlen, 4096);
  for (uint64_t at = 64 - (reinterpret_cast<uintptr_t>(p) & 63); at < end; at += 64)
    __builtin_prefetch(p + at);
}

// Walks the chain for `key` in bucket `b` of shard `si`. Without the lock the
// result only counts if the shard's sequence did not move meanwhile.
Walk Store::WalkChain(const uint32_t* bucket, uint32_t h32, const unsigned char* key, uint32_t klen,
                      bool copy, Entry* found, uint32_t* found_ref) const {
  uint32_t ref = Atomic(*const_cast<uint32_t*>(bucket)).load(std::memory_order_acquire);
  CycleGuard guard;
  for (uint32_t steps = 0; ref != 0; ++steps) {
    if (steps > kMaxSteps || guard.Seen(ref)) return Walk::kDamaged;
    Entry* e = EntryAt(ref, 0);
    if (e == nullptr) return Walk::kDamaged;
    // A hit sets the entry's access bit: fetch its line while the entry's
    // own miss is under way.
    __builtin_prefetch(access_bits() + OffsetOf(ref) / 512, 1);
    Entry hdr;
    LoadHeader(e, &hdr);
    if (hdr.hash == h32 && hdr.key_len == klen) {
      if (hdr.value_len > L().max_value || EntryAt(ref, uint64_t{klen} + hdr.value_len) == nullptr)
        return Walk::kDamaged;
      if (copy) PrefetchValue(e, klen, hdr.value_len);
      if (std::memcmp(e + 1, key, klen) == 0) {
        *found = hdr;
        *found_ref = ref;
        return Walk::kFound;
      }
    }
    ref = hdr.next;
  }
  return Walk::kAbsent;
}

void Store::PrefetchChain(uint64_t hash) const {
  uint32_t ref = Load(buckets(ShardOf(hash))[BucketOf(hash)]);
  if (const Entry* e = EntryAt(ref)) __builtin_prefetch(e);
}

namespace {
std::atomic<uint64_t> g_locked_reads{0};
}  // namespace

uint64_t LockedReads() { return g_locked_reads.load(std::memory_order_relaxed); }

ReadResult Store::LockedGet(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                            unsigned char* out, uint64_t cap, bool copy) {
  ReadResult res;
  // A read-only handle takes no lock: what it cannot read lock-free is a miss.
  if (seg_.read_only()) return res;
  g_locked_reads.fetch_add(1, std::memory_order_relaxed);
  if (!LockShard(si)) {
    res.status = LockFailure();
    return res;
  }
  bool corrupt = false;
  uint32_t* link;
  Entry e;
  uint32_t ref = Find(si, hash, key, klen, &link, &e, &corrupt);
  if (corrupt) {
    RepairShard(si);
  } else if (ref != 0) {
    const unsigned char* value = heap() + OffsetOf(ref) + kEntryBytes + klen;
    bool fits = copy && e.value_len <= cap;
    // With a copy, what is returned is what was summed.
    uint32_t sum = fits ? EntryCopyCheck(e, hash, out, value) : EntryCheck(e, hash, value);
    if (sum != e.check) {
      // Damaged bytes: drop what they touched.
      RepairShard(si);
    } else if (IsValue(&e, e.expires ? static_cast<uint64_t>(NowMs()) : 0)) {
      res.type = e.type;
      res.length = e.value_len;
      if (!copy) {
        res.status = ReadStatus::kHit;
      } else if (!fits) {
        res.status = ReadStatus::kNeedBuffer;
      } else {
        res.status = ReadStatus::kHit;
        Touch(OffsetOf(ref));
      }
    }
  }
  UnlockShard(si);
  return res;
}

ReadResult Store::Get(const unsigned char* key, uint32_t klen, unsigned char* out, uint64_t cap,
                      MemoInfo* memo) {
  if (memo != nullptr) memo->word_index = 0;
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  Shard* sh = shard(si);
  const uint32_t* bucket = &buckets(si)[BucketOf(hash)];
  uint32_t h32 = static_cast<uint32_t>(hash);
  ReadResult res;
  bool copy = out != nullptr;
  for (int attempt = 0; attempt < 16; ++attempt) {
    uint32_t seq0 = ReadBegin(sh->seq);
    for (int spin = 0; (seq0 & 1) != 0 && spin < kSpins; ++spin) {
      CpuRelax();
      seq0 = ReadBegin(sh->seq);
    }
    if (seq0 & 1) break;  // a writer is slow or dead: go through the lock
    CrashHere(CrashPoint::kRead);
    Entry hdr;
    uint32_t ref = 0;
    uint32_t sum = 0;
    Walk w = WalkChain(bucket, h32, key, klen, copy, &hdr, &ref);
    if (w == Walk::kFound) {
      // WalkChain checked that the header, key and value fit the heap.
      const unsigned char* value = heap() + OffsetOf(ref) + kEntryBytes + klen;
      if (!copy) {
        // has(): the same sum as get(), without the copy, so that damage
        // it would catch makes has() say false too.
        sum = EntryCheck(hdr, hash, value);
      } else if (hdr.value_len > cap) {
        w = Walk::kNeedBuffer;
      } else {
        sum = EntryCopyCheck(hdr, hash, out, value);
        if (memo != nullptr && (hdr.type == kString || hdr.type == kAscii)) {
          // Read before the sequence is checked again, so that the epoch is
          // the one the entry was read in.
          uint64_t off = OffsetOf(ref);
          uint32_t pg = static_cast<uint32_t>(off / L().page_size);
          memo->epoch = Atomic(marks(pg)[0]).load(std::memory_order_acquire);
          memo->version = Atomic(marks(pg)[1]).load(std::memory_order_acquire);
          memo->marks_index = static_cast<uint32_t>(L().marks_off / 4 + uint64_t{pg} * 2);
          std::memcpy(&memo->word, reinterpret_cast<const unsigned char*>(&hdr) + 8, 4);
          memo->word_index = static_cast<uint32_t>((L().heap_off + off + 8) / 4);
          memo->generation = hdr.generation;
          memo->type = hdr.type;
          memo->expires = static_cast<double>(hdr.expires);
        }
      }
    }
    if (ReadRetry(sh->seq, seq0)) continue;
    // The copy is consistent with the shard as of seq0.
    if (w == Walk::kDamaged) break;
    if (w == Walk::kAbsent) {
      if (copy) CountRead(false);
      return res;
    }
    if (w == Walk::kFound && sum != hdr.check) {
      if (memo != nullptr) memo->word_index = 0;
      break;
    }
    if (!IsValue(&hdr, hdr.expires ? static_cast<uint64_t>(NowMs()) : 0)) {
      if (copy) CountRead(false);
      return res;
    }
    res.type = hdr.type;
    res.length = hdr.value_len;
    if (w == Walk::kNeedBuffer) {
      res.status = ReadStatus::kNeedBuffer;
      return res;
    }
    res.status = ReadStatus::kHit;
    if (copy) {
      Touch(OffsetOf(ref));
      CountRead(true);
    }
    return res;
  }
  res = LockedGet(si, hash, key, klen, out, cap, copy);
  if (copy && (res.status == ReadStatus::kHit || res.status == ReadStatus::kMiss))
    CountRead(res.status == ReadStatus::kHit);
  return res;
}

ReadStatus Store::Has(const unsigned char* key, uint32_t klen) {
  return Get(key, klen, nullptr, 0).status;
}

uint32_t Store::Find(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                     uint32_t** link, Entry* found, bool* corrupt) {
  *corrupt = false;
  uint32_t* l = &buckets(si)[BucketOf(hash)];
  uint32_t h32 = static_cast<uint32_t>(hash);
  CycleGuard guard;
  for (uint32_t steps = 0;; ++steps) {
    uint32_t ref = Load(*l);
    if (ref == 0) return 0;
    Entry* e = EntryAt(ref);
    if (steps > kMaxSteps || guard.Seen(ref) || e == nullptr) {
      *corrupt = true;
      return 0;
    }
    Entry hdr;
    LoadHeader(e, &hdr);
    if (!Sound(si, ref, hdr)) {
      *corrupt = true;
      return 0;
    }
    if (hdr.hash == h32 && hdr.key_len == klen && std::memcmp(e + 1, key, klen) == 0) {
      *link = l;
      *found = hdr;
      return ref;
    }
    l = &e->next;
  }
}

uint32_t Store::FindIntact(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                           uint32_t** link, Entry* found) {
  bool corrupt = false;
  uint32_t ref = Find(si, hash, key, klen, link, found, &corrupt);
  if (!corrupt && (ref == 0 || Intact(ref, *found, hash))) return ref;
  RepairShard(si);
  return 0;
}

void Store::Unlink(uint32_t si, uint32_t* link, uint32_t ref, const Entry& e) {
  Shard* sh = shard(si);
  Atomic(*link).store(e.next, std::memory_order_relaxed);
  Atomic(EntryAt(ref)->flags).store(0, std::memory_order_relaxed);
  // Then the page's version: a memo that sees it unchanged knows the flags
  // it checked before are still set.
  BumpVersion(static_cast<uint32_t>(OffsetOf(ref) / L().page_size));
  // Counters that would go below zero (or a span that is not the shard's)
  // are damage: the shard is dropped when it is unlocked.
  uint32_t head = HeadOf(si, ref);
  if (head != kNoPage) {
    uint32_t live = Load(page(head)->live);
    if (live < e.alloc) NoteDamage(si);
    Atomic(page(head)->live).store(live < e.alloc ? 0 : live - e.alloc, std::memory_order_relaxed);
  } else {
    NoteDamage(si);
  }
  uint32_t count = Load(sh->count);
  uint64_t used = Load(sh->used);
  if (count == 0 || used < e.alloc) NoteDamage(si);
  Atomic(sh->count).store(count == 0 ? 0 : count - 1, std::memory_order_relaxed);
  Atomic(sh->used).store(used < e.alloc ? 0 : used - e.alloc, std::memory_order_relaxed);
  uint32_t timed = Load(sh->timed);
  if (e.expires != 0 && timed > 0) Atomic(sh->timed).store(timed - 1, std::memory_order_relaxed);
  AfterUnlink(si, head);
}

void Store::SweepStep(uint32_t si, uint64_t now) {
  Shard* sh = shard(si);
  if (Load(sh->timed) == 0) return;  // nothing in this shard can expire
  uint32_t sweep = Load(sh->sweep);
  Atomic(sh->sweep).store(sweep + 1, std::memory_order_relaxed);
  uint32_t* l = &buckets(si)[sweep & (L().buckets - 1)];
  bool writing = false, damaged = false;
  CycleGuard guard;
  for (uint32_t steps = 0;; ++steps) {
    uint32_t ref = Load(*l);
    if (ref == 0) break;
    Entry* e = EntryAt(ref);
    Entry hdr;
    if (steps > kMaxSteps || guard.Seen(ref) || e == nullptr) {
      damaged = true;
      break;
    }
    LoadHeader(e, &hdr);
    // What Find checks before it follows or unlinks an entry.
    if (!Sound(si, ref, hdr)) {
      damaged = true;
      break;
    }
    if (IsLive(&hdr, now)) {
      l = &e->next;
      continue;
    }
    if (!writing) WriteBegin(sh->seq);
    writing = true;
    Unlink(si, l, ref, hdr);
    Atomic(sh->expired).store(Load(sh->expired) + 1, std::memory_order_relaxed);
  }
  if (writing) WriteEnd(sh->seq);
  if (damaged) RepairShard(si);
}

WriteStatus Store::Insert(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                          uint8_t type, const unsigned char* value, uint64_t vlen, uint64_t expires,
                          bool only_if_absent) {
  Shard* sh = shard(si);
  uint64_t bytes = Align8(uint64_t{kEntryBytes} + klen + vlen);
  int damage = 0;
  for (int attempt = 0;; ++attempt) {
    uint32_t busy = kNoPage;
    uint32_t ref = Allocate(si, bytes, static_cast<uint32_t>(hash), &busy);
    if (ref == 0) {
      // Another shard holds the page we want, or another process took the
      // page we freed: wait without holding our lock, then try again. (In a
      // sound segment room can always be made; a damaged one is repaired by
      // the eviction path dropping shards.)
      if (attempt > 10000) return WriteStatus::kNoSpace;
      UnlockShard(si);
      if (busy != kNoPage) {
        if (!LockShard(busy)) return lock_error_;
        UnlockShard(busy);
      }
      sched_yield();
      if (!LockShard(si)) return lock_error_;
      continue;
    }
    // Allocate placed `bytes` inside the heap. The header is made here and
    // its checksum summed from the caller's bytes, never read back from the
    // mapping (another process may rewrite it meanwhile).
    Entry* e = EntryAt(ref, uint64_t{klen} + vlen);
    Entry ne;
    std::memset(&ne, 0, sizeof ne);
    ne.hash = static_cast<uint32_t>(hash);
    ne.key_len = static_cast<uint16_t>(klen);
    ne.type = type;
    ne.value_len = static_cast<uint32_t>(vlen);
    ne.alloc = static_cast<uint32_t>(bytes);
    ne.generation = Atomic(header()->generation).load(std::memory_order_acquire);
    ne.expires = expires;
    ne.check = EntryCheck(ne, hash, value);
    std::memcpy(e, &ne, kEntryBytes);
    unsigned char* kdst = reinterpret_cast<unsigned char*>(e + 1);
    std::memcpy(kdst, key, klen);
    std::memcpy(kdst + klen, value, vlen / 2);
    CrashHere(CrashPoint::kCopy);
    std::memcpy(kdst + klen + vlen / 2, value + vlen / 2, vlen - vlen / 2);

    bool corrupt = false;
    uint32_t* link = nullptr;
    Entry old_e;
    uint32_t old = Find(si, hash, key, klen, &link, &old_e, &corrupt);
    // add() reads the old entry, so it must be sound; set() only unlinks it.
    if (corrupt || (old != 0 && only_if_absent && !Intact(old, old_e, hash))) {
      RepairShard(si);  // also frees what was just allocated; start over
      if (++damage > 8) {
        UnlockShard(si);
        return WriteStatus::kCorrupt;  // damage keeps coming back
      }
      continue;
    }
    if (old != 0 && only_if_absent &&
        IsValue(&old_e, old_e.expires ? static_cast<uint64_t>(NowMs()) : 0)) {
      AfterUnlink(si, HeadOf(si, ref));  // the new bytes stay dead; free a span now
      return WriteStatus::kExists;
    }
    WriteBegin(sh->seq);
    if (old != 0) {
      Unlink(si, link, old, old_e);
      CrashHere(CrashPoint::kUnlinked);
    }
    uint32_t* bucket = &buckets(si)[BucketOf(hash)];
    Atomic(e->next).store(Load(*bucket), std::memory_order_relaxed);
    Atomic(e->flags).store(kLive, std::memory_order_relaxed);
    Atomic(*bucket).store(ref, std::memory_order_release);
    uint32_t head = HeadOf(si, ref);
    if (head != kNoPage)
      Atomic(page(head)->live).store(Load(page(head)->live) + ne.alloc, std::memory_order_relaxed);
    Atomic(sh->count).store(Load(sh->count) + 1, std::memory_order_relaxed);
    Atomic(sh->used).store(Load(sh->used) + ne.alloc, std::memory_order_relaxed);
    if (expires != 0) Atomic(sh->timed).store(Load(sh->timed) + 1, std::memory_order_relaxed);
    WriteEnd(sh->seq);
    // remember()'s claim is no value: only what replaces it counts as a set.
    if (type != kClaim) Atomic(sh->sets).store(Load(sh->sets) + 1, std::memory_order_relaxed);
    return WriteStatus::kOk;
  }
}

namespace {
// Statuses after which the shard's lock is no longer held.
bool Unlocked(WriteStatus st) { return st == WriteStatus::kCorrupt || st == WriteStatus::kTimeout; }
}  // namespace

WriteStatus Store::Set(uint64_t hash, const unsigned char* key, uint32_t klen, uint8_t type,
                       const unsigned char* value, uint64_t vlen, uint64_t ttl_ms,
                       bool only_if_absent) {
  if (seg_.read_only()) return WriteStatus::kReadOnly;
  uint32_t si = ShardOf(hash);
  uint64_t now = ttl_ms ? static_cast<uint64_t>(NowMs()) : 0;
  uint64_t expires = ttl_ms ? now + ttl_ms : 0;
  if (!LockShard(si)) return lock_error_;
  CrashHere(CrashPoint::kLocked);
  WriteStatus st = Insert(si, hash, key, klen, type, value, vlen, expires, only_if_absent);
  if (!Unlocked(st)) {
    if (Load(shard(si)->timed) != 0) SweepStep(si, now ? now : static_cast<uint64_t>(NowMs()));
    UnlockShard(si);
  }
  return st;
}

WriteStatus Store::Delete(const unsigned char* key, uint32_t klen, bool* removed) {
  *removed = false;
  if (seg_.read_only()) return WriteStatus::kReadOnly;
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  if (!LockShard(si)) return lock_error_;
  Shard* sh = shard(si);
  bool corrupt = false;
  uint32_t* link = nullptr;
  Entry e;
  uint32_t ref = Find(si, hash, key, klen, &link, &e, &corrupt);
  if (corrupt) {
    RepairShard(si);  // the key is gone with the rest of the shard
  } else if (ref != 0) {
    *removed = IsValue(&e, e.expires ? static_cast<uint64_t>(NowMs()) : 0);
    WriteBegin(sh->seq);
    Unlink(si, link, ref, e);
    WriteEnd(sh->seq);
    auto counter = Atomic(*removed ? sh->deletes : sh->expired);
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  UnlockShard(si);
  return WriteStatus::kOk;
}

void Store::UpdateNumber(Shard* sh, uint32_t ref, const Entry& e, uint64_t key_hash, double next) {
  unsigned char* value = heap() + OffsetOf(ref) + kEntryBytes + e.key_len;
  // Summed from our own bytes and the header as Find copied it.
  uint32_t check = EntryCheck(e, key_hash, reinterpret_cast<const unsigned char*>(&next));
  WriteBegin(sh->seq);
  std::memcpy(value, &next, 8);
  CrashHere(CrashPoint::kIncr);
  Atomic(EntryAt(ref)->check).store(check, std::memory_order_relaxed);
  WriteEnd(sh->seq);
  Atomic(sh->sets).store(Load(sh->sets) + 1, std::memory_order_relaxed);
}

WriteStatus Store::Incr(const unsigned char* key, uint32_t klen, double by, double initial,
                        uint64_t ttl_ms, double* result) {
  if (seg_.read_only()) return WriteStatus::kReadOnly;
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  uint64_t now = static_cast<uint64_t>(NowMs());
  if (!LockShard(si)) return lock_error_;
  Shard* sh = shard(si);
  uint32_t* link = nullptr;
  Entry e;
  uint32_t ref = FindIntact(si, hash, key, klen, &link, &e);
  WriteStatus st = WriteStatus::kOk;
  if (ref != 0 && IsValue(&e, now)) {
    double v = 0;
    if (!NumberIn(ref, e, &v) || !IsSafeInteger(v)) {
      st = WriteStatus::kNotNumber;
    } else if (!IsSafeInteger(v + by)) {
      st = WriteStatus::kRange;
    } else {
      *result = v + by;
      UpdateNumber(sh, ref, e, hash, *result);
    }
  } else if (!IsSafeInteger(initial + by)) {
    st = WriteStatus::kRange;
  } else {
    double next = initial + by;
    st = Insert(si, hash, key, klen, kNumber, reinterpret_cast<const unsigned char*>(&next), 8,
                ttl_ms ? now + ttl_ms : 0, false);
    if (st == WriteStatus::kOk) *result = next;
  }
  if (!Unlocked(st)) UnlockShard(si);
  return st;
}

WriteStatus Store::Cas(const unsigned char* key, uint32_t klen, double expected, double next) {
  if (seg_.read_only()) return WriteStatus::kReadOnly;
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  if (!LockShard(si)) return lock_error_;
  Shard* sh = shard(si);
  uint32_t* link = nullptr;
  Entry e;
  uint32_t ref = FindIntact(si, hash, key, klen, &link, &e);
  WriteStatus st = WriteStatus::kMismatch;
  double v = 0;
  if (ref != 0 && NumberIn(ref, e, &v) &&
      IsLive(&e, e.expires ? static_cast<uint64_t>(NowMs()) : 0)) {
    if (IsSafeInteger(v) && v == expected) {
      UpdateNumber(sh, ref, e, hash, next);
      st = WriteStatus::kOk;
    }
  }
  UnlockShard(si);
  return st;
}

namespace {
struct ClaimRecord {
  uint32_t pid;
  uint32_t pad;
  uint64_t token;
};
static_assert(sizeof(ClaimRecord) == 16, "claim record is 16 bytes");
}  // namespace

WriteStatus Store::Claim(const unsigned char* key, uint32_t klen, uint64_t token) {
  if (seg_.read_only()) return WriteStatus::kReadOnly;
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  uint64_t now = static_cast<uint64_t>(NowMs());
  if (!LockShard(si)) return lock_error_;
  uint32_t* link = nullptr;
  Entry e;
  uint32_t ref = FindIntact(si, hash, key, klen, &link, &e);
  WriteStatus st = WriteStatus::kOk;
  if (ref != 0 && IsLive(&e, now)) {
    if (e.type != kClaim) {
      st = WriteStatus::kExists;
    } else if (e.value_len == sizeof(ClaimRecord)) {
      ClaimRecord held;
      std::memcpy(&held, heap() + OffsetOf(ref) + kEntryBytes + klen, sizeof held);
      // A claim whose process is gone is taken over.
      bool dead = held.pid != pid_ && kill(static_cast<pid_t>(held.pid), 0) != 0 && errno == ESRCH;
      if (!dead) st = WriteStatus::kMismatch;
    }
  }
  if (st == WriteStatus::kOk) {
    ClaimRecord mine{pid_, 0, token};
    st = Insert(si, hash, key, klen, kClaim, reinterpret_cast<const unsigned char*>(&mine),
                sizeof mine, 0, false);
  }
  if (!Unlocked(st)) UnlockShard(si);
  return st;
}

WriteStatus Store::Release(const unsigned char* key, uint32_t klen, uint64_t token,
                           bool* released) {
  *released = false;
  if (seg_.read_only()) return WriteStatus::kReadOnly;
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  if (!LockShard(si)) return lock_error_;
  uint32_t* link = nullptr;
  Entry e;
  uint32_t ref = FindIntact(si, hash, key, klen, &link, &e);
  if (ref != 0 && e.type == kClaim && e.value_len == sizeof(ClaimRecord)) {
    ClaimRecord held;
    std::memcpy(&held, heap() + OffsetOf(ref) + kEntryBytes + klen, sizeof held);
    if (held.pid == pid_ && held.token == token) {
      Shard* sh = shard(si);
      WriteBegin(sh->seq);
      Unlink(si, link, ref, e);
      WriteEnd(sh->seq);
      *released = true;
    }
  }
  UnlockShard(si);
  return WriteStatus::kOk;
}

WriteStatus Store::Keys(const unsigned char* prefix, uint32_t plen,
                        std::vector<std::string>* keys) {
  if (seg_.read_only()) return KeysReadOnly(prefix, plen, keys);
  uint64_t now = static_cast<uint64_t>(NowMs());
  for (uint32_t si = 0; si < L().nshards; ++si) {
    if (!LockShard(si)) return lock_error_;
    size_t mark = keys->size();
    bool corrupt = false;
    for (uint32_t b = 0; b < L().buckets && !corrupt; ++b) {
      uint32_t ref = Load(buckets(si)[b]);
      CycleGuard guard;
      for (uint32_t steps = 0; ref != 0; ++steps) {
        Entry* e = EntryAt(ref);
        Entry hdr;
        if (steps > kMaxSteps || guard.Seen(ref) || e == nullptr) {
          corrupt = true;
          break;
        }
        LoadHeader(e, &hdr);
        const unsigned char* k = reinterpret_cast<const unsigned char*>(e + 1);
        // A key that is not where its hash puts it is none get() could find.
        if (!Sound(si, ref, hdr) ||
            (KeyHash(k, hdr.key_len) & ((uint64_t{L().nshards - 1} << 40) | (L().buckets - 1))) !=
                ((uint64_t{si} << 40) | b)) {
          corrupt = true;
          break;
        }
        if (hdr.key_len >= plen && std::memcmp(k, prefix, plen) == 0 && IsValue(&hdr, now))
          keys->emplace_back(reinterpret_cast<const char*>(k), hdr.key_len);
        ref = hdr.next;
      }
    }
    if (corrupt) {
      keys->resize(mark);
      RepairShard(si);
    }
    UnlockShard(si);
  }
  return WriteStatus::kOk;
}

WriteStatus Store::KeysReadOnly(const unsigned char* prefix, uint32_t plen,
                                std::vector<std::string>* keys) {
  uint64_t now = static_cast<uint64_t>(NowMs());
  std::vector<std::string> chain;
  for (uint32_t si = 0; si < L().nshards; ++si) {
    Shard* sh = shard(si);
    for (uint32_t b = 0; b < L().buckets; ++b) {
      // Each bucket is copied whole between two equal even sequences; a
      // shard that stays odd (a writer died in it, which only a writable
      // handle can repair) or keeps moving is left out, as get() would
      // miss its keys.
      bool skip_shard = false;
      for (int attempt = 0; attempt < 64; ++attempt) {
        uint32_t seq0 = ReadBegin(sh->seq);
        for (int spin = 0; (seq0 & 1) != 0 && spin < kSpins; ++spin) {
          CpuRelax();
          seq0 = ReadBegin(sh->seq);
        }
        if (seq0 & 1) {
          skip_shard = true;
          break;
        }
        chain.clear();
        bool damaged = false;
        uint32_t ref = Load(buckets(si)[b]);
        CycleGuard guard;
        for (uint32_t steps = 0; ref != 0; ++steps) {
          Entry* e = EntryAt(ref);
          Entry hdr;
          if (steps > kMaxSteps || guard.Seen(ref) || e == nullptr) {
            damaged = true;
            break;
          }
          LoadHeader(e, &hdr);
          if (!Sound(si, ref, hdr)) {
            damaged = true;
            break;
          }
          const char* k = reinterpret_cast<const char*>(e + 1);
          if (hdr.key_len >= plen && std::memcmp(k, prefix, plen) == 0 && IsValue(&hdr, now))
            chain.emplace_back(k, hdr.key_len);
          ref = hdr.next;
        }
        if (ReadRetry(sh->seq, seq0)) continue;
        if (!damaged) {
          for (std::string& k : chain) {
            const unsigned char* kb = reinterpret_cast<const unsigned char*>(k.data());
            uint64_t h = KeyHash(kb, static_cast<uint32_t>(k.size()));
            if (ShardOf(h) == si && BucketOf(h) == b) keys->push_back(std::move(k));
          }
        }
        break;
      }
      if (skip_shard) break;
    }
  }
  return WriteStatus::kOk;
}

WriteStatus Store::Clear() {
  if (seg_.read_only()) return WriteStatus::kReadOnly;
  Header* h = header();
  Atomic(h->generation).fetch_add(1, std::memory_order_acq_rel);
  // Every entry is already invisible; a shard that cannot be locked keeps
  // its memory until its next locker, and the caller hears why.
  WriteStatus st = WriteStatus::kOk;
  for (uint32_t si = 0; si < L().nshards; ++si) {
    if (!LockShard(si)) {
      st = lock_error_;
      continue;
    }
    DropShard(si);
    UnlockShard(si);
  }
  return st;
}

Stats Store::GetStats() {
  Header* h = header();
  const Layout& l = L();
  Stats st{};
  st.size = l.size;
  for (uint32_t si = 0; si < l.nshards; ++si) {
    Shard* sh = shard(si);
    st.used += Load(sh->used);
    st.entries += Load(sh->count);
    st.sets += Load(sh->sets);
    st.deletes += Load(sh->deletes);
    st.evictions += Load(sh->evictions);
    st.expired += Load(sh->expired);
    st.repairs += Load(sh->repairs);
  }
  st.hits = Load(h->shared_hits);
  st.misses = Load(h->shared_misses);
  for (uint32_t i = 0; i < kSlots; ++i) {
    st.hits += Load(slot(i)->hits);
    st.misses += Load(slot(i)->misses);
    double memo = Load(slot(i)->memo_hits);
    // A float64 any process may write: only a sane count is added.
    if (memo > 0 && memo < 9007199254740992.0) st.hits += static_cast<uint64_t>(memo);
  }
  for (uint32_t j = 0; j < l.npages; ++j)
    if (Load(page(j)->owner) == 0) ++st.free_pages;
  st.resets = Load(h->resets);
  st.stamp = Load(h->stamp);
  st.generation = Load(h->generation);
  st.pages = l.npages;
  st.page_size = l.page_size;
  st.max_value = l.max_value;
  st.shards = l.nshards;
  return st;
}

void Store::VerifyShard(uint32_t si, std::vector<uint64_t>* live,
                        std::vector<std::string>* problems) {
  const Layout& l = L();
  const uint64_t ps = l.page_size;
  const uint32_t n = l.npages;
  std::string where = "shard " + std::to_string(si) + ": ";
  Shard* sh = shard(si);
  size_t before = problems->size();
  if (Load(sh->seq) & 1) problems->push_back(where + "sequence is odd while unlocked");
  for (uint32_t slot = 0; slot < 4; ++slot) {
    uint32_t cls = slot & 1;
    uint32_t queue = slot < 2 ? 0 : kMainBit;
    uint32_t cur = Load(slot < 2 ? sh->cur_page[cls] : sh->main_page[cls]);
    if (cur != kNoPage &&
        (cur >= n || Load(page(cur)->owner) != si + 1 || Load(page(cur)->span) != 1 ||
         (Load(page(cur)->cls) & (kClassBit | kMainBit)) != (cls | queue)))
      problems->push_back(where + "current page " + std::to_string(cur) + " is not its own");
  }
  live->assign(n, 0);
  uint64_t count = 0, used = 0;
  for (uint32_t b = 0; b < l.buckets && problems->size() == before; ++b) {
    uint32_t ref = Load(buckets(si)[b]);
    CycleGuard guard;
    for (uint32_t steps = 0; ref != 0; ++steps) {
      // One problem per chain, and the first chain with one ends the walk:
      // a chain of 2^20 damaged entries (a hostile process can link one in
      // a segment of 64 MB, and one per bucket in a bigger one) is one
      // line, not millions (which made verify() of a big segment allocate
      // gigabytes, in a root tool too).
      auto problem = [&](const char* what) {
        problems->push_back(where + "bucket " + std::to_string(b) + " ref " + std::to_string(ref) +
                            ": " + what);
      };
      Entry* e = EntryAt(ref);
      if (steps > kMaxSteps || guard.Seen(ref) || e == nullptr) {
        problem(e == nullptr ? "out of bounds" : "chain has a cycle");
        break;
      }
      Entry hdr;
      LoadHeader(e, &hdr);
      // Sound: the key and value fit the heap, in pages the shard owns.
      if (!Sound(si, ref, hdr)) {
        problem("entry header is damaged");
        break;
      }
      const unsigned char* k = reinterpret_cast<const unsigned char*>(e + 1);
      uint64_t hash = KeyHash(k, hdr.key_len);
      uint32_t head = HeadOf(si, ref);
      if (ShardOf(hash) != si || BucketOf(hash) != b || static_cast<uint32_t>(hash) != hdr.hash) {
        problem("key hash does not match its place");
        break;
      }
      if (EntryCheck(hdr, hash, k + hdr.key_len) != hdr.check) {
        problem("checksum mismatch");
        break;
      }
      if (hdr.type < kString || hdr.type > kAscii) {
        problem("unknown value type");
        break;
      }
      if (head == kNoPage) {
        problem("is in no span of its shard");
        break;
      }
      (*live)[head] += hdr.alloc;
      ++count;
      used += hdr.alloc;
      ref = hdr.next;
    }
  }
  if (problems->size() != before) return;
  uint32_t sh_count = Load(sh->count);
  uint64_t sh_used = Load(sh->used);
  if (count != sh_count)
    problems->push_back(where + "counts " + std::to_string(sh_count) + " entries, holds " +
                        std::to_string(count));
  if (used != sh_used)
    problems->push_back(where + "counts " + std::to_string(sh_used) + " bytes, holds " +
                        std::to_string(used));
  for (uint32_t j = 0; j < n; ++j) {
    Page* p = page(j);
    if (Load(p->owner) != si + 1) continue;
    std::string at = where + "page " + std::to_string(j) + ": ";
    uint32_t span = Load(p->span), head = Load(p->head), p_used = Load(p->used);
    uint32_t p_live = Load(p->live);
    if (span == 0) {
      // A continuation page: its head must be an earlier page of the same
      // shard whose span reaches it.
      bool ok = head < j && Load(page(head)->owner) == si + 1 &&
                j < uint64_t{head} + Load(page(head)->span);
      if (!ok) problems->push_back(at + "continuation of no span");
      continue;
    }
    if (head != j || uint64_t{j} + span > n || p_used > uint64_t{span} * ps) {
      problems->push_back(at + "span record is damaged");
      continue;
    }
    bool covered = true;
    for (uint64_t c = uint64_t{j} + 1; c < uint64_t{j} + span && covered; ++c) {
      Page* q = page(static_cast<uint32_t>(c));
      covered = Load(q->owner) == si + 1 && Load(q->head) == j && Load(q->span) == 0;
    }
    if (!covered) {
      problems->push_back(at + "span covers pages that are not its own");
      continue;
    }
    if (p_live != (*live)[j])
      problems->push_back(at + "counts " + std::to_string(p_live) + " live bytes, holds " +
                          std::to_string((*live)[j]));
    // The entries appended to the span follow each other up to `used`; all
    // of it lies inside the span, so inside the heap.
    uint64_t base = uint64_t{j} * ps;
    for (uint64_t off = 0; off < p_used;) {
      if (off + kEntryBytes > p_used) {
        problems->push_back(at + "entry sequence broken at offset " + std::to_string(off));
        break;
      }
      uint32_t a = Load(reinterpret_cast<Entry*>(heap() + base + off)->alloc);
      if (a < kEntryBytes || a % 8 != 0 || off + a > p_used) {
        problems->push_back(at + "entry sequence broken at offset " + std::to_string(off));
        break;
      }
      off += a;
    }
  }
}

WriteStatus Store::Verify(std::vector<std::string>* problems) {
  Header* h = header();
  const Layout& l = L();
  bool ro = seg_.read_only();
  {
    Header copy;
    std::memcpy(&copy, h, sizeof copy);
    if (HeaderChecksum(&copy) != copy.checksum) problems->push_back("header: checksum mismatch");
    Layout now{copy.size,       copy.nshards,     copy.buckets,   copy.page_size, copy.npages,
               copy.shards_off, copy.buckets_off, copy.slots_off, copy.pages_off, copy.access_off,
               copy.heap_off,   copy.max_value,   copy.marks_off};
    if (!(now == l))
      problems->push_back("header: layout fields differ from the layout checked at open (ignored)");
  }
  std::vector<uint64_t> live;
  std::vector<std::string> found;
  WriteStatus st = WriteStatus::kOk;
  for (uint32_t si = 0; si < l.nshards; ++si) {
    if (ro) {
      // No lock, no repair: one pass between two equal even sequences (a
      // shard that keeps changing is reported as it was seen last).
      Shard* sh = shard(si);
      for (int attempt = 0; attempt < 8; ++attempt) {
        found.clear();
        uint32_t seq0 = ReadBegin(sh->seq);
        VerifyShard(si, &live, &found);
        if (!ReadRetry(sh->seq, seq0) && (seq0 & 1) == 0) break;
      }
      problems->insert(problems->end(), found.begin(), found.end());
      continue;
    }
    if (!LockShard(si)) {
      st = lock_error_;
      continue;
    }
    size_t before = problems->size();
    VerifyShard(si, &live, problems);
    if (problems->size() != before) {
      problems->back() += " (shard dropped)";
      RepairShard(si);
    }
    UnlockShard(si);
  }
  for (uint32_t j = 0; j < l.npages; ++j) {
    uint32_t owner = Load(page(j)->owner);
    if (owner > l.nshards) {
      problems->push_back("page " + std::to_string(j) + ": owner " + std::to_string(owner) +
                          " names no shard" + (ro ? "" : " (freed)"));
      if (ro) continue;
      Atomic(page(j)->span).store(1, std::memory_order_relaxed);
      FreeSpan(j, 0);
      Atomic(shard(0)->repairs).fetch_add(1, std::memory_order_relaxed);
    }
  }
  return st;
}

}  // namespace shmcache
