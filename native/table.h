// The cache inside a mapped segment: the per-shard hash tables, the entries
// they link, and every operation of the public API. Page management and
// eviction live in alloc.cc; both work on the Store declared here.
#ifndef SHMCACHE_TABLE_H_
#define SHMCACHE_TABLE_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "evict.h"
#include "lock.h"
#include "segment.h"

namespace shmcache {

enum ValueType : uint8_t {
  kString = 1,  // UTF-8 bytes
  kBytes = 2,   // Buffer / Uint8Array
  kNumber = 3,  // little-endian float64
  kCodec = 4,   // bytes from the cache's codec
  kClaim = 5,   // remember(): a producer's claim, {pid u32, pad u32, token u64}
  kAscii = 6,   // a string of 7-bit bytes only (read back as latin1: no decoding)
};

constexpr uint8_t kLive = 1;
constexpr uint32_t kMaxKey = 1024;

// An entry in the heap, 8-byte aligned, followed by the key and the value.
struct Entry {
  uint32_t next;  // ref of the next entry in its bucket chain, 0 = end
  uint32_t hash;  // low 32 bits of the key hash
  uint16_t key_len;
  uint8_t type;   // ValueType
  uint8_t flags;  // kLive while linked in a chain
  uint32_t value_len;
  uint32_t alloc;       // bytes this entry takes in its page (multiple of 8)
  uint32_t generation;  // Header::generation when stored
  uint64_t expires;     // ms since the epoch, 0 = never
  uint32_t check;       // checksum of the fields above but next/flags, key, value
  uint32_t pad;
};
constexpr uint32_t kEntryBytes = sizeof(Entry);
static_assert(kEntryBytes == 40, "entry header is 40 bytes");
static_assert(offsetof(Entry, key_len) == 8 && offsetof(Entry, flags) == 11,
              "key_len, type and flags form the word at 8 that the memo checks");

// The 64-bit hash of a key: its shard (bits 40..), its bucket (low bits),
// and part of its entry's checksum.
inline uint64_t KeyHash(const unsigned char* key, uint32_t klen) {
  return Hash(key, klen, 0x7368'6D63'6163'6865ull);
}

// Reads this process made through a shard's lock, because the lock-free
// read could not finish (a writer too slow or dead, damage): for tests.
uint64_t LockedReads();

// Entry checksum over metadata, key (through its KeyHash) and value.
uint32_t EntryCheck(const Entry& e, uint64_t key_hash, const unsigned char* value);
uint32_t EntryCheck(const Entry& e, const unsigned char* key, const unsigned char* value);
// EntryCheck() of the value as it copies its e.value_len bytes to `out`.
uint32_t EntryCopyCheck(const Entry& e, uint64_t key_hash, unsigned char* out,
                        const unsigned char* value);

// Result of a read. For a hit, `type` and `length` describe what was copied
// into the output buffer; kNeedBuffer asks for a buffer of `length` bytes.
// kCorrupt and kTimeout: the shard's lock could not be taken (unrecoverable,
// or a live holder kept it too long); the binding throws.
enum class ReadStatus { kMiss, kHit, kNeedBuffer, kCorrupt, kTimeout };

// What a handle's memo needs to trust a string it read, later, without
// reading it again (see the page marks in segment.h). Indexes are into the
// mapping seen as uint32 words. word_index 0: the read went through the
// lock, so nothing is known.
struct MemoInfo {
  uint32_t word_index;   // the entry's key_len/type/flags word
  uint32_t word;         // its value while the entry is linked
  uint32_t marks_index;  // the epoch of the entry's (first) page; its version follows
  uint32_t epoch;
  uint32_t version;
  uint32_t generation;
  uint32_t type;  // kString or kAscii
  uint32_t pad;
  double expires;  // ms since the epoch, 0 = never
};

struct ReadResult {
  ReadStatus status = ReadStatus::kMiss;
  uint8_t type = 0;
  uint64_t length = 0;
};

enum class WalkResult { kFound, kAbsent, kDamaged, kNeedBuffer };

enum class WriteStatus {
  kOk,
  kExists,     // add(): a live entry was there
  kNotNumber,  // incr(): the entry is not an integer
  kRange,      // incr(): the result leaves the safe integer range
  kMismatch,   // cas(): missing, not an integer, or not equal
  kCorrupt,    // a shard mutex is unusable, or damage keeps coming back
  kTimeout,    // a live process held a shard lock for too long
  kNoSpace,    // could not make room (should not happen below max_value)
  kReadOnly,   // the segment is mapped read-only
};

struct Stats {
  uint64_t size, used, entries, hits, misses, sets, deletes, evictions, expired, repairs, resets,
      stamp, generation, pages, free_pages, page_size, max_value, shards;
};

// How a handle's start-time stamp may reset the segment (DESIGN §3).
enum class StampMode {
  kNever,     // stamp: false
  kExplicit,  // the stamp option or SHMCACHE_STAMP: any newer stamp resets
  kGroup,     // the default: a newer process group resets only when nothing
              // that used the segment is alive
};

struct AttachRequest {
  OpenRequest file;
  uint64_t stamp = 0;
  StampMode mode = StampMode::kNever;
  uint32_t leader_pid = 0;    // kGroup: this process's group leader
  uint64_t leader_start = 0;  // and its start time (clock ticks since boot), 0 unknown
};

class Store {
 public:
  Store() = default;
  ~Store();

  // Maps the file (creating it if asked) and applies the stamp rule of
  // DESIGN §3 (attach.cc).
  bool Open(const AttachRequest& request, Error* error, bool* created, bool* reset);
  void Close();
  bool is_open() const { return seg_.is_open(); }
  bool read_only() const { return seg_.read_only(); }
  const std::string& path() const { return seg_.path(); }
  // Pages lost because the file was cut short under the mapping; Probe
  // touches every page first (segment.cc).
  uint32_t lost_pages() const { return seg_.lost_pages(); }
  uint32_t ProbeLostPages() const { return seg_.ProbeLostPages(); }

  // With `memo`, a string hit also says how to recognize its entry later.
  ReadResult Get(const unsigned char* key, uint32_t klen, unsigned char* out, uint64_t cap,
                 MemoInfo* memo = nullptr);
  // The mapping (for the memo's view of it) and this handle's hit slot, or
  // -1 when it has none.
  unsigned char* base() const { return seg_.base(); }
  int64_t memo_hits_offset() const;
  // kHit when a live value is there, read and checked as get() would.
  ReadStatus Has(const unsigned char* key, uint32_t klen);
  // Starts fetching the first entry of `key`'s bucket chain, for a write
  // about to do other work first (a hint: it changes nothing).
  void PrefetchChain(uint64_t hash) const;
  // `hash` is KeyHash(key, klen), which the caller may have needed first.
  WriteStatus Set(uint64_t hash, const unsigned char* key, uint32_t klen, uint8_t type,
                  const unsigned char* value, uint64_t vlen, uint64_t ttl_ms, bool only_if_absent);
  WriteStatus Delete(const unsigned char* key, uint32_t klen, bool* removed);
  WriteStatus Incr(const unsigned char* key, uint32_t klen, double by, double initial,
                   uint64_t ttl_ms, double* result);
  WriteStatus Cas(const unsigned char* key, uint32_t klen, double expected, double next);
  // remember(): claims the right to produce `key`. kOk: claimed; kExists: a
  // value is there; kMismatch: a live process holds the claim.
  WriteStatus Claim(const unsigned char* key, uint32_t klen, uint64_t token);
  // Drops the claim on `key` if it is still the one made with `token`.
  WriteStatus Release(const unsigned char* key, uint32_t klen, uint64_t token, bool* released);
  WriteStatus Keys(const unsigned char* prefix, uint32_t plen, std::vector<std::string>* keys);
  WriteStatus Clear();
  Stats GetStats();
  WriteStatus Verify(std::vector<std::string>* problems);

  uint64_t max_value() const { return L().max_value; }
  uint64_t size() const { return seg_.size(); }

  // --- batch, peek, info, touch, scan (batch.cc) ---------------------------
  // Get() without its marks: no access bit, no hit or miss counted. With a
  // null `out` nothing is copied (the value is still checksummed). `meta`
  // receives the entry's header on a hit (and on kNeedBuffer).
  ReadResult Peek(const unsigned char* key, uint32_t klen, unsigned char* out, uint64_t cap,
                  Entry* meta);
  // touch(): gives a live entry a new expiry (0 = none) in place, under the
  // shard lock, with its checksum summed again.
  WriteStatus Retime(const unsigned char* key, uint32_t klen, uint64_t ttl_ms, bool* found);
  // Copies the live entries (values, not claims; not expired) of shard `si`
  // whose key starts with `prefix`, bucket by bucket from `*cursor`, into
  // `out` as ScanRecords, until the next bucket would not fit `cap`. Sets
  // *cursor to the next bucket (buckets_per_shard() when the shard is done),
  // *count to the records written, and *need (when not even one bucket fit)
  // to the bytes that bucket needs. Writable handles copy under the shard
  // lock; read-only ones between two equal even sequences.
  WriteStatus Scan(uint32_t si, uint32_t* cursor, const unsigned char* prefix, uint32_t plen,
                   unsigned char* out, uint64_t cap, uint32_t* count, uint64_t* need);
  // Entries stored (as GetStats().entries, without the rest of it).
  uint64_t Count() const;
  uint32_t shard_count() const { return L().nshards; }
  uint32_t buckets_per_shard() const { return L().buckets; }
  // One entry as Scan() copies it: this header, the key, the value, then
  // zeros up to a multiple of 8.
  struct ScanRecord {
    uint32_t value_len;
    uint16_t key_len;
    uint8_t type;  // ValueType (kAscii for a 7-bit string)
    uint8_t pad;
    double expires;  // ms since the epoch, 0 = never
  };

 private:
  // batch.cc: Peek()'s fallback through the lock; one bucket of Scan().
  ReadResult LockedPeek(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                        unsigned char* out, uint64_t cap, Entry* meta);
  enum class Copied { kOk, kFull, kDamaged };
  Copied CopyBucket(uint32_t si, uint32_t b, const unsigned char* prefix, uint32_t plen,
                    uint64_t now, unsigned char* out, uint64_t cap, uint64_t* used,
                    uint32_t* count);

 public:
  // --- end of batch.cc ------------------------------------------------------

 private:
  // The layout validated at open, in process memory: sizes, counts and
  // offsets are never read from the mapping again.
  const Layout& L() const { return seg_.layout(); }
  // Pointers into the mapping.
  Header* header() const { return seg_.header(); }
  Shard* shard(uint32_t i) const {
    return reinterpret_cast<Shard*>(seg_.base() + L().shards_off + uint64_t{i} * kShardBytes);
  }
  uint32_t* buckets(uint32_t i) const {
    return reinterpret_cast<uint32_t*>(seg_.base() + L().buckets_off) + uint64_t{i} * L().buckets;
  }
  Page* page(uint32_t i) const { return reinterpret_cast<Page*>(seg_.base() + L().pages_off) + i; }
  Slot* slot(uint32_t i) const { return reinterpret_cast<Slot*>(seg_.base() + L().slots_off) + i; }
  unsigned char* heap() const { return seg_.base() + L().heap_off; }
  // Page `i`'s epoch, then its version (see segment.h).
  uint32_t* marks(uint32_t i) const {
    return reinterpret_cast<uint32_t*>(seg_.base() + L().marks_off) + uint64_t{i} * 2;
  }
  // Before bytes of page `i` that held entries may hold anything else.
  void BumpEpoch(uint32_t i) const {
    Atomic(marks(i)[0]).fetch_add(1, std::memory_order_acq_rel);
    Atomic(marks(i)[1]).fetch_add(1, std::memory_order_acq_rel);
  }
  // After an entry of page `i` was unlinked (its flags cleared).
  void BumpVersion(uint32_t i) const {
    Atomic(marks(i)[1]).fetch_add(1, std::memory_order_acq_rel);
  }
  // Access hints: bit (offset / 64) is set by readers of the entry at that
  // heap offset and gives it a second chance at eviction. The bitmap is never
  // reused for anything else, so a stale reader setting a bit is harmless.
  uint8_t* access_bits() const { return seg_.base() + L().access_off; }
  void Touch(uint64_t heap_off) const;
  bool Touched(uint64_t heap_off) const;
  void Untouch(uint64_t heap_off) const;
  uint64_t heap_bytes() const { return uint64_t{L().npages} * L().page_size; }

  // Refs are 1 + (heap offset / 8). Returns null unless an entry header and
  // `extra` following bytes fit inside the heap.
  Entry* EntryAt(uint32_t ref, uint64_t extra = 0) const;
  uint32_t RefOf(uint64_t heap_off) const { return static_cast<uint32_t>(heap_off / 8 + 1); }
  uint64_t OffsetOf(uint32_t ref) const { return (uint64_t{ref} - 1) * 8; }
  // Copies the entry header at `e` into `out`, each 8-byte word read once
  // (another process may rewrite it meanwhile: every check and every use
  // then see the same value).
  static void LoadHeader(const Entry* e, Entry* out) {
    const uint64_t* src = reinterpret_cast<const uint64_t*>(e);
    uint64_t words[kEntryBytes / 8];
    for (uint32_t i = 0; i < kEntryBytes / 8; ++i)
      words[i] = Atomic(const_cast<uint64_t&>(src[i])).load(std::memory_order_relaxed);
    std::memcpy(out, words, kEntryBytes);
  }
  // Whether a linked entry's header, as copied, is one shard `si` could
  // have written: plausible lengths, an `alloc` that covers them, linked,
  // and every byte of it in pages the shard owns.
  bool Sound(uint32_t si, uint32_t ref, const Entry& e) const;
  // True when the entry's whole span lies in pages owned by `shard_index`.
  bool OwnedBy(uint32_t ref, uint64_t bytes, uint32_t shard_index) const;
  // Whether `page_index` is one of the shard's current pages (of either
  // queue).
  static bool IsCurrent(const Shard* sh, uint32_t page_index) {
    return Load(sh->cur_page[0]) == page_index || Load(sh->cur_page[1]) == page_index ||
           Load(sh->main_page[0]) == page_index || Load(sh->main_page[1]) == page_index;
  }
  // One relaxed read of a word of the mapping.
  template <typename T>
  static T Load(const T& v) {
    return Atomic(const_cast<T&>(v)).load(std::memory_order_relaxed);
  }

  // Locks shard `i`, repairing it if its last owner died or its mutex was
  // damaged. False when it cannot be taken (lock_error_ says why: kCorrupt
  // or kTimeout).
  bool LockShard(uint32_t i);
  // Unlocks it; damage noted meanwhile (NoteDamage) drops the shard first.
  void UnlockShard(uint32_t i) {
    if (__builtin_expect(damaged_ == i, 0)) RepairShard(i);
    Unlock(&shard(i)->mutex, &held_);
  }
  // Drops every entry of shard `i` and frees its pages. Caller holds the lock.
  void DropShard(uint32_t i);
  // DropShard() because damage was found there, counted in Shard::repairs.
  void RepairShard(uint32_t i);
  // Damage found where the operation can go on: the shard is dropped when
  // it is unlocked.
  void NoteDamage(uint32_t i) { damaged_ = i; }
  ReadStatus LockFailure() const {
    return lock_error_ == WriteStatus::kTimeout ? ReadStatus::kTimeout : ReadStatus::kCorrupt;
  }

  // Looks `key` up under the shard lock. `*link` is where the entry's ref is
  // stored (bucket or previous entry's next), `*found` a copy of its header
  // (Sound, and its key and value fit the heap). Returns 0 when absent; sets
  // *corrupt when the chain is damaged.
  uint32_t Find(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                uint32_t** link, Entry* found, bool* corrupt);
  bool IsLive(const Entry* e, uint64_t now) const;
  // Whether the entry holds a float64, and its value (Find checked that its
  // key and value fit the heap).
  bool NumberIn(uint32_t ref, const Entry& e, double* v) const {
    if (e.type != kNumber || e.value_len != 8) return false;
    std::memcpy(v, heap() + OffsetOf(ref) + kEntryBytes + e.key_len, 8);
    return true;
  }
  // Rewrites a number entry's value in place (lock held), readers fenced off.
  void UpdateNumber(Shard* sh, uint32_t ref, const Entry& e, uint64_t key_hash, double next);
  // Whether the entry's checksum holds (`e` its header as Find copied it).
  bool Intact(uint32_t ref, const Entry& e, uint64_t key_hash) const {
    const unsigned char* value = heap() + OffsetOf(ref) + kEntryBytes + e.key_len;
    return EntryCheck(e, key_hash, value) == e.check;
  }
  // Find() for operations that read the entry they find: a damaged chain or
  // entry drops the shard, and the key counts as absent.
  uint32_t FindIntact(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                      uint32_t** link, Entry* found);
  // Live and holding a value (not a remember() claim).
  bool IsValue(const Entry* e, uint64_t now) const { return e->type != kClaim && IsLive(e, now); }
  // Removes a linked entry whose header Find copied into `e` (caller between
  // WriteBegin/WriteEnd). Counters that would go below zero are damage.
  void Unlink(uint32_t si, uint32_t* link, uint32_t ref, const Entry& e);
  // Removes expired and stale entries from one bucket of the shard.
  void SweepStep(uint32_t si, uint64_t now);
  // Inserts a new entry for the key, replacing any old one. Lock held.
  WriteStatus Insert(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                     uint8_t type, const unsigned char* value, uint64_t vlen, uint64_t expires,
                     bool only_if_absent);
  // Lock-free walk of one bucket chain; see table.cc. `copy`: the caller
  // will copy the value, so its lines are asked for once the key matches.
  WalkResult WalkChain(const uint32_t* bucket, uint32_t h32, const unsigned char* key,
                       uint32_t klen, bool copy, Entry* found, uint32_t* found_ref) const;
  ReadResult LockedGet(uint32_t si, uint64_t hash, const unsigned char* key, uint32_t klen,
                       unsigned char* out, uint64_t cap, bool copy);
  // keys() of a read-only handle: lock-free, each bucket copied under the
  // shard's sequence (retried while writers change it).
  WriteStatus KeysReadOnly(const unsigned char* prefix, uint32_t plen,
                           std::vector<std::string>* keys);
  // verify() of one shard; `repair`: drop it if damaged (lock held).
  void VerifyShard(uint32_t si, std::vector<uint64_t>* live, std::vector<std::string>* problems);
  void CountRead(bool hit);
  // attach.cc
  void ClaimSlot();
  // Whether nothing that used the segment may still run (kGroup resets).
  bool NobodyAlive() const;
  void Reset();

  uint32_t ShardOf(uint64_t hash) const {
    return static_cast<uint32_t>(hash >> 40) & (L().nshards - 1);
  }
  uint32_t BucketOf(uint64_t hash) const { return static_cast<uint32_t>(hash) & (L().buckets - 1); }

  // alloc.cc
  // Reserves `bytes` for a new entry of shard `si` (whose key hash has low
  // 32 bits `h32`: the policy picks its queue) and writes a dead entry
  // header there. Returns the ref, or 0 with *busy_shard set to a shard whose
  // lock it could not take (the caller releases its own lock, waits for that
  // one, and tries again), or 0 with *busy_shard = kNoPage when out of room.
  uint32_t Allocate(uint32_t si, uint64_t bytes, uint32_t h32, uint32_t* busy_shard);
  // Frees the page span starting at `head` (all of its entries are dead).
  void FreeSpan(uint32_t head, uint32_t new_owner);
  // Called after an entry in page span `head` died.
  void AfterUnlink(uint32_t si, uint32_t head);
  // The head page of the span holding `ref`, if that span is shard `si`'s
  // and holds the page; kNoPage otherwise.
  uint32_t HeadOf(uint32_t si, uint32_t ref) const;
  uint32_t TakeFreePages(uint32_t si, uint32_t k);
  enum class Evicted { kFreed, kCompacted, kDamaged };
  Evicted EvictSpan(uint32_t ti, uint32_t head, uint32_t lo, uint32_t hi, uint32_t to,
                    bool second_chance);
  // The policy's next spans to evict (up to EvictPolicy::kCandidates).
  uint32_t OldestSpans(uint32_t* out);
  // The current page slot of shard `sh` for size class `cls` of queue
  // `queue` (0 or kMainBit).
  static uint32_t& CurrentSlot(Shard* sh, uint32_t cls, uint32_t queue) {
    return queue != 0 ? sh->main_page[cls] : sh->cur_page[cls];
  }
  void PlaceKept(uint32_t ti, uint64_t dst, uint64_t bytes);
  uint32_t EvictForPage(uint32_t si, uint32_t* busy);
  uint32_t EvictForRun(uint32_t si, uint32_t k, uint32_t* busy);

  Segment seg_;
  uint32_t slot_ = kSlots;  // our statistics slot, kSlots = shared counters
  bool unslotted_ = false;  // counted in Header::unslotted
  uint32_t pid_ = 0;
  std::vector<unsigned char> scratch_;  // page-sized, for compaction
  LockPolicy policy_;
  EvictPolicy evict_;  // which spans go, and where survivors go (evict.h)
  HeldLocks held_;
  WriteStatus lock_error_ = WriteStatus::kOk;  // why LockShard() last failed
  uint32_t damaged_ = kNoPage;                 // shard to drop at unlock
};

// The shard a key lives in, for a segment of `nshards` shards (tests).
uint32_t ShardOfKey(const unsigned char* key, uint32_t klen, uint32_t nshards);

}  // namespace shmcache

#endif  // SHMCACHE_TABLE_H_
