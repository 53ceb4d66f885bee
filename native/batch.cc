// The operations that read or change entries other than one get/set at a
// time: peek() and the readers of an entry's metadata (ttl, info), touch()'s
// in-place retiming, and the shard scan the iterators are built on. The
// batch calls (getMany, setMany, deleteMany) are loops of the single-key
// operations in binding.cc; nothing here is on get()'s or set()'s path.
#include <cstring>
#include <vector>

#include "lock.h"
#include "table.h"

namespace shmcache {

namespace {

constexpr uint32_t kMaxSteps = 1u << 20;  // as in table.cc
constexpr int kSpins = 2000;

uint64_t Align8(uint64_t v) { return (v + 7) & ~uint64_t{7}; }

using Walk = WalkResult;

}  // namespace

ReadResult Store::LockedPeek(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                             unsigned char* out, uint64_t cap, Entry* meta) {
  ReadResult res;
  // A read-only handle takes no lock: what it cannot read lock-free is a miss.
  if (seg_.read_only()) return res;
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
    bool fits = out != nullptr && e.value_len <= cap;
    uint32_t sum = fits ? EntryCopyCheck(e, hash, out, value) : EntryCheck(e, hash, value);
    if (sum != e.check) {
      RepairShard(si);
    } else if (IsValue(&e, e.expires ? static_cast<uint64_t>(NowMs()) : 0)) {
      res.type = e.type;
      res.length = e.value_len;
      res.status = out != nullptr && !fits ? ReadStatus::kNeedBuffer : ReadStatus::kHit;
      *meta = e;
    }
  }
  UnlockShard(si);
  return res;
}

ReadResult Store::Peek(const unsigned char* key, uint32_t klen, unsigned char* out, uint64_t cap,
                       Entry* meta) {
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  Shard* sh = shard(si);
  const uint32_t* bucket = &buckets(si)[BucketOf(hash)];
  uint32_t h32 = static_cast<uint32_t>(hash);
  bool copy = out != nullptr;
  ReadResult res;
  // Get()'s lock-free read, without the access bit and the read counters.
  for (int attempt = 0; attempt < 16; ++attempt) {
    uint32_t seq0 = ReadBegin(sh->seq);
    for (int spin = 0; (seq0 & 1) != 0 && spin < kSpins; ++spin) {
      CpuRelax();
      seq0 = ReadBegin(sh->seq);
    }
    if (seq0 & 1) break;
    Entry hdr;
    uint32_t ref = 0;
    uint32_t sum = 0;
    Walk w = WalkChain(bucket, h32, key, klen, copy, &hdr, &ref);
    if (w == Walk::kFound) {
      const unsigned char* value = heap() + OffsetOf(ref) + kEntryBytes + klen;
      if (!copy)
        sum = EntryCheck(hdr, hash, value);
      else if (hdr.value_len > cap)
        w = Walk::kNeedBuffer;
      else
        sum = EntryCopyCheck(hdr, hash, out, value);
    }
    if (ReadRetry(sh->seq, seq0)) continue;
    if (w == Walk::kDamaged) break;
    if (w == Walk::kAbsent) return res;
    if (w == Walk::kFound && sum != hdr.check) break;
    if (!IsValue(&hdr, hdr.expires ? static_cast<uint64_t>(NowMs()) : 0)) return res;
    res.type = hdr.type;
    res.length = hdr.value_len;
    res.status = w == Walk::kNeedBuffer ? ReadStatus::kNeedBuffer : ReadStatus::kHit;
    *meta = hdr;
    return res;
  }
  return LockedPeek(si, hash, key, klen, out, cap, meta);
}

uint64_t Store::Count() const {
  uint64_t n = 0;
  for (uint32_t si = 0; si < L().nshards; ++si) n += Load(shard(si)->count);
  return n;
}

WriteStatus Store::Retime(const unsigned char* key, uint32_t klen, uint64_t ttl_ms, bool* found) {
  *found = false;
  if (seg_.read_only()) return WriteStatus::kReadOnly;
  uint64_t hash = KeyHash(key, klen);
  uint32_t si = ShardOf(hash);
  uint64_t now = static_cast<uint64_t>(NowMs());
  if (!LockShard(si)) return lock_error_;
  Shard* sh = shard(si);
  uint32_t* link = nullptr;
  Entry e;
  bool corrupt = false;
  uint32_t ref = Find(si, hash, key, klen, &link, &e, &corrupt);
  if (corrupt) {
    RepairShard(si);
  } else if (ref != 0 && IsValue(&e, now)) {
    // The value is copied once: the old sum is checked and the new one summed
    // over the same bytes, so bytes another process rewrites meanwhile are
    // never blessed with a fresh checksum.
    std::vector<unsigned char> value(e.value_len);
    const unsigned char* at = heap() + OffsetOf(ref) + kEntryBytes + klen;
    if (EntryCopyCheck(e, hash, value.data(), at) != e.check) {
      RepairShard(si);
    } else {
      Entry next = e;
      next.expires = ttl_ms ? now + ttl_ms : 0;
      uint32_t check = EntryCheck(next, hash, value.data());
      Entry* live = EntryAt(ref);
      uint32_t pg = static_cast<uint32_t>(OffsetOf(ref) / L().page_size);
      WriteBegin(sh->seq);
      Atomic(live->expires).store(next.expires, std::memory_order_relaxed);
      Atomic(live->check).store(check, std::memory_order_relaxed);
      // A memo (src/cache.ts) keeps the expiry it read: moving the page's
      // epoch makes every memo drop what it kept from this page and read it
      // again, so a shortened TTL is never outlived.
      BumpEpoch(pg);
      WriteEnd(sh->seq);
      uint32_t timed = Load(sh->timed);
      if (e.expires == 0 && next.expires != 0)
        Atomic(sh->timed).store(timed + 1, std::memory_order_relaxed);
      else if (e.expires != 0 && next.expires == 0 && timed > 0)
        Atomic(sh->timed).store(timed - 1, std::memory_order_relaxed);
      *found = true;
    }
  }
  UnlockShard(si);
  return WriteStatus::kOk;
}

Store::Copied Store::CopyBucket(uint32_t si, uint32_t b, const unsigned char* prefix, uint32_t plen,
                                uint64_t now, unsigned char* out, uint64_t cap, uint64_t* used,
                                uint32_t* count) {
  uint32_t ref = Load(buckets(si)[b]);
  const uint64_t route = (uint64_t{L().nshards - 1} << 40) | (L().buckets - 1);
  CycleGuard guard;
  for (uint32_t steps = 0; ref != 0; ++steps) {
    Entry* e = EntryAt(ref);
    if (steps > kMaxSteps || guard.Seen(ref) || e == nullptr) return Copied::kDamaged;
    Entry hdr;
    LoadHeader(e, &hdr);
    // Sound: the key and value lie inside pages the shard owns.
    if (!Sound(si, ref, hdr)) return Copied::kDamaged;
    ref = hdr.next;
    if (hdr.key_len < plen || hdr.type == kClaim || !IsLive(&hdr, now)) continue;
    const unsigned char* k = reinterpret_cast<const unsigned char*>(e + 1);
    if (std::memcmp(k, prefix, plen) != 0) continue;
    uint64_t bytes = Align8(sizeof(ScanRecord) + uint64_t{hdr.key_len} + hdr.value_len);
    if (bytes > cap - *used) {
      *used += bytes;  // tells the caller how much the bucket needs
      return Copied::kFull;
    }
    unsigned char* rec = out + *used;
    unsigned char* kout = rec + sizeof(ScanRecord);
    // The key is hashed and compared from the copy, and the value summed as
    // it is copied: what is returned is what was checked.
    std::memcpy(kout, k, hdr.key_len);
    uint64_t hash = KeyHash(kout, hdr.key_len);
    if ((hash & route) != ((uint64_t{si} << 40) | b) || static_cast<uint32_t>(hash) != hdr.hash)
      return Copied::kDamaged;  // no get() could find it here
    if (std::memcmp(kout, prefix, plen) != 0) continue;
    const unsigned char* value = k + hdr.key_len;
    if (EntryCopyCheck(hdr, hash, kout + hdr.key_len, value) != hdr.check) return Copied::kDamaged;
    ScanRecord r{hdr.value_len, hdr.key_len, hdr.type, 0, static_cast<double>(hdr.expires)};
    std::memcpy(rec, &r, sizeof r);
    uint64_t end = sizeof(ScanRecord) + uint64_t{hdr.key_len} + hdr.value_len;
    std::memset(rec + end, 0, bytes - end);
    *used += bytes;
    ++*count;
  }
  return Copied::kOk;
}

WriteStatus Store::Scan(uint32_t si, uint32_t* cursor, const unsigned char* prefix, uint32_t plen,
                        unsigned char* out, uint64_t cap, uint32_t* count, uint64_t* need) {
  *count = 0;
  *need = 0;
  const uint32_t nb = L().buckets;
  if (si >= L().nshards || *cursor >= nb) {
    *cursor = nb;
    return WriteStatus::kOk;
  }
  uint64_t now = static_cast<uint64_t>(NowMs());
  uint64_t used = 0;
  uint32_t b = *cursor;
  if (!seg_.read_only()) {
    if (!LockShard(si)) return lock_error_;
    for (; b < nb; ++b) {
      uint64_t mark = used;
      uint32_t n = *count;
      Copied c = CopyBucket(si, b, prefix, plen, now, out, cap, &used, &n);
      if (c == Copied::kDamaged) {
        // The shard is dropped: nothing of it is returned, and there is
        // nothing left in it to walk.
        RepairShard(si);
        *count = 0;
        b = nb;
        break;
      }
      if (c == Copied::kFull) {
        if (mark == 0) *need = used;  // not even this one bucket fits
        break;
      }
      *count = n;
    }
    UnlockShard(si);
    *cursor = b;
    return WriteStatus::kOk;
  }
  // Read-only: no lock, no repair. Each bucket is copied between two equal
  // even sequences; a bucket that stays damaged, or a shard that stays odd
  // (a writer died in it) or keeps moving, is left out, as get() would miss
  // its keys.
  Shard* sh = shard(si);
  for (; b < nb; ++b) {
    bool done = false;
    for (int attempt = 0; attempt < 64 && !done; ++attempt) {
      uint32_t seq0 = ReadBegin(sh->seq);
      for (int spin = 0; (seq0 & 1) != 0 && spin < kSpins; ++spin) {
        CpuRelax();
        seq0 = ReadBegin(sh->seq);
      }
      if (seq0 & 1) {
        *cursor = nb;  // skip the rest of the shard
        return WriteStatus::kOk;
      }
      uint64_t at = used;
      uint32_t n = *count;
      Copied c = CopyBucket(si, b, prefix, plen, now, out, cap, &at, &n);
      if (ReadRetry(sh->seq, seq0)) continue;
      done = true;
      if (c == Copied::kFull) {
        if (used == 0) *need = at;
        *cursor = b;
        return WriteStatus::kOk;
      }
      if (c == Copied::kOk) {
        used = at;
        *count = n;
      }
    }
  }
  *cursor = nb;
  return WriteStatus::kOk;
}

}  // namespace shmcache
