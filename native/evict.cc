// S3-FIFO over page spans, with an adaptive small share: see evict.h.
#include "evict.h"

#include <algorithm>

namespace shmcache {

namespace {

constexpr uint32_t kMaxGhostSlots = 1u << 20;
constexpr double kMinShare = 0.01;
constexpr double kMaxShare = 0.9;
// How far the share moves, in entries: per ghost hit, and per small span
// evicted with nothing kept (bench/evict-sim.mjs measured these).
constexpr double kGhostStep = 4;
constexpr double kScanStep = 16;
constexpr uint16_t kFromMain = 2;

uint32_t SlotOf(uint32_t h32, uint32_t mask) { return h32 & mask; }
uint16_t FingerprintOf(uint32_t h32) {
  return static_cast<uint16_t>((((h32 * 0x9E3779B1u) >> 16) | 1) & ~kFromMain);
}

template <typename T>
T Load(const T& v) {
  return Atomic(const_cast<T&>(v)).load(std::memory_order_relaxed);
}

}  // namespace

void EvictPolicy::Init(uint64_t heap_bytes) {
  uint64_t want = std::clamp<uint64_t>(heap_bytes / 8, 64, kMaxGhostSlots);
  uint32_t slots = 64;
  while (slots * 2ull <= want) slots *= 2;
  ghost_.assign(slots, 0);
  mask_ = slots - 1;
  heap_bytes_ = heap_bytes > 0 ? static_cast<double>(heap_bytes) : 1;
}

void EvictPolicy::Move(double entries) {
  share_ = std::clamp(share_ + entries * entry_bytes_ / heap_bytes_, kMinShare, kMaxShare);
}

uint32_t EvictPolicy::QueueOf(uint32_t h32, uint64_t bytes) {
  entry_bytes_ += (static_cast<double>(std::min<uint64_t>(bytes, 1u << 20)) - entry_bytes_) / 1024;
  if (ghost_.empty()) return warm_ ? kMainBit : 0;
  uint16_t& slot = ghost_[SlotOf(h32, mask_)];
  if ((slot & ~kFromMain) != FingerprintOf(h32)) return warm_ ? kMainBit : 0;
  Move((slot & kFromMain) != 0 ? -kGhostStep : kGhostStep);
  slot = 0;
  return kMainBit;
}

void EvictPolicy::Dropped(uint32_t cls, uint32_t h32) {
  if (!ghost_.empty())
    ghost_[SlotOf(h32, mask_)] = FingerprintOf(h32) | (InMain(cls) ? kFromMain : 0);
}

void EvictPolicy::Evicted(uint32_t cls, bool kept_any) {
  if (!InMain(cls) && !kept_any) Move(-kScanStep);
}

uint32_t EvictPolicy::Candidates(const Page* pages, uint32_t npages, uint32_t start, uint32_t count,
                                 uint32_t* out) const {
  // The oldest spans of each queue, and how many pages each holds.
  uint64_t births[2][kCandidates];
  uint32_t heads[2][kCandidates];
  uint32_t found[2] = {0, 0};
  uint64_t queue_pages[2] = {0, 0};
  if (npages == 0) return 0;
  count = std::min(count, npages);
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t idx = static_cast<uint32_t>((uint64_t{start} + i) % npages);
    const Page& p = pages[idx];
    if (Load(p.owner) == 0) continue;
    uint32_t span = Load(p.span);
    if (span == 0) continue;
    int q = InMain(Load(p.cls)) ? 1 : 0;
    queue_pages[q] += std::min(span, npages);
    uint64_t b = Load(p.birth);
    uint32_t pos = found[q];
    while (pos > 0 && births[q][pos - 1] > b) --pos;
    if (pos >= kCandidates) continue;
    uint32_t last = std::min(found[q], kCandidates - 1);
    for (uint32_t j = last; j > pos; --j) {
      births[q][j] = births[q][j - 1];
      heads[q][j] = heads[q][j - 1];
    }
    births[q][pos] = b;
    heads[q][pos] = idx;
    if (found[q] < kCandidates) ++found[q];
  }
  // Small first while it holds more than its share of the pages seen (or
  // main has nothing).
  int q = static_cast<double>(queue_pages[0]) > share_ * static_cast<double>(count) || found[1] == 0
              ? 0
              : 1;
  if (found[q] == 0) q = 1 - q;
  // The other queue's oldest follow, for when the first ones cannot be had.
  uint32_t n = 0;
  for (uint32_t j = 0; j < found[q]; ++j) out[n++] = heads[q][j];
  for (uint32_t j = 0; j < found[1 - q] && n < kCandidates; ++j) out[n++] = heads[1 - q][j];
  return n;
}

}  // namespace shmcache
