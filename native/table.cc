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
  uint64_t off = OffsetOf(ref);
  uint32_t ps = header()->page_size;
  uint64_t last = (off + bytes - 1) / ps;
  if (last >= header()->npages) return false;
  for (uint64_t j = off / ps; j <= last; ++j)
    if (Atomic(page(static_cast<uint32_t>(j))->owner).load(std::memory_order_relaxed) != si + 1)
      return false;
  return true;
}

bool Store::IsLive(const Entry* e, uint64_t now) const {
  if (e->generation != Atomic(header()->generation).load(std::memory_order_acquire)) return false;
  return e->expires == 0 || e->expires > now;
}

bool Store::LockShard(uint32_t si) {
  Shard* sh = shard(si);
  switch (Lock(&sh->mutex)) {
    case LockResult::kLocked: return true;
    case LockResult::kOwnerDied:
      // The last writer died holding the lock, maybe half-way through a
      // change: drop the shard's entries rather than trust them.
      DropShard(si);
      MarkConsistent(&sh->mutex);
      return true;
    default: return false;
  }
}

int64_t Store::memo_hits_offset() const {
  if (slot_ >= kSlots) return -1;
  return static_cast<int64_t>(header()->slots_off + uint64_t{slot_} * sizeof(Slot) +
                              offsetof(Slot, memo_hits));
}

void Store::CountRead(bool hit) {
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
  for (uint32_t steps = 0; ref != 0; ++steps) {
    if (steps > kMaxSteps) return Walk::kDamaged;
    Entry* e = EntryAt(ref, 0);
    if (e == nullptr) return Walk::kDamaged;
    // A hit sets the entry's access bit: fetch its line while the entry's
    // own miss is under way.
    __builtin_prefetch(access_bits() + OffsetOf(ref) / 512, 1);
    Entry hdr;
    std::memcpy(&hdr, e, kEntryBytes);
    if (hdr.hash == h32 && hdr.key_len == klen) {
      if (hdr.value_len > header()->max_value ||
          EntryAt(ref, uint64_t{klen} + hdr.value_len) == nullptr)
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
  uint32_t ref = Atomic(buckets(ShardOf(hash))[BucketOf(hash)]).load(std::memory_order_relaxed);
  if (const Entry* e = EntryAt(ref)) __builtin_prefetch(e);
}

namespace {
std::atomic<uint64_t> g_locked_reads{0};
}  // namespace

uint64_t LockedReads() { return g_locked_reads.load(std::memory_order_relaxed); }

ReadResult Store::LockedGet(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                            unsigned char* out, uint64_t cap, bool copy) {
  g_locked_reads.fetch_add(1, std::memory_order_relaxed);
  ReadResult res;
  if (!LockShard(si)) return res;
  bool corrupt = false;
  uint32_t* link;
  uint32_t ref = Find(si, hash, key, klen, &link, &corrupt);
  Entry* e = ref ? EntryAt(ref) : nullptr;
  if (corrupt) {
    DropShard(si);
  } else if (e != nullptr) {
    const unsigned char* value = reinterpret_cast<unsigned char*>(e + 1) + klen;
    if (EntryCheck(*e, key, value) != e->check) {
      // Damaged bytes: drop what they touched.
      DropShard(si);
    } else if (IsValue(e, e->expires ? static_cast<uint64_t>(NowMs()) : 0)) {
      res.type = e->type;
      res.length = e->value_len;
      if (!copy) {
        res.status = ReadStatus::kHit;
      } else if (e->value_len > cap) {
        res.status = ReadStatus::kNeedBuffer;
      } else {
        std::memcpy(out, value, e->value_len);
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
    uint32_t sum = 0;  // of the copy, when there is one
    Walk w = WalkChain(bucket, h32, key, klen, copy, &hdr, &ref);
    if (w == Walk::kFound && copy) {
      if (hdr.value_len > cap) {
        w = Walk::kNeedBuffer;
      } else {
        // WalkChain checked that the header, key and value fit the heap.
        const unsigned char* value = heap() + OffsetOf(ref) + kEntryBytes + klen;
        sum = EntryCopyCheck(hdr, hash, out, value);
        if (memo != nullptr && (hdr.type == kString || hdr.type == kAscii)) {
          // Read before the sequence is checked again, so that the epoch is
          // the one the entry was read in.
          uint64_t off = OffsetOf(ref);
          uint32_t pg = static_cast<uint32_t>(off / header()->page_size);
          memo->epoch = Atomic(marks(pg)[0]).load(std::memory_order_acquire);
          memo->version = Atomic(marks(pg)[1]).load(std::memory_order_acquire);
          memo->marks_index = static_cast<uint32_t>(header()->marks_off / 4 + uint64_t{pg} * 2);
          std::memcpy(&memo->word, reinterpret_cast<const unsigned char*>(&hdr) + 8, 4);
          memo->word_index = static_cast<uint32_t>((header()->heap_off + off + 8) / 4);
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
    if (copy && w == Walk::kFound && sum != hdr.check) {
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
  if (copy && res.status != ReadStatus::kNeedBuffer) CountRead(res.status == ReadStatus::kHit);
  return res;
}

bool Store::Has(const unsigned char* key, uint32_t klen) {
  return Get(key, klen, nullptr, 0).status == ReadStatus::kHit;
}

uint32_t Store::Find(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                     uint32_t** link, bool* corrupt) {
  *corrupt = false;
  uint32_t* l = &buckets(si)[BucketOf(hash)];
  uint32_t h32 = static_cast<uint32_t>(hash);
  for (uint32_t steps = 0; *l != 0; ++steps) {
    uint32_t ref = *l;
    Entry* e = EntryAt(ref);
    if (steps > kMaxSteps || e == nullptr || !(e->flags & kLive) ||
        !OwnedBy(ref, kEntryBytes, si)) {
      *corrupt = true;
      return 0;
    }
    if (e->hash == h32 && e->key_len == klen) {
      if (e->value_len > header()->max_value ||
          EntryAt(ref, uint64_t{klen} + e->value_len) == nullptr) {
        *corrupt = true;
        return 0;
      }
      if (std::memcmp(e + 1, key, klen) == 0) {
        *link = l;
        return ref;
      }
    }
    l = &e->next;
  }
  return 0;
}

uint32_t Store::FindIntact(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                           uint32_t** link) {
  bool corrupt = false;
  uint32_t ref = Find(si, hash, key, klen, link, &corrupt);
  if (!corrupt && (ref == 0 || Intact(EntryAt(ref)))) return ref;
  DropShard(si);
  return 0;
}

void Store::Unlink(uint32_t si, uint32_t* link, uint32_t ref) {
  Shard* sh = shard(si);
  Entry* e = EntryAt(ref);
  *link = e->next;
  e->flags = 0;
  // Then the page's version: a memo that sees it unchanged knows the flags
  // it checked before are still set.
  BumpVersion(static_cast<uint32_t>(OffsetOf(ref) / header()->page_size));
  uint32_t head = HeadOf(ref);
  if (head != kNoPage) page(head)->live -= e->alloc;
  Atomic(sh->count).store(sh->count - 1, std::memory_order_relaxed);
  Atomic(sh->used).store(sh->used - e->alloc, std::memory_order_relaxed);
  if (e->expires != 0 && sh->timed > 0) --sh->timed;
  AfterUnlink(si, head);
}

void Store::SweepStep(uint32_t si, uint64_t now) {
  Shard* sh = shard(si);
  if (sh->timed == 0) return;  // nothing in this shard can expire
  uint32_t b = sh->sweep++ & (header()->buckets - 1);
  uint32_t* l = &buckets(si)[b];
  bool writing = false;
  for (uint32_t steps = 0; *l != 0 && steps < kMaxSteps; ++steps) {
    Entry* e = EntryAt(*l);
    if (e == nullptr) break;  // the next Find on this bucket repairs it
    if (IsLive(e, now)) {
      l = &e->next;
      continue;
    }
    if (!writing) WriteBegin(sh->seq);
    writing = true;
    Unlink(si, l, *l);
    Atomic(sh->expired).store(sh->expired + 1, std::memory_order_relaxed);
  }
  if (writing) WriteEnd(sh->seq);
}

WriteStatus Store::Insert(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                          uint8_t type, const unsigned char* value, uint64_t vlen, uint64_t expires,
                          bool only_if_absent) {
  Shard* sh = shard(si);
  uint64_t bytes = Align8(uint64_t{kEntryBytes} + klen + vlen);
  for (int attempt = 0;; ++attempt) {
    uint32_t busy = kNoPage;
    uint32_t ref = Allocate(si, bytes, &busy);
    if (ref == 0) {
      // Another shard holds the page we want, or another process took the
      // page we freed: wait without holding our lock, then try again. (In a
      // sound segment room can always be made; a damaged one is repaired by
      // the eviction path dropping shards.)
      if (attempt > 10000) return WriteStatus::kNoSpace;
      UnlockShard(si);
      if (busy != kNoPage && LockShard(busy)) UnlockShard(busy);
      sched_yield();
      if (!LockShard(si)) return WriteStatus::kCorrupt;
      continue;
    }
    Entry* e = EntryAt(ref, uint64_t{klen} + vlen);
    e->hash = static_cast<uint32_t>(hash);
    e->key_len = static_cast<uint16_t>(klen);
    e->type = type;
    e->value_len = static_cast<uint32_t>(vlen);
    e->generation = Atomic(header()->generation).load(std::memory_order_acquire);
    e->expires = expires;
    unsigned char* kdst = reinterpret_cast<unsigned char*>(e + 1);
    std::memcpy(kdst, key, klen);
    std::memcpy(kdst + klen, value, vlen / 2);
    CrashHere(CrashPoint::kCopy);
    std::memcpy(kdst + klen + vlen / 2, value + vlen / 2, vlen - vlen / 2);
    e->check = EntryCheck(*e, hash, value);

    bool corrupt = false;
    uint32_t* link = nullptr;
    uint32_t old = Find(si, hash, key, klen, &link, &corrupt);
    // add() reads the old entry, so it must be sound; set() only unlinks it.
    if (corrupt || (old != 0 && only_if_absent && !Intact(EntryAt(old)))) {
      DropShard(si);  // also frees what was just allocated; start over
      continue;
    }
    if (old != 0 && only_if_absent) {
      Entry* oe = EntryAt(old);
      if (IsValue(oe, oe->expires ? static_cast<uint64_t>(NowMs()) : 0)) {
        AfterUnlink(si, HeadOf(ref));  // the new bytes stay dead; free a span now
        return WriteStatus::kExists;
      }
    }
    WriteBegin(sh->seq);
    if (old != 0) {
      Unlink(si, link, old);
      CrashHere(CrashPoint::kUnlinked);
    }
    uint32_t* bucket = &buckets(si)[BucketOf(hash)];
    e->next = *bucket;
    e->flags = kLive;
    Atomic(*bucket).store(ref, std::memory_order_release);
    uint32_t head = HeadOf(ref);
    if (head != kNoPage) page(head)->live += e->alloc;
    Atomic(sh->count).store(sh->count + 1, std::memory_order_relaxed);
    Atomic(sh->used).store(sh->used + e->alloc, std::memory_order_relaxed);
    if (e->expires != 0) ++sh->timed;
    WriteEnd(sh->seq);
    Atomic(sh->sets).store(sh->sets + 1, std::memory_order_relaxed);
    return WriteStatus::kOk;
  }
}

WriteStatus Store::Set(uint64_t hash, const unsigned char* key, uint32_t klen, uint8_t type,
                       const unsigned char* value, uint64_t vlen, uint64_t ttl_ms,
                       bool only_if_absent) {
  uint32_t si = ShardOf(hash);
  uint64_t now = ttl_ms ? static_cast<uint64_t>(NowMs()) : 0;
  uint64_t expires = ttl_ms ? now + ttl_ms : 0;
  if (!LockShard(si)) return WriteStatus::kCorrupt;
  CrashHere(CrashPoint::kLocked);
  WriteStatus st = Insert(si, hash, key, klen, type, value, vlen, expires, only_if_absent);
  if (st != WriteStatus::kCorrupt) {
    if (shard(si)->timed != 0) SweepStep(si, now ? now : static_cast<uint64_t>(NowMs()));
    UnlockShard(si);
  }
  return st;
}

bool Store::Delete(const unsigned char* key, uint32_t klen) {
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  if (!LockShard(si)) return false;
  Shard* sh = shard(si);
  bool corrupt = false;
  uint32_t* link = nullptr;
  uint32_t ref = Find(si, hash, key, klen, &link, &corrupt);
  bool removed = false;
  if (corrupt) {
    DropShard(si);
  } else if (ref != 0) {
    Entry* e = EntryAt(ref);
    removed = IsValue(e, e->expires ? static_cast<uint64_t>(NowMs()) : 0);
    WriteBegin(sh->seq);
    Unlink(si, link, ref);
    WriteEnd(sh->seq);
    auto counter = Atomic(removed ? sh->deletes : sh->expired);
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  UnlockShard(si);
  return removed;
}

void Store::UpdateNumber(Shard* sh, Entry* e, const unsigned char* key, double next) {
  unsigned char* value = reinterpret_cast<unsigned char*>(e + 1) + e->key_len;
  WriteBegin(sh->seq);
  std::memcpy(value, &next, 8);
  CrashHere(CrashPoint::kIncr);
  e->check = EntryCheck(*e, key, value);
  WriteEnd(sh->seq);
  Atomic(sh->sets).store(sh->sets + 1, std::memory_order_relaxed);
}

WriteStatus Store::Incr(const unsigned char* key, uint32_t klen, double by, double initial,
                        uint64_t ttl_ms, double* result) {
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  uint64_t now = static_cast<uint64_t>(NowMs());
  if (!LockShard(si)) return WriteStatus::kCorrupt;
  Shard* sh = shard(si);
  uint32_t* link = nullptr;
  uint32_t ref = FindIntact(si, hash, key, klen, &link);
  WriteStatus st = WriteStatus::kOk;
  Entry* e = ref ? EntryAt(ref, uint64_t{klen} + 8) : nullptr;
  if (e != nullptr && IsValue(e, now)) {
    double v = 0;
    if (!NumberIn(e, &v) || !IsSafeInteger(v)) {
      st = WriteStatus::kNotNumber;
    } else if (!IsSafeInteger(v + by)) {
      st = WriteStatus::kRange;
    } else {
      *result = v + by;
      UpdateNumber(sh, e, key, *result);
    }
  } else if (!IsSafeInteger(initial + by)) {
    st = WriteStatus::kRange;
  } else {
    double next = initial + by;
    st = Insert(si, hash, key, klen, kNumber, reinterpret_cast<const unsigned char*>(&next), 8,
                ttl_ms ? now + ttl_ms : 0, false);
    if (st == WriteStatus::kOk) *result = next;
  }
  if (st != WriteStatus::kCorrupt) UnlockShard(si);
  return st;
}

WriteStatus Store::Cas(const unsigned char* key, uint32_t klen, double expected, double next) {
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  if (!LockShard(si)) return WriteStatus::kCorrupt;
  Shard* sh = shard(si);
  uint32_t* link = nullptr;
  uint32_t ref = FindIntact(si, hash, key, klen, &link);
  WriteStatus st = WriteStatus::kMismatch;
  Entry* e = ref ? EntryAt(ref, uint64_t{klen} + 8) : nullptr;
  double v = 0;
  if (e != nullptr && NumberIn(e, &v) &&
      IsLive(e, e->expires ? static_cast<uint64_t>(NowMs()) : 0)) {
    if (IsSafeInteger(v) && v == expected) {
      UpdateNumber(sh, e, key, next);
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
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  uint64_t now = static_cast<uint64_t>(NowMs());
  if (!LockShard(si)) return WriteStatus::kCorrupt;
  uint32_t* link = nullptr;
  uint32_t ref = FindIntact(si, hash, key, klen, &link);
  Entry* e = ref ? EntryAt(ref, uint64_t{klen} + sizeof(ClaimRecord)) : nullptr;
  WriteStatus st = WriteStatus::kOk;
  if (e != nullptr && IsLive(e, now)) {
    if (e->type != kClaim) {
      st = WriteStatus::kExists;
    } else if (e->value_len == sizeof(ClaimRecord)) {
      ClaimRecord held;
      std::memcpy(&held, reinterpret_cast<unsigned char*>(e + 1) + klen, sizeof held);
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
  if (st != WriteStatus::kCorrupt) UnlockShard(si);
  return st;
}

bool Store::Release(const unsigned char* key, uint32_t klen, uint64_t token) {
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  if (!LockShard(si)) return false;
  uint32_t* link = nullptr;
  uint32_t ref = FindIntact(si, hash, key, klen, &link);
  bool released = false;
  if (ref != 0) {
    Entry* e = EntryAt(ref, uint64_t{klen} + sizeof(ClaimRecord));
    if (e != nullptr && e->type == kClaim && e->value_len == sizeof(ClaimRecord)) {
      ClaimRecord held;
      std::memcpy(&held, reinterpret_cast<unsigned char*>(e + 1) + klen, sizeof held);
      if (held.pid == pid_ && held.token == token) {
        Shard* sh = shard(si);
        WriteBegin(sh->seq);
        Unlink(si, link, ref);
        WriteEnd(sh->seq);
        released = true;
      }
    }
  }
  UnlockShard(si);
  return released;
}

std::vector<std::string> Store::Keys(const unsigned char* prefix, uint32_t plen) {
  std::vector<std::string> keys;
  Header* h = header();
  uint64_t now = static_cast<uint64_t>(NowMs());
  for (uint32_t si = 0; si < h->nshards; ++si) {
    if (!LockShard(si)) continue;
    size_t mark = keys.size();
    bool corrupt = false;
    for (uint32_t b = 0; b < h->buckets && !corrupt; ++b) {
      uint32_t ref = buckets(si)[b];
      for (uint32_t steps = 0; ref != 0; ++steps) {
        Entry* e = EntryAt(ref);
        if (steps > kMaxSteps || e == nullptr || EntryAt(ref, e->key_len) == nullptr) {
          corrupt = true;
          break;
        }
        const char* k = reinterpret_cast<const char*>(e + 1);
        if (e->key_len >= plen && std::memcmp(k, prefix, plen) == 0 && IsValue(e, now))
          keys.emplace_back(k, e->key_len);
        ref = e->next;
      }
    }
    if (corrupt) {
      keys.resize(mark);
      DropShard(si);
    }
    UnlockShard(si);
  }
  return keys;
}

void Store::Clear() {
  Header* h = header();
  Atomic(h->generation).fetch_add(1, std::memory_order_acq_rel);
  for (uint32_t si = 0; si < h->nshards; ++si) {
    if (!LockShard(si)) continue;
    DropShard(si);
    UnlockShard(si);
  }
}

Stats Store::GetStats() {
  Header* h = header();
  Stats st{};
  st.size = h->size;
  for (uint32_t si = 0; si < h->nshards; ++si) {
    Shard* sh = shard(si);
    st.used += Atomic(sh->used).load(std::memory_order_relaxed);
    st.entries += Atomic(sh->count).load(std::memory_order_relaxed);
    st.sets += Atomic(sh->sets).load(std::memory_order_relaxed);
    st.deletes += Atomic(sh->deletes).load(std::memory_order_relaxed);
    st.evictions += Atomic(sh->evictions).load(std::memory_order_relaxed);
    st.expired += Atomic(sh->expired).load(std::memory_order_relaxed);
    st.repairs += Atomic(sh->repairs).load(std::memory_order_relaxed);
  }
  st.hits = Atomic(h->shared_hits).load(std::memory_order_relaxed);
  st.misses = Atomic(h->shared_misses).load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < kSlots; ++i) {
    st.hits += Atomic(slot(i)->hits).load(std::memory_order_relaxed);
    st.misses += Atomic(slot(i)->misses).load(std::memory_order_relaxed);
    st.hits += static_cast<uint64_t>(Atomic(slot(i)->memo_hits).load(std::memory_order_relaxed));
  }
  for (uint32_t j = 0; j < h->npages; ++j)
    if (Atomic(page(j)->owner).load(std::memory_order_relaxed) == 0) ++st.free_pages;
  st.resets = Atomic(h->resets).load(std::memory_order_relaxed);
  st.stamp = Atomic(h->stamp).load(std::memory_order_relaxed);
  st.generation = Atomic(h->generation).load(std::memory_order_relaxed);
  st.pages = h->npages;
  st.page_size = h->page_size;
  st.max_value = h->max_value;
  st.shards = h->nshards;
  return st;
}

std::vector<std::string> Store::Verify() {
  std::vector<std::string> problems;
  Header* h = header();
  if (HeaderChecksum(h) != h->checksum) problems.push_back("header: checksum mismatch");
  uint32_t ps = h->page_size;
  std::vector<uint64_t> live(h->npages);
  for (uint32_t si = 0; si < h->nshards; ++si) {
    std::string where = "shard " + std::to_string(si) + ": ";
    if (!LockShard(si)) {
      problems.push_back(where + "mutex is not recoverable");
      continue;
    }
    Shard* sh = shard(si);
    size_t before = problems.size();
    if (Atomic(sh->seq).load() & 1) problems.push_back(where + "sequence is odd while unlocked");
    for (uint32_t cls = 0; cls < 2; ++cls) {
      uint32_t cur = sh->cur_page[cls];
      if (cur != kNoPage && (cur >= h->npages || page(cur)->owner != si + 1 ||
                             page(cur)->span != 1 || page(cur)->cls != cls))
        problems.push_back(where + "current page " + std::to_string(cur) + " is not its own");
    }
    uint64_t count = 0, used = 0;
    for (uint32_t b = 0; b < h->buckets && problems.size() == before; ++b) {
      uint32_t ref = buckets(si)[b];
      for (uint32_t steps = 0; ref != 0; ++steps) {
        std::string at =
            where + "bucket " + std::to_string(b) + " ref " + std::to_string(ref) + ": ";
        Entry* e = EntryAt(ref);
        if (steps > kMaxSteps || e == nullptr) {
          problems.push_back(at + (e == nullptr ? "out of bounds" : "chain has a cycle"));
          break;
        }
        uint64_t need = uint64_t{kEntryBytes} + e->key_len + e->value_len;
        if (e->key_len == 0 || e->key_len > kMaxKey ||
            EntryAt(ref, need - kEntryBytes) == nullptr || e->alloc < need || e->alloc % 8 != 0 ||
            !OwnedBy(ref, e->alloc, si) || !(e->flags & kLive)) {
          problems.push_back(at + "entry header is damaged");
          break;
        }
        const unsigned char* k = reinterpret_cast<const unsigned char*>(e + 1);
        uint64_t hash = KeyHash(k, e->key_len);
        if (ShardOf(hash) != si || BucketOf(hash) != b || static_cast<uint32_t>(hash) != e->hash)
          problems.push_back(at + "key hash does not match its place");
        if (EntryCheck(*e, k, k + e->key_len) != e->check)
          problems.push_back(at + "checksum mismatch");
        if (e->type < kString || e->type > kAscii) problems.push_back(at + "unknown value type");
        uint32_t head = HeadOf(ref);
        if (head != kNoPage) live[head] += e->alloc;
        ++count;
        used += e->alloc;
        ref = e->next;
      }
    }
    if (problems.size() == before) {
      if (count != sh->count)
        problems.push_back(where + "counts " + std::to_string(sh->count) + " entries, holds " +
                           std::to_string(count));
      if (used != sh->used)
        problems.push_back(where + "counts " + std::to_string(sh->used) + " bytes, holds " +
                           std::to_string(used));
      for (uint32_t j = 0; j < h->npages; ++j) {
        Page* p = page(j);
        if (Atomic(p->owner).load() != si + 1) continue;
        std::string at = where + "page " + std::to_string(j) + ": ";
        if (p->span == 0) {
          Page* hp = p->head < h->npages ? page(p->head) : nullptr;
          if (hp == nullptr || hp->owner != si + 1 || p->head >= j || j >= p->head + hp->span)
            problems.push_back(at + "continuation of no span");
          continue;
        }
        if (p->head != j || j + p->span > h->npages || p->used > uint64_t{p->span} * ps) {
          problems.push_back(at + "span record is damaged");
          continue;
        }
        if (p->live != live[j])
          problems.push_back(at + "counts " + std::to_string(p->live) + " live bytes, holds " +
                             std::to_string(live[j]));
        uint64_t off = 0;
        while (off < p->used) {
          Entry* e = reinterpret_cast<Entry*>(heap() + uint64_t{j} * ps + off);
          if (off + kEntryBytes > p->used || e->alloc < kEntryBytes || e->alloc % 8 != 0 ||
              off + e->alloc > p->used) {
            problems.push_back(at + "entry sequence broken at offset " + std::to_string(off));
            break;
          }
          off += e->alloc;
        }
      }
    }
    if (problems.size() != before) {
      problems.back() += " (shard dropped)";
      DropShard(si);
    }
    UnlockShard(si);
  }
  for (uint32_t j = 0; j < h->npages; ++j) {
    uint32_t owner = Atomic(page(j)->owner).load();
    if (owner > h->nshards) {
      problems.push_back("page " + std::to_string(j) + ": owner " + std::to_string(owner) +
                         " names no shard (freed)");
      page(j)->span = 1;
      FreeSpan(j, 0);
    }
  }
  return problems;
}

}  // namespace shmcache
