#include "segment.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

#include "crash.h"
#include "lock.h"
#include "proc.h"

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

// A file cut short under a mapping. The file's owner may truncate it at any
// time, and touching a mapped page past the new end raises SIGBUS, which
// would kill any process that has the segment mapped (a root tool reading
// every tenant's file). The handler maps a page of zeros over the lost page
// of one of our mappings and lets the access run again: zeros are just more
// damage, which every read and write already checks for. The handle then
// refuses further use (Segment::truncated()). Faults at other addresses go
// to the handler that was there before, or kill the process as SIGBUS does.
namespace {

constexpr int kMaxMappings = 16384;
constexpr uintptr_t kReserving = 1;  // a slot being filled in: no mapping yet
struct MappingSlot {
  std::atomic<uintptr_t> base{0};
  std::atomic<uint64_t> size{0};
  std::atomic<uint32_t> lost{0};  // pages replaced by zeros
};
MappingSlot g_mappings[kMaxMappings];
struct sigaction g_previous_bus;
long g_page_bytes = 4096;

void OnBus(int sig, siginfo_t* info, void* context) {
  uintptr_t at = reinterpret_cast<uintptr_t>(info->si_addr);
  for (MappingSlot& m : g_mappings) {
    uintptr_t base = m.base.load(std::memory_order_acquire);
    if (base <= kReserving || at < base || at - base >= m.size.load(std::memory_order_relaxed))
      continue;
    uintptr_t page = at & ~static_cast<uintptr_t>(g_page_bytes - 1);
    void* r = mmap(reinterpret_cast<void*>(page), static_cast<size_t>(g_page_bytes),
                   PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r != MAP_FAILED) {
      m.lost.fetch_add(1, std::memory_order_relaxed);
      return;  // the access runs again, on zeros
    }
    break;
  }
  if (g_previous_bus.sa_flags & SA_SIGINFO) {
    g_previous_bus.sa_sigaction(sig, info, context);
  } else if (g_previous_bus.sa_handler != SIG_DFL && g_previous_bus.sa_handler != SIG_IGN) {
    g_previous_bus.sa_handler(sig);
  } else {
    signal(SIGBUS, SIG_DFL);  // the access runs again and dies as it would have
  }
}

void InstallBusHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    long p = sysconf(_SC_PAGESIZE);
    if (p > 0) g_page_bytes = p;
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = OnBus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_previous_bus);
  });
}

// The slot of a registered mapping, or -1 when all are taken. The slot is
// reserved first, so no other thread writes its size meanwhile, and its
// base is published last.
int RegisterMapping(void* base, uint64_t size) {
  InstallBusHandler();
  for (int i = 0; i < kMaxMappings; ++i) {
    uintptr_t expected = 0;
    if (g_mappings[i].base.load(std::memory_order_relaxed) != 0 ||
        !g_mappings[i].base.compare_exchange_strong(expected, kReserving,
                                                    std::memory_order_acquire))
      continue;
    g_mappings[i].size.store(size, std::memory_order_relaxed);
    g_mappings[i].lost.store(0, std::memory_order_relaxed);
    g_mappings[i].base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_release);
    return i;
  }
  return -1;
}

}  // namespace

uint32_t Segment::lost_pages() const {
  if (mapping_slot_ < 0) return 0;
  return g_mappings[mapping_slot_].lost.load(std::memory_order_relaxed);
}

uint32_t Segment::ProbeLostPages() const {
  if (base_ == nullptr) return 0;
  for (uint64_t at = 0; at < map_size_; at += static_cast<uint64_t>(g_page_bytes)) {
    (void)Atomic(*const_cast<unsigned char*>(base_ + at)).load(std::memory_order_relaxed);
  }
  return lost_pages();
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
  if (mapping_slot_ >= 0) g_mappings[mapping_slot_].base.store(0, std::memory_order_release);
  mapping_slot_ = -1;
  if (base_ != nullptr) munmap(base_, map_size_);
  base_ = nullptr;
  size_ = map_size_ = 0;
  layout_ = Layout{};
  read_only_ = false;
  stale_shards_.clear();
}

namespace {

// Fails `error` with what an OS call said, naming `what`.
bool Fail(Error* error, Code code, const std::string& what, int e, const char* call) {
  error->Set(code, what + ": " + std::strerror(e), e, call);
  return false;
}

// The error code users see for an errno of open/stat.
Code CodeForErrno(int e) {
  switch (e) {
    case EACCES:
    case EPERM:
    case ELOOP:
    case EROFS:
    case ENOTDIR:
    case EISDIR: return Code::kPermission;
    case ENOENT: return Code::kNotFound;
    case ENOSPC:
    case EDQUOT: return Code::kNoSpace;
    default: return Code::kIo;
  }
}

struct OpenHow {
  uint64_t flags, mode, resolve;
};
constexpr uint64_t kResolveNoSymlinks = 0x04;
constexpr uint64_t kResolveNoMagicLinks = 0x02;

// An O_PATH descriptor of the folder `dir` (absolute), reached without
// following a symlink in any component: openat2(RESOLVE_NO_SYMLINKS), or
// where the kernel lacks it (or folders must be made), one component at a
// time with O_NOFOLLOW. With `create`, missing components are made 0700.
// -1 with errno (ELOOP for a symlink) on failure.
int OpenFolder(const std::string& dir, bool create) {
#ifdef SYS_openat2
  OpenHow how{O_PATH | O_DIRECTORY | O_CLOEXEC, 0, kResolveNoSymlinks | kResolveNoMagicLinks};
  long fd = syscall(SYS_openat2, AT_FDCWD, dir.c_str(), &how, sizeof how);
  if (fd >= 0) return static_cast<int>(fd);
  if (errno != ENOSYS && errno != EPERM && errno != E2BIG && !(create && errno == ENOENT))
    return -1;
#endif
  int cur = ::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (cur < 0) return -1;
  size_t at = 0;
  while (at < dir.size()) {
    size_t end = dir.find('/', at);
    if (end == std::string::npos) end = dir.size();
    std::string part = dir.substr(at, end - at);
    at = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      ::close(cur);
      errno = EINVAL;
      return -1;
    }
    // O_PATH|O_NOFOLLOW opens a symlink itself, which fstat then shows.
    int next = ::openat(cur, part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && create && mkdirat(cur, part.c_str(), 0700) == 0) {
      // Exactly 0700 whatever the umask, set through a descriptor of the
      // folder itself (never a name, which another user may have swapped
      // for a link meanwhile), and only on a folder of ours.
      next = ::openat(cur, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      struct stat made;
      if (next >= 0 && fstat(next, &made) == 0 && made.st_uid == geteuid()) fchmod(next, 0700);
    } else if (next < 0 && errno == ENOENT && create) {
      next = ::openat(cur, part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);  // made meanwhile
    }
    int e = errno;
    ::close(cur);
    if (next < 0) {
      errno = e;
      return -1;
    }
    struct stat st;
    if (fstat(next, &st) != 0 || !S_ISDIR(st.st_mode)) {
      bool link = S_ISLNK(st.st_mode);
      ::close(next);
      errno = link ? ELOOP : ENOTDIR;
      return -1;
    }
    cur = next;
  }
  return cur;
}

// The file rules for an existing file (DESIGN §2); "" when it passes.
std::string Refusal(const struct stat& st) {
  if (S_ISLNK(st.st_mode)) return "is a symbolic link";
  if (!S_ISREG(st.st_mode)) return "is not a regular file";
  if (st.st_nlink != 1)
    return "has " + std::to_string(st.st_nlink) + " hard links (a segment has exactly one)";
  if (st.st_uid != geteuid())
    return "is owned by uid " + std::to_string(st.st_uid) + ", not by this process's uid " +
           std::to_string(geteuid());
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return std::string("has mode ") + mode + ": group and other bits must be clear (0600)";
  }
  return "";
}

void SleepMs(int ms) {
  struct timespec ts {
    0, ms * 1000000L
  };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int64_t MonotonicMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

bool Segment::Open(const OpenRequest& req, Error* error, bool* created) {
  Close();
  path_ = req.path;
  *created = false;
  const std::string where = Quote(req.path);
  size_t slash = req.path.rfind('/');
  if (req.path.empty() || req.path[0] != '/' || slash == std::string::npos) {
    error->Set(Code::kInvalidOption, "the segment path " + where + " is not absolute");
    return false;
  }
  std::string dir = slash == 0 ? "/" : req.path.substr(0, slash);
  std::string name = req.path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    error->Set(Code::kInvalidOption, "the segment path " + where + " names no file");
    return false;
  }

  int dirfd = OpenFolder(dir, req.create && req.create_folder);
  if (dirfd < 0) {
    int e = errno;
    if (e == ELOOP)
      error->Set(Code::kPermission,
                 "the folder " + Quote(dir) + " of " + where +
                     " has a symbolic link in its path; symbolic links are never followed",
                 e, "openat2");
    else if (e == ENOENT)
      error->Set(Code::kNotFound, "the folder " + Quote(dir) + " of " + where + " does not exist",
                 e, "openat2");
    else
      Fail(error, CodeForErrno(e), "cannot open the folder " + Quote(dir), e, "openat2");
    return false;
  }
  struct DirCloser {
    int fd;
    ~DirCloser() { ::close(fd); }
  } dir_closer{dirfd};
  // A folder every user may write, without the sticky bit, lets any of them
  // rename our segment away and put theirs in its place. A tenant folder
  // (create_folder) must also be ours or root's, and not group-writable.
  struct stat dst;
  if (fstat(dirfd, &dst) != 0) {
    int e = errno;
    return Fail(error, Code::kIo, "cannot stat the folder " + Quote(dir), e, "fstat");
  }
  bool sticky = (dst.st_mode & S_ISVTX) != 0;
  bool loose = !sticky && ((dst.st_mode & S_IWOTH) != 0 ||
                           (req.create_folder && (dst.st_mode & S_IWGRP) != 0));
  if (loose || (req.create_folder && dst.st_uid != geteuid() && dst.st_uid != 0)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(dst.st_mode & 07777));
    error->Set(Code::kPermission, "the folder " + Quote(dir) + " (mode " + mode + ", uid " +
                                      std::to_string(dst.st_uid) + ") lets another user replace " +
                                      where + "; use a folder of your own (0700) or a sticky one");
    return false;
  }

  // Find or create the file, then take its lock. Every check runs on what
  // lstat shows before the file is opened (so a FIFO or a device is never
  // opened), and again on what was opened (it may have been swapped
  // meanwhile).
  bool fresh = false;
  struct stat st;
  for (int round = 0;; ++round) {
    if (round > 16) {
      error->Set(Code::kIo, where + " keeps changing while it is opened", EAGAIN, "openat");
      return false;
    }
    fresh = false;
    if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      int e = errno;
      if (e != ENOENT) return Fail(error, CodeForErrno(e), "cannot stat " + where, e, "fstatat");
      if (!req.create) {
        error->Set(Code::kNotFound, where + " does not exist (create: false)", e, "fstatat");
        return false;
      }
      fd_ = ::openat(dirfd, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd_ < 0) {
        e = errno;
        if (e == EEXIST) continue;
        return Fail(error, CodeForErrno(e), "cannot create " + where, e, "openat");
      }
      fresh = true;
      if (fchmod(fd_, 0600) != 0) {  // exactly 0600 whatever the umask
        e = errno;
        Close();
        return Fail(error, CodeForErrno(e), "cannot chmod " + where, e, "fchmod");
      }
    } else {
      std::string why = Refusal(st);
      if (!why.empty()) {
        error->Set(Code::kPermission, where + " " + why + "; it was left untouched");
        return false;
      }
      int flags = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
      if (req.read_only) {
        fd_ = ::openat(dirfd, name.c_str(), O_RDONLY | flags);
        if (fd_ >= 0) read_only_ = true;
      } else {
        fd_ = ::openat(dirfd, name.c_str(), O_RDWR | flags);
      }
      if (fd_ < 0 && !req.read_only && (errno == EROFS || errno == EACCES)) {
        fd_ = ::openat(dirfd, name.c_str(), O_RDONLY | flags);
        if (fd_ >= 0) read_only_ = true;
      }
      if (fd_ < 0) {
        int e = errno;
        if (e == ENOENT) continue;  // removed meanwhile
        return Fail(error, CodeForErrno(e), "cannot open " + where, e, "openat");
      }
      struct stat now;
      if (fstat(fd_, &now) != 0) {
        int e = errno;
        Close();
        return Fail(error, Code::kIo, "cannot stat " + where, e, "fstat");
      }
      if (now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
        Close();  // swapped between the check and the open: look again
        path_ = req.path;
        continue;
      }
    }

    // Creation, initialization and resets are serialized by a kernel lock on
    // the file itself, released by the kernel if its holder dies. Taken only
    // now, after the checks: nobody else can open a 0600 file of ours. A
    // read-only handle changes nothing and takes no lock, so nobody (a
    // tenant holding the lock of its own file, say) can make it wait.
    int64_t deadline = MonotonicMs() + req.lock_wait_ms;
    while (!read_only_ && flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e != EWOULDBLOCK) {
        Close();
        return Fail(error, Code::kIo, "cannot lock " + where, e, "flock");
      }
      if (MonotonicMs() >= deadline) {
        Close();
        error->Set(Code::kTimeout,
                   "waited " + std::to_string(req.lock_wait_ms) + " ms for the file lock of " +
                       where + " (another process is creating or resetting it)",
                   e, "flock");
        return false;
      }
      SleepMs(2);
    }
    // Under the lock, what the file is now is what counts: a creator that
    // failed may have removed it while we waited (then look again).
    if (fstat(fd_, &st) != 0) {
      int e = errno;
      Close();
      return Fail(error, Code::kIo, "cannot stat " + where, e, "fstat");
    }
    if (st.st_nlink == 0) {
      Close();
      path_ = req.path;
      continue;
    }
    break;
  }

  // What the file holds decides, not who created it: two first openers
  // both find it missing, one creates it, and the other may take the lock
  // first and initialize it. An empty file is new; only then is it ours to
  // remove again if its initialization fails.
  bool needs_init = st.st_size == 0;
  if (!needs_init) fresh = false;
  auto unlink_fresh = [&] {
    if (!fresh) return;
    struct stat at;
    // Only the very inode we created and are still the only one to write.
    if (fstatat(dirfd, name.c_str(), &at, AT_SYMLINK_NOFOLLOW) == 0 && at.st_dev == st.st_dev &&
        at.st_ino == st.st_ino)
      ::unlinkat(dirfd, name.c_str(), 0);
  };
  uint64_t new_size = req.size;
  if (!needs_init) {
    Header h;
    std::memset(&h, 0, sizeof h);
    uint64_t n = std::min<uint64_t>(static_cast<uint64_t>(st.st_size), sizeof h);
    if (!ReadAll(fd_, &h, n, 0)) {
      int e = errno;
      Close();
      return Fail(error, Code::kIo, "cannot read " + where, e, "pread");
    }
    bool ours = n >= sizeof h.magic && std::memcmp(h.magic, kMagic, sizeof kMagic) == 0;
    bool unfinished =
        n >= sizeof h.magic && std::memcmp(h.magic, kInitMagic, sizeof kInitMagic) == 0;
    if (!ours && !unfinished) {
      error->Set(Code::kNotASegment,
                 where + " is not a shmcache segment (no shmcache magic); it was left untouched");
      Close();
      return false;
    }
    if (unfinished) {
      // A creation that died before its last write: finish it (never
      // shrinking the file, which another process may have mapped).
      needs_init = true;
      new_size = std::min<uint64_t>(std::max<uint64_t>(req.size, st.st_size), kMaxSize);
    } else if (!CheckHeader(static_cast<uint64_t>(st.st_size), &h, error)) {
      Close();
      return false;
    }
    if (!unfinished) {
      // A segment's blocks are reserved at creation (posix_fallocate): one with
      // holes was not made so, or had its blocks released (a punched hole), and
      // touching its pages would allocate memory the file never held.
      if (static_cast<uint64_t>(st.st_blocks) * 512 < size_) {
        error->Set(Code::kCorrupt,
                   where + " has holes (" +
                       std::to_string(static_cast<uint64_t>(st.st_blocks) * 512) + " of " +
                       std::to_string(size_) +
                       " bytes allocated): a segment's blocks are reserved when it is "
                       "made (a sparse copy, cp --sparse=always or rsync -S, has holes too: "
                       "`fallocate -l " +
                       std::to_string(size_) +
                       " <file>` reserves them again without changing a byte); it was left "
                       "untouched");
        Close();
        return false;
      }
    }
  }
  if (needs_init && !req.create) {
    error->Set(Code::kNotFound,
               where +
                   " exists but was never initialized as a segment (create: false writes "
                   "nothing); it was left untouched");
    Close();
    return false;
  }
  if (needs_init && req.read_only) {
    error->Set(Code::kNotFound,
               where +
                   " exists but was never initialized as a segment (a read-only attach writes "
                   "nothing); it was left untouched");
    Close();
    return false;
  }
  if (needs_init && read_only_) {
    error->Set(Code::kPermission, where + " must be initialized but is open read-only", EROFS,
               "open");
    Close();
    return false;
  }

  if (needs_init) {
    // The "being created" magic goes first: whatever happens next, the file
    // is recognizably ours and unfinished.
    if (pwrite(fd_, kInitMagic, sizeof kInitMagic, 0) != static_cast<ssize_t>(sizeof kInitMagic)) {
      int e = errno;
      unlink_fresh();
      Close();
      return Fail(error, CodeForErrno(e), "cannot write " + where, e, "pwrite");
    }
    int rc = posix_fallocate(fd_, 0, static_cast<off_t>(new_size));
    if (rc != 0) {
      unlink_fresh();
      Close();
      error->Set(rc == ENOSPC ? Code::kNoSpace : Code::kIo,
                 "cannot reserve " + std::to_string(new_size) + " bytes for " + where + ": " +
                     std::strerror(rc),
                 rc, "posix_fallocate");
      return false;
    }
    size_ = new_size;
  }

  map_size_ = size_;
  // Up to 1 GiB, the page tables are filled at once: otherwise each process
  // takes a minor fault on the first touch of every page, on its hot path.
  // Not for a read-only handle (a tool looking at someone's file must not
  // fault in every page: a file whose blocks were released would cost it
  // the whole size in memory).
  int populate = map_size_ <= (1ull << 30) && !read_only_ ? MAP_POPULATE : 0;
  int prot = read_only_ ? PROT_READ : PROT_READ | PROT_WRITE;
  void* p = mmap(nullptr, map_size_, prot, MAP_SHARED | populate, fd_, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    unlink_fresh();
    base_ = nullptr;
    Close();
    return Fail(error, e == ENOMEM ? Code::kNoSpace : Code::kIo, "cannot map " + where, e, "mmap");
  }
  base_ = static_cast<unsigned char*>(p);
  mapping_slot_ = RegisterMapping(base_, map_size_);
  if (mapping_slot_ < 0) {
    // A mapping the SIGBUS handler does not know would let the file's owner
    // kill this process by truncating it.
    unlink_fresh();
    Close();
    error->Set(Code::kIo, "this process has " + std::to_string(kMaxMappings) +
                              " segments mapped, the most it can protect; close some first");
    return false;
  }

  if (needs_init) {
    if (!Initialize(size_, error)) {
      unlink_fresh();
      Close();
      return false;
    }
    *created = true;
    return true;
  }
  // Validated again from the mapping, once: from here on only layout_ is used.
  Header h;
  std::memcpy(&h, base_, sizeof h);
  if (!CheckHeader(map_size_, &h, error)) {
    Close();
    return false;
  }

  static const unsigned char kNoBoot[sizeof h.boot_id] = {};
  bool boot_known = std::memcmp(h.boot_id, kNoBoot, sizeof kNoBoot) != 0;
  if (!read_only_ && BootIdKnown() && !boot_known) {
    // Made by a process that could not read the boot id: which boot is not
    // known, so nothing is renewed; from now on it is this one.
    std::memcpy(header()->boot_id, BootId(), sizeof h.boot_id);
  } else if (!read_only_ && BootIdKnown() &&
             std::memcmp(h.boot_id, BootId(), sizeof h.boot_id) != 0) {
    if (!RenewLocks(error)) {
      Close();
      return false;
    }
  }
  return true;
}

// The segment was last initialized in another boot (a file kept on disk, or
// a copy): its lock words may name threads of that boot, which no process
// of this one can be. No process of this boot has used these mutexes (each
// would have come through here first, under the file lock, and renewed
// them), so they are initialized again; the shards whose lock was held or
// whose sequence was odd may be half-changed and are dropped by the caller.
// A boot id is only a word in a file its owner may rewrite, though: if a
// slot names a process that is alive now (same pid, same start time), the
// segment is in use in this boot and its mutexes are left alone (a
// re-initialized mutex under a live holder or waiter is glibc bug 14485);
// only the boot id is put right.
bool Segment::RenewLocks(Error* error) {
  Header* h = header();
  for (uint32_t i = 0; i < kSlots; ++i) {
    const Slot* slot = reinterpret_cast<const Slot*>(base_ + layout_.slots_off) + i;
    uint32_t pid = Atomic(const_cast<uint32_t&>(slot->pid)).load(std::memory_order_acquire);
    uint64_t start = Atomic(const_cast<uint64_t&>(slot->start)).load(std::memory_order_relaxed);
    uint32_t ns = Atomic(const_cast<uint32_t&>(slot->pidns)).load(std::memory_order_relaxed);
    if (pid != 0 && start != 0 && MayBeAlive(static_cast<pid_t>(pid), start, ns)) {
      std::memcpy(h->boot_id, BootId(), sizeof h->boot_id);
      return true;
    }
  }
  for (uint32_t i = 0; i < layout_.nshards; ++i) {
    Shard* s = reinterpret_cast<Shard*>(base_ + layout_.shards_off + uint64_t{i} * kShardBytes);
    bool held = MutexHeld(&s->mutex);
    if (held || (Atomic(s->seq).load() & 1) != 0) stale_shards_.push_back(i);
    int rc = InitRobustMutex(&s->mutex);
    if (rc != 0)
      return Fail(error, Code::kIo, "cannot initialize a shard mutex of " + Quote(path_), rc,
                  "pthread_mutex_init");
  }
  std::memcpy(h->boot_id, BootId(), sizeof h->boot_id);
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
  layout_ = l;  // computed here, from the size alone: never the header's own words
  return true;
}

bool Segment::Initialize(uint64_t size, Error* error) {
  Layout l;
  if (!ComputeLayout(size, &l)) {
    error->Set(Code::kInvalidOption, "size " + std::to_string(size) + " is out of range");
    return false;
  }
  // Everything before the heap starts from zero but the "being created"
  // magic, which stays until the last write; the heap needs nothing.
  std::memset(base_ + sizeof kInitMagic, 0, l.heap_off - sizeof kInitMagic);
  Header* h = header();
  h->version = kVersion;
  h->header_bytes = kHeaderBytes;
  WriteLayout(h, l);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  h->created_ms = static_cast<uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  h->generation = 1;
  std::memcpy(h->boot_id, BootId(), sizeof h->boot_id);
  for (uint32_t i = 0; i < l.nshards; ++i) {
    Shard* s = reinterpret_cast<Shard*>(base_ + l.shards_off + uint64_t{i} * kShardBytes);
    int rc = InitRobustMutex(&s->mutex);
    if (rc != 0)
      return Fail(error, Code::kIo, "cannot initialize a shard mutex", rc, "pthread_mutex_init");
    s->cur_page[0] = s->cur_page[1] = kNoPage;
    s->main_page[0] = s->main_page[1] = kNoPage;
  }
  CrashHere(CrashPoint::kCreate);
  // The checksum covers the magic, which is written last: a creation that
  // dies before it leaves the "being created" magic, and the next opener
  // finishes it.
  Header copy;
  std::memcpy(&copy, h, sizeof copy);
  std::memcpy(copy.magic, kMagic, sizeof kMagic);
  h->checksum = HeaderChecksum(&copy);
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(h->magic, kMagic, sizeof kMagic);
  size_ = size;
  layout_ = l;
  return true;
}

}  // namespace shmcache
