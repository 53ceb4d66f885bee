// The eviction policy: which page spans are evicted next, and which queue a
// new or surviving entry goes to. S3-FIFO (Yang et al., SOSP'23) at page
// granularity, measured against the page FIFO with second chance it replaced
// and against lru-cache by bench/evict-sim.mjs (docs/benchmark.md):
// - every span is in one of two FIFOs, told by a bit of its page record: the
//   small (probationary) one, where new entries go, or the main one;
// - while small spans hold more than a tenth of the pages, the oldest small
//   span is evicted: the entries readers touched since they were written
//   move to main, the others are dropped and their key hashes remembered in
//   a ghost table; otherwise the oldest main span is evicted, its touched
//   entries kept in main (a second chance, CLOCK within main);
// - a new entry whose key the ghost table remembers (dropped from small not
//   long ago, asked for again) goes to main directly.
// The ghost table is this process's memory, not the segment's: a hint that no
// other process can damage, and that a process without it (or with another
// one) only uses less well. Moving entries and freeing pages stay in
// alloc.cc: this file only decides.
#ifndef SHMCACHE_EVICT_H_
#define SHMCACHE_EVICT_H_

#include <cstdint>
#include <vector>

#include "segment.h"

namespace shmcache {

// Bits of Page::cls (the record is hostile input: other bits are ignored).
constexpr uint32_t kClassBit = 1;  // SizeClass() of the entries of a one-page span
constexpr uint32_t kMainBit = 2;   // the span is in the main FIFO, else in the small one
inline uint32_t ClassOf(uint32_t cls) { return cls & kClassBit; }
inline bool InMain(uint32_t cls) { return (cls & kMainBit) != 0; }

class EvictPolicy {
 public:
  static constexpr uint32_t kCandidates = 16;

  // Sizes the ghost table for a heap of `heap_bytes` (about one slot per
  // 128 bytes, at most 2^20 slots).
  void Init(uint64_t heap_bytes);
  bool ready() const { return !ghost_.empty(); }
  // The queue bit (0 or kMainBit) of a new entry whose key hash is `h32`.
  uint32_t QueueOf(uint32_t h32);
  // The queue bit the entries that an eviction keeps go to.
  static constexpr uint32_t KeptQueue() { return kMainBit; }
  // Whether a live entry of an evicted span gets a second chance (stays in
  // the cache, in KeptQueue()), given whether a reader touched it.
  static bool Keeps(bool touched) { return touched; }
  // A live entry of an evicted span with `cls` was dropped.
  void Dropped(uint32_t cls, uint32_t h32);
  // Up to kCandidates heads of the spans to evict next, oldest first, from
  // `count` page records starting at `start` (wrapping at `npages`). Every
  // word is read once; the result only names pages below `npages`, and the
  // caller checks each span again before it touches it.
  uint32_t Candidates(const Page* pages, uint32_t npages, uint32_t start, uint32_t count,
                      uint32_t* out) const;

 private:
  std::vector<uint16_t> ghost_;  // fingerprints of key hashes, 0 = empty
  uint32_t mask_ = 0;
};

}  // namespace shmcache

#endif  // SHMCACHE_EVICT_H_
