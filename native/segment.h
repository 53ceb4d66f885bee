// The segment file: creation and opening under the file rules of the design
// brief, the mapping, the header and the layout derived from the size.
#ifndef SHMCACHE_SEGMENT_H_
#define SHMCACHE_SEGMENT_H_

#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace shmcache {

constexpr char kMagic[8] = {'S', 'H', 'M', 'C', 'A', 'C', 'H', 'E'};
// Written first by a creation, replaced by kMagic last: a file with neither
// is never written.
constexpr char kInitMagic[8] = {'S', 'H', 'M', 'C', 'I', 'N', 'I', 'T'};
constexpr uint32_t kVersion = 6;
constexpr uint64_t kHeaderBytes = 4096;
constexpr uint64_t kMinSize = 1ull << 20;  // 1 MiB
constexpr uint64_t kMaxSize = 1ull << 34;  // 16 GiB: refs are 32-bit, 8-byte units
constexpr uint32_t kSlots = 256;           // per-handle statistics slots
constexpr uint32_t kNoPage = 0xFFFFFFFFu;
// Entries of at most this many bytes (header, key, value) are "small": they
// go to their shard's small-class current page, larger ones to its other.
constexpr uint64_t kSmallEntry = 512;
inline uint32_t SizeClass(uint64_t bytes) { return bytes <= kSmallEntry ? 0 : 1; }

// Byte 0 of the file. Everything up to `checksum` is fixed at creation and
// covered by the checksum; the fields after it change while the segment lives.
struct Header {
  char magic[8];
  uint32_t version;
  uint32_t header_bytes;
  uint64_t size;       // file size the layout was computed for
  uint32_t nshards;    // power of two
  uint32_t buckets;    // buckets per shard, power of two
  uint32_t page_size;  // power of two
  uint32_t npages;
  uint64_t shards_off;
  uint64_t buckets_off;
  uint64_t slots_off;
  uint64_t pages_off;
  uint64_t access_off;  // access bitmap: one bit per 64 heap bytes
  uint64_t heap_off;
  uint64_t max_value;  // largest value accepted: size / 8
  uint64_t created_ms;
  uint64_t marks_off;  // page marks: two uint32 per page (epoch, version)
  uint64_t checksum;   // Hash of every byte above
  // ---- mutable, at offset 256 ----
  char pad0[256 - 120];
  uint64_t stamp;       // start-time stamp of the group that made or reset it
  uint32_t generation;  // bumped by clear() and by a stamp reset
  uint32_t resets;      // stamp resets seen
  uint32_t free_hint;   // where the next free-page scan starts
  uint32_t pad1;
  uint64_t clock;        // page birth counter (FIFO order of pages)
  uint64_t shared_hits;  // hit/miss counts of handles that found no slot
  uint64_t shared_misses;
  // The boot (/proc/sys/kernel/random/boot_id) the shard mutexes were last
  // initialized in: a segment from another boot gets new ones at open.
  unsigned char boot_id[16];
  // The process-group leader that stamped the segment (default stamps only,
  // else 0), and its start time in clock ticks since boot.
  uint32_t leader_pid;
  // Handles open without a statistics slot (all were taken): while nonzero
  // the segment cannot tell who uses it, so default stamps never reset it.
  uint32_t unslotted;
  uint64_t leader_start;
  uint32_t leader_ns;  // the leader's pid namespace (inode), 0 unknown
  uint32_t pad2;
};
static_assert(sizeof(Header) <= kHeaderBytes, "header fits its page");
static_assert(offsetof(Header, stamp) == 256 && offsetof(Header, generation) == 264,
              "mutable part at 256 (the memo reads the generation at 264)");

// One per shard, 128 bytes.
struct Shard {
  pthread_mutex_t mutex;  // robust, process-shared
  uint32_t seq;           // seqlock: odd while the shard's table is changing
  uint32_t count;         // live entries
  // The page new entries of each size class are appended to, or kNoPage:
  // small entries share pages with small ones only, so that a working set
  // of small values stays dense even among large ones (as memcached's slab
  // classes do).
  uint32_t cur_page[2];
  uint32_t sweep;  // next bucket the expiry sweep looks at
  uint32_t timed;  // live entries with an expiry time (0: nothing to sweep)
  uint64_t used;   // bytes held by live entries
  uint64_t sets;
  uint64_t deletes;
  uint64_t evictions;
  uint64_t expired;
  uint64_t repairs;  // times damage was found in the shard and it was dropped
  // The page of each size class that entries entering the main FIFO are
  // appended to (see evict.h), or kNoPage; cur_page[] takes the others.
  uint32_t main_page[2];
};
constexpr uint64_t kShardBytes = 128;
static_assert(sizeof(Shard) <= kShardBytes, "shard fits 128 bytes");
// The fields follow the mutex: x86-64's pthread_mutex_t is 40 bytes (the
// layout docs/design.md gives), aarch64's 48; the shard fits 128 on both.
#if defined(__x86_64__)
static_assert(offsetof(Shard, seq) == 40 && offsetof(Shard, used) == 64, "shard layout");
#else
static_assert(offsetof(Shard, seq) == sizeof(pthread_mutex_t) &&
                  offsetof(Shard, used) == sizeof(pthread_mutex_t) + 24,
              "shard layout");
#endif

// One per heap page, 32 bytes.
struct Page {
  uint32_t owner;  // 0 free, else shard index + 1 (atomic)
  uint32_t head;   // first page of the span this page belongs to
  uint32_t span;   // pages in the span (on the head page); 0 on the others
  uint32_t used;   // bytes appended (head page)
  uint32_t live;   // bytes of live entries (head page)
  uint32_t cls;    // bit 0: size class of the entries of a one-page span;
                   // bit 1: in the main FIFO, else the small one (evict.h)
  uint64_t birth;  // Header::clock when taken
};
static_assert(sizeof(Page) == 32, "page record is 32 bytes");

// Each page also has two marks (uint32 words at marks_off + 8 * index), read
// by handles' memos (see MemoInfo in table.h):
// - its epoch, bumped before any byte of the page that held an entry can
//   hold something else: when the page is freed or handed over, and when
//   eviction rewrites it in place. Within one epoch an offset holds at most
//   one entry, so (epoch, offset, entry header word) names one entry for as
//   long as it is linked;
// - its version, bumped with the epoch and after any entry in it is unlinked:
//   while it stands still, every entry of the page that was live is.

// One per open handle, a cache line each: counts reads without contention.
struct Slot {
  uint32_t pid;    // owner, 0 when free (atomic)
  uint32_t pidns;  // the pid namespace its pid is in (inode), 0 unknown
  uint64_t hits;
  uint64_t misses;
  // Hits served from the handle's memo, counted by its JS code (a float64,
  // its only writer that handle; exact up to 2^53).
  double memo_hits;
  // The owner's start time in clock ticks since boot (field 22 of
  // /proc/<pid>/stat): with the pid, names one process across pid reuse.
  uint64_t start;
  char pad2[24];
};
static_assert(sizeof(Slot) == 64 && offsetof(Slot, memo_hits) == 24, "slot layout");

// The layout every segment of a given size has.
struct Layout {
  uint64_t size;
  uint32_t nshards, buckets, page_size, npages;
  uint64_t shards_off, buckets_off, slots_off, pages_off, access_off, heap_off, max_value;
  uint64_t marks_off;
  bool operator==(const Layout&) const = default;
};
bool ComputeLayout(uint64_t size, Layout* out);

// What Segment::Open is asked to do.
struct OpenRequest {
  std::string path;            // absolute
  uint64_t size = 0;           // of a new segment
  bool create = true;          // false: attach only (kNotFound when missing)
  bool create_folder = false;  // make missing folders of the path, 0700
  bool read_only = false;      // map it PROT_READ: write nothing, lock nothing (implies !create)
  int64_t lock_wait_ms = 0;    // how long to retry the file lock (kTimeout)
};

// An open, mapped segment file.
class Segment {
 public:
  Segment() = default;
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Opens or creates the file under the file rules of the design brief,
  // maps it and validates its header. On success the file is flock()ed
  // until ReleaseFileLock(), so the caller may reset it; `created` tells
  // whether this call initialized it.
  bool Open(const OpenRequest& request, Error* error, bool* created);
  void Close();
  // Drops the file lock Open() took; the mapping stays.
  void ReleaseFileLock();
  bool is_open() const { return base_ != nullptr; }

  unsigned char* base() const { return base_; }
  uint64_t size() const { return size_; }
  Header* header() const { return reinterpret_cast<Header*>(base_); }
  const std::string& path() const { return path_; }
  // The layout validated at open, kept in process memory: never read from
  // the mapping again (another process may rewrite the header).
  const Layout& layout() const { return layout_; }
  // Mapped without write access (a read-only file or mount): nothing in the
  // mapping may be written, not even a hint.
  bool read_only() const { return read_only_; }
  // Shards that RenewLocks() found held or mid-change (another boot's): the
  // caller drops them before any use.
  const std::vector<uint32_t>& stale_shards() const { return stale_shards_; }
  // Pages of the mapping lost because the file was cut short under it (each
  // now reads as zeros, see segment.cc); nonzero: the handle must not be
  // trusted any more.
  uint32_t lost_pages() const;
  // Reads a byte of every page of the mapping (a page past the end of a
  // file cut short is lost then), and returns lost_pages().
  uint32_t ProbeLostPages() const;

 private:
  bool Initialize(uint64_t size, Error* error);
  bool CheckHeader(uint64_t file_size, const Header* h, Error* error);
  bool RenewLocks(Error* error);

  int fd_ = -1;
  unsigned char* base_ = nullptr;
  uint64_t size_ = 0;      // segment size (header.size)
  uint64_t map_size_ = 0;  // bytes mapped
  Layout layout_{};
  bool read_only_ = false;
  std::vector<uint32_t> stale_shards_;
  int mapping_slot_ = -1;  // in the SIGBUS handler's table
  std::string path_;
};

uint64_t HeaderChecksum(const Header* h);

}  // namespace shmcache

#endif  // SHMCACHE_SEGMENT_H_
