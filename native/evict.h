// The eviction policy: which page spans are evicted next, and which queue a
// new or surviving entry goes to. S3-FIFO (Yang et al., SOSP'23) at page
// granularity, with an adaptive small-FIFO share, measured against the page
// FIFO with second chance it replaced and against lru-cache by
// bench/evict-sim.mjs (docs/benchmark.md, "Hit ratio"):
// - every span is in one of two FIFOs, told by a bit of its page record: the
//   small (probationary) one, where new entries go, or the main one;
// - while the segment still has free pages, new entries go to main (the
//   small FIFO only filters what would displace something);
// - while small spans hold more than `share` of the pages, the oldest small
//   span is evicted: the entries readers touched since they were written
//   move to main, the others are dropped and their key hashes remembered in
//   a ghost table; otherwise the oldest main span is evicted, its touched
//   entries kept in main (a second chance, CLOCK within main), the others
//   dropped and remembered too;
// - a new entry whose key the ghost table remembers goes to main directly,
//   and moves the share (as ARC moves its target): remembered from small,
//   the small FIFO was too short for it, the share grows; from main, main
//   was too short, it shrinks. A small span evicted with nothing touched
//   (a scan passing through) shrinks it too.
// The ghost table, the share and the warm flag are this process's memory,
// not the segment's: hints that no other process can damage, and that a
// process without them (or with others) only uses less well. Moving
// entries and freeing pages stay in alloc.cc: this file only decides.
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

  // Sizes the ghost table for a heap of `heap_bytes` (one slot per 8 bytes,
  // at most 2^20 slots: 2 MiB).
  void Init(uint64_t heap_bytes);
  bool ready() const { return !ghost_.empty(); }
  // The queue bit (0 or kMainBit) of a new entry of `bytes` whose key hash
  // is `h32`.
  uint32_t QueueOf(uint32_t h32, uint64_t bytes);
  // Whether a free page was found (true) or one had to be evicted (false)
  // for the last new page: while pages are free, new entries go to main.
  void SawFreePage(bool free) { warm_ = free; }
  // The queue bit the entries that an eviction keeps go to.
  static constexpr uint32_t KeptQueue() { return kMainBit; }
  // Whether a live entry of an evicted span gets a second chance (stays in
  // the cache, in KeptQueue()), given whether a reader touched it.
  static bool Keeps(bool touched) { return touched; }
  // A live entry of an evicted span with `cls` was dropped.
  void Dropped(uint32_t cls, uint32_t h32);
  // A span with `cls` was evicted; `kept_any`: some of its entries stayed.
  void Evicted(uint32_t cls, bool kept_any);
  // Up to kCandidates heads of the spans to evict next, oldest first, from
  // `count` page records starting at `start` (wrapping at `npages`). Every
  // word is read once; the result only names pages below `npages`, and the
  // caller checks each span again before it touches it.
  uint32_t Candidates(const Page* pages, uint32_t npages, uint32_t start, uint32_t count,
                      uint32_t* out) const;
  double share() const { return share_; }

 private:
  // Moves the share by `entries` entries' worth of the heap.
  void Move(double entries);

  std::vector<uint16_t> ghost_;  // fingerprints of key hashes (bit 1: dropped from main), 0 = empty
  uint32_t mask_ = 0;
  double share_ = 0.1;        // the small FIFO's share of the pages
  double entry_bytes_ = 152;  // a running mean of new entries' sizes
  double heap_bytes_ = 1;
  bool warm_ = false;
};

}  // namespace shmcache

#endif  // SHMCACHE_EVICT_H_
