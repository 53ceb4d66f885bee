#include "segment.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "crash.h"
#include "lock.h"

namespace shmcache {

namespace {

uint64_t Pow2Floor(uint64_t v) {
  uint64_t p = 1;
  while (p * 2 <= v) p *= 2;
  return p;
}

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

template <typename T>
T Clamp(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

std::string Quote(const std::string& path) { return "'" + path + "'"; }

// Maps an errno from open/fstat to the error code users see.
Code CodeForErrno(int e) {
  switch (e) {
    case EACCES:
    case EPERM:
    case ELOOP:
    case EROFS:
    case EISDIR: return Code::kPermission;
    case ENOSPC:
    case EDQUOT: return Code::kNoSpace;
    default: return Code::kIo;
  }
}

bool ReadAll(int fd, void* buf, size_t n, off_t off) {
  unsigned char* p = static_cast<unsigned char*>(buf);
  while (n > 0) {
    ssize_t r = pread(fd, p, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    off += r;
  }
  return true;
}

// The layout fields of a header, and writing them.
Layout LayoutOf(const Header& h) {
  return Layout{h.size,       h.nshards,     h.buckets,   h.page_size, h.npages,
                h.shards_off, h.buckets_off, h.slots_off, h.pages_off, h.access_off,
                h.heap_off,   h.max_value,   h.marks_off};
}
void WriteLayout(Header* h, const Layout& l) {
  h->size = l.size;
  h->nshards = l.nshards;
  h->buckets = l.buckets;
  h->page_size = l.page_size;
  h->npages = l.npages;
  h->shards_off = l.shards_off;
  h->buckets_off = l.buckets_off;
  h->slots_off = l.slots_off;
  h->pages_off = l.pages_off;
  h->access_off = l.access_off;
  h->heap_off = l.heap_off;
  h->max_value = l.max_value;
  h->marks_off = l.marks_off;
}

// True for a header page that our own creation left without its magic
// (written last): all zeros, or our version with a layout that matches its
// size. Nothing else without the magic is ours to touch.
bool InterruptedCreation(const Header& h) {
  static const char zero_magic[8] = {};
  if (std::memcmp(h.magic, zero_magic, sizeof zero_magic) != 0) return false;
  static const unsigned char zeros[sizeof(Header)] = {};
  if (std::memcmp(&h, zeros, sizeof h) == 0) return true;
  Layout l;
  return h.version == kVersion && h.header_bytes == kHeaderBytes && ComputeLayout(h.size, &l) &&
         LayoutOf(h) == l;
}

}  // namespace

bool ComputeLayout(uint64_t size, Layout* out) {
  if (size < kMinSize || size > kMaxSize) return false;
  Layout l{};
  l.size = size;
  l.page_size = static_cast<uint32_t>(Clamp<uint64_t>(Pow2Floor(size / 2048), 4096, 1u << 20));
  uint64_t approx_pages = size / l.page_size;
  l.nshards = static_cast<uint32_t>(Clamp<uint64_t>(Pow2Floor(approx_pages / 16), 4, 64));
  uint64_t total_buckets = Pow2Floor(size / 256);
  l.buckets = static_cast<uint32_t>(std::max<uint64_t>(total_buckets / l.nshards, 64));
  l.shards_off = kHeaderBytes;
  l.buckets_off = l.shards_off + uint64_t{l.nshards} * kShardBytes;
  l.slots_off = AlignUp(l.buckets_off + uint64_t{l.nshards} * l.buckets * 4, 64);
  l.pages_off = l.slots_off + uint64_t{kSlots} * sizeof(Slot);
  if (l.pages_off >= size) return false;
  uint64_t npages = (size - l.pages_off) / (l.page_size + sizeof(Page) + 8 + l.page_size / 512);
  while (npages > 0) {
    l.marks_off = AlignUp(l.pages_off + npages * sizeof(Page), 64);
    l.access_off = AlignUp(l.marks_off + npages * 8, 64);
    l.heap_off = AlignUp(l.access_off + npages * (l.page_size / 512), 4096);
    if (l.heap_off + npages * l.page_size <= size) break;
    --npages;
  }
  l.npages = static_cast<uint32_t>(npages);
  l.max_value = size / 8;
  // The largest entry (40-byte header, 1 KiB key, largest value) must fit.
  uint64_t largest = 40 + 1024 + l.max_value;
  if ((largest + l.page_size - 1) / l.page_size > l.npages) return false;
  *out = l;
  return true;
}

uint64_t HeaderChecksum(const Header* h) {
  return Hash(h, offsetof(Header, checksum), 0x5348'4D43'4143'4845ull);
}

Segment::~Segment() { Close(); }

void Segment::ReleaseFileLock() {
  if (fd_ < 0) return;
  // Explicitly: the mapping keeps the open file (and so its flock) alive.
  flock(fd_, LOCK_UN);
  ::close(fd_);
  fd_ = -1;
}

void Segment::Close() {
  ReleaseFileLock();
  if (base_ != nullptr) munmap(base_, map_size_);
  base_ = nullptr;
  size_ = map_size_ = 0;
}

bool Segment::Open(const std::string& path, uint64_t size, Error* error, bool* created) {
  Close();
  path_ = path;
  *created = false;
  bool fresh = false;
  for (int attempt = 0; attempt < 2 && fd_ < 0; ++attempt) {
    fd_ = ::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd_ >= 0) break;
    if (errno != ENOENT) {
      int e = errno;
      error->Set(CodeForErrno(e), "cannot open " + Quote(path) + ": " + std::strerror(e), e,
                 "open");
      return false;
    }
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd_ >= 0) {
      fresh = true;
      break;
    }
    if (errno != EEXIST) {
      int e = errno;
      error->Set(CodeForErrno(e), "cannot create " + Quote(path) + ": " + std::strerror(e), e,
                 "open");
      return false;
    }
  }
  if (fd_ < 0) {
    error->Set(Code::kIo, "cannot open " + Quote(path), EEXIST, "open");
    return false;
  }

  // A kernel lock on the file itself, held until the caller is done with
  // creation or reset; it is released by the kernel if this process dies.
  while (flock(fd_, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    int e = errno;
    error->Set(Code::kIo, "cannot lock " + Quote(path) + ": " + std::strerror(e), e, "flock");
    Close();
    return false;
  }

  struct stat st;
  if (fstat(fd_, &st) != 0) {
    int e = errno;
    error->Set(Code::kIo, "cannot stat " + Quote(path) + ": " + std::strerror(e), e, "fstat");
    Close();
    return false;
  }
  if (fresh) {
    // Exactly 0600 whatever the umask.
    if (fchmod(fd_, 0600) != 0) {
      int e = errno;
      ::unlink(path.c_str());
      error->Set(CodeForErrno(e), "cannot chmod " + Quote(path) + ": " + std::strerror(e), e,
                 "fchmod");
      Close();
      return false;
    }
  } else {
    if (!S_ISREG(st.st_mode)) {
      error->Set(Code::kPermission, Quote(path) + " is not a regular file");
      Close();
      return false;
    }
    if (st.st_uid != geteuid()) {
      error->Set(Code::kPermission, Quote(path) + " is owned by uid " + std::to_string(st.st_uid) +
                                        ", not by this process's uid " + std::to_string(geteuid()));
      Close();
      return false;
    }
    if ((st.st_mode & 077) != 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      error->Set(Code::kPermission,
                 Quote(path) + " has mode " + mode + ": group and other bits must be clear (0600)");
      Close();
      return false;
    }
  }

  bool needs_init = fresh || st.st_size == 0;
  uint64_t new_size = size;
  if (!needs_init) {
    Header h;
    std::memset(&h, 0, sizeof h);
    uint64_t n = std::min<uint64_t>(static_cast<uint64_t>(st.st_size), sizeof h);
    if (!ReadAll(fd_, &h, n, 0)) {
      int e = errno;
      error->Set(Code::kIo, "cannot read " + Quote(path), e, "pread");
      Close();
      return false;
    }
    if (n < sizeof h.magic || std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) {
      // A creation that died before writing the magic leaves a header page of
      // zeros in a file of at least the minimum size: finish it. Anything else
      // without the magic is someone else's file and is never overwritten.
      bool interrupted =
          static_cast<uint64_t>(st.st_size) >= kMinSize && n == sizeof h && InterruptedCreation(h);
      if (!interrupted) {
        error->Set(Code::kNotASegment,
                   Quote(path) + " is not a shmcache segment (bad magic); it was left untouched");
        Close();
        return false;
      }
      needs_init = true;
      new_size = std::min<uint64_t>(std::max<uint64_t>(size, st.st_size), kMaxSize);
    } else if (!CheckHeader(static_cast<uint64_t>(st.st_size), &h, error)) {
      Close();
      return false;
    }
  }

  if (needs_init) {
    int rc = posix_fallocate(fd_, 0, static_cast<off_t>(new_size));
    if (rc != 0) {
      if (fresh) ::unlink(path.c_str());
      error->Set(rc == ENOSPC ? Code::kNoSpace : Code::kIo,
                 "cannot reserve " + std::to_string(new_size) + " bytes for " + Quote(path) + ": " +
                     std::strerror(rc),
                 rc, "posix_fallocate");
      Close();
      return false;
    }
    size_ = new_size;
  }

  map_size_ = size_;
  // Up to 1 GiB, the page tables are filled at once: otherwise each process
  // takes a minor fault on the first touch of every page, on its hot path.
  int populate = map_size_ <= (1ull << 30) ? MAP_POPULATE : 0;
  void* p = mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_SHARED | populate, fd_, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    if (fresh) ::unlink(path.c_str());
    error->Set(e == ENOMEM ? Code::kNoSpace : Code::kIo,
               "cannot map " + Quote(path) + ": " + std::strerror(e), e, "mmap");
    base_ = nullptr;
    Close();
    return false;
  }
  base_ = static_cast<unsigned char*>(p);

  if (needs_init) {
    if (!Initialize(size_, error)) {
      if (fresh) ::unlink(path.c_str());
      Close();
      return false;
    }
    *created = true;
  } else {
    // Another process may have been mid-way when the header was read: read
    // it again from the mapping.
    Header h;
    std::memcpy(&h, base_, sizeof h);
    if (!CheckHeader(map_size_, &h, error)) {
      Close();
      return false;
    }
  }
  return true;
}

bool Segment::CheckHeader(uint64_t file_size, const Header* h, Error* error) {
  std::string where = Quote(path_);
  if (h->version != kVersion) {
    error->Set(Code::kCorrupt, where + " has format version " + std::to_string(h->version) +
                                   ", this build reads version " + std::to_string(kVersion));
    return false;
  }
  if (HeaderChecksum(h) != h->checksum) {
    error->Set(Code::kCorrupt, where + " has a damaged header (checksum mismatch)");
    return false;
  }
  Layout l;
  if (!ComputeLayout(h->size, &l) || h->header_bytes != kHeaderBytes || LayoutOf(*h) != l) {
    error->Set(Code::kCorrupt, where + " has a damaged header (layout does not match its size)");
    return false;
  }
  if (h->size > file_size) {
    error->Set(Code::kCorrupt, where + " is shorter (" + std::to_string(file_size) +
                                   " bytes) than its header says (" + std::to_string(h->size) +
                                   ")");
    return false;
  }
  size_ = h->size;
  return true;
}

bool Segment::Initialize(uint64_t size, Error* error) {
  Layout l;
  if (!ComputeLayout(size, &l)) {
    error->Set(Code::kInvalidOption, "size " + std::to_string(size) + " is out of range");
    return false;
  }
  // Everything before the heap starts from zero; the heap needs nothing.
  std::memset(base_, 0, l.heap_off);
  Header* h = header();
  h->version = kVersion;
  h->header_bytes = kHeaderBytes;
  WriteLayout(h, l);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  h->created_ms = static_cast<uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  h->generation = 1;
  for (uint32_t i = 0; i < l.nshards; ++i) {
    Shard* s = reinterpret_cast<Shard*>(base_ + l.shards_off + i * kShardBytes);
    int rc = InitRobustMutex(&s->mutex);
    if (rc != 0) {
      error->Set(Code::kIo, std::string("cannot initialize a shard mutex: ") + std::strerror(rc),
                 rc, "pthread_mutex_init");
      return false;
    }
    s->cur_page[0] = s->cur_page[1] = kNoPage;
  }
  CrashHere(CrashPoint::kCreate);
  // The checksum covers the magic, which is written last: a creation that
  // dies before it leaves a file that the next opener recognizes and finishes.
  Header copy;
  std::memcpy(&copy, h, sizeof copy);
  std::memcpy(copy.magic, kMagic, sizeof kMagic);
  h->checksum = HeaderChecksum(&copy);
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(h->magic, kMagic, sizeof kMagic);
  return true;
}

}  // namespace shmcache
