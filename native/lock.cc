// The shard mutex protocol over glibc's robust process-shared mutex. The
// common case is one trylock; everything else is the slow path below. See
// "Damage and lock recovery" in docs/design.md for why each step is safe.
#include "lock.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

namespace shmcache {

int InitRobustMutex(pthread_mutex_t* mutex) {
  pthread_mutexattr_t attr;
  int rc = pthread_mutexattr_init(&attr);
  if (rc != 0) return rc;
  rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutex_init(mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  return rc;
}

namespace {

// glibc's lock word protocol for robust mutexes (the kernel's too): the
// owner's TID, FUTEX_WAITERS when someone may sleep on it, FUTEX_OWNER_DIED
// when the owner died (set by the kernel from the owner's robust list).
constexpr uint32_t kTidMask = FUTEX_TID_MASK;
constexpr uint32_t kWaiters = FUTEX_WAITERS;
constexpr uint32_t kOwnerDied = FUTEX_OWNER_DIED;
// glibc's __owner values of a mutex whose owner died (and of one that was
// then unlocked without being made consistent).
constexpr int kInconsistent = INT_MAX;
constexpr int kNotRecoverable = INT_MAX - 1;

std::atomic_ref<uint32_t> Word(pthread_mutex_t* m) {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(&m->__data.__lock));
}

int FreshKind() {
  static const int kind = [] {
    pthread_mutex_t m;
    std::memset(&m, 0, sizeof m);
    InitRobustMutex(&m);
    int k = m.__data.__kind;
    pthread_mutex_destroy(&m);
    return k;
  }();
  return kind;
}

uint32_t SelfTid() { return static_cast<uint32_t>(syscall(SYS_gettid)); }

long Futex(pthread_mutex_t* m, int op, uint32_t val, const struct timespec* rel) {
  // Shared futexes (no FUTEX_PRIVATE_FLAG): the word is in a MAP_SHARED file.
  return syscall(SYS_futex, &m->__data.__lock, op, val, rel, nullptr, 0);
}

int64_t MonoMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct timespec MonoIn(int64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1000000000;
  }
  return ts;
}

// Records the robust-list links glibc just wrote into `m` (it was pushed on
// the thread's list head, so the mutex locked before it now points back at
// it).
void Push(pthread_mutex_t* m, HeldLocks* h) {
  if (h == nullptr || h->count >= 4) return;
  auto& list = m->__data.__list;
  if (h->count > 0) h->held[h->count - 1].prev = &list.__next;
  h->held[h->count++] = {m, Atomic(list.__prev).load(std::memory_order_relaxed),
                         Atomic(list.__next).load(std::memory_order_relaxed)};
}

// Puts back the links of `m` before glibc unlinks it, and what that
// unlinking does to its neighbours' records.
void Pop(pthread_mutex_t* m, HeldLocks* h) {
  if (h == nullptr) return;
  for (int i = h->count - 1; i >= 0; --i) {
    if (h->held[i].mutex != m) continue;
    auto& list = m->__data.__list;
    Atomic(list.__prev)
        .store(static_cast<__pthread_list_t*>(h->held[i].prev), std::memory_order_relaxed);
    Atomic(list.__next)
        .store(static_cast<__pthread_list_t*>(h->held[i].next), std::memory_order_relaxed);
    if (i > 0) h->held[i - 1].prev = h->held[i].prev;
    if (i + 1 < h->count) h->held[i + 1].next = h->held[i].next;
    for (int j = i; j + 1 < h->count; ++j) h->held[j] = h->held[j + 1];
    --h->count;
    return;
  }
}

// Takes the lock word itself, outside glibc (the mutex's other fields are
// damaged and must not be used): from free, from a dead owner, or after
// waiting for a live one. Held this way the mutex is in no robust list: if
// this process dies now, the next locker finds a dead TID and recovers it.
LockResult HoldWord(pthread_mutex_t* m, LockPolicy* p, int64_t deadline, uint32_t tid) {
  auto w = Word(m);
  for (;;) {
    uint32_t v = w.load(std::memory_order_acquire);
    if (v == 0 || (v & kOwnerDied) != 0 || OwnerGone(v & kTidMask, p)) {
      if (w.compare_exchange_strong(v, tid | kWaiters, std::memory_order_acquire))
        return LockResult::kLocked;
      continue;
    }
    if (MonoMs() >= deadline) return LockResult::kTimeout;
    if ((v & kWaiters) == 0 &&
        !w.compare_exchange_strong(v, v | kWaiters, std::memory_order_relaxed))
      continue;
    struct timespec rel {
      0, p->slice_ms * 1000000L
    };
    Futex(m, FUTEX_WAIT, v | kWaiters, &rel);
  }
}

// Rewrites every field of the mutex but its lock word as a fresh robust
// process-shared mutex has them. Only while HoldWord() holds it: then no
// thread is inside, and a thread that waits sleeps on the lock word, whose
// protocol this leaves intact (no pthread_mutex_init: glibc bug 14485).
LockResult Repair(pthread_mutex_t* m, LockPolicy* p, int64_t deadline) {
  uint32_t tid = SelfTid();
  LockResult r = HoldWord(m, p, deadline, tid);
  if (r != LockResult::kLocked) return r;
  auto& d = m->__data;
  Atomic(d.__kind).store(FreshKind(), std::memory_order_relaxed);
  Atomic(d.__owner).store(0, std::memory_order_relaxed);
  Atomic(d.__count).store(0u, std::memory_order_relaxed);
  Atomic(d.__nusers).store(0u, std::memory_order_relaxed);
  Atomic(d.__list.__prev).store(nullptr, std::memory_order_relaxed);
  Atomic(d.__list.__next).store(nullptr, std::memory_order_release);
  Word(m).exchange(0, std::memory_order_release);
  Futex(m, FUTEX_WAKE, INT_MAX, nullptr);
  return LockResult::kLocked;
}

// What the kernel does for a robust owner that died: the word keeps only
// its waiters bit and gains OWNER_DIED, and one waiter is woken; the next
// locker (glibc's ordinary path) then gets EOWNERDEAD. A CAS from the value
// seen: if the owner let go or someone else recovered it meanwhile, nothing.
bool RecoverIfGone(pthread_mutex_t* m, LockPolicy* p) {
  auto w = Word(m);
  uint32_t v = w.load(std::memory_order_acquire);
  if (v == 0 || (v & kOwnerDied) != 0 || !OwnerGone(v & kTidMask, p)) return false;
  if (!w.compare_exchange_strong(v, (v & kWaiters) | kOwnerDied, std::memory_order_acq_rel))
    return false;
  Futex(m, FUTEX_WAKE, 1, nullptr);
  return true;
}

LockResult LockSlow(pthread_mutex_t* m, LockPolicy* p, HeldLocks* held) {
  int64_t deadline = MonoMs() + p->wait_ms;
  bool repaired = false;
  int repairs = 0, recoveries = 0;
  bool needs_repair = false;
  for (;;) {
    if (needs_repair || !MutexKindIntact(m)) {
      if (++repairs > 8) return LockResult::kUnrecoverable;
      LockResult r = Repair(m, p, deadline);
      if (r != LockResult::kLocked) return r;
      repaired = true;
      needs_repair = false;
      continue;
    }
    int64_t left = deadline - MonoMs();
    struct timespec until = MonoIn(left <= 0 ? 0 : left < p->slice_ms ? left : p->slice_ms);
    int rc = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &until);
    if (rc == 0 || rc == EOWNERDEAD) {
      Push(m, held);
      return rc == 0 && !repaired ? LockResult::kLocked : LockResult::kOwnerDied;
    }
    if (rc == ETIMEDOUT) {
      // The holder may be gone without the kernel knowing (its TID is no
      // thread that maps this file): recover it, then take it at once.
      if (recoveries < 16 && RecoverIfGone(m, p)) {
        ++recoveries;
        continue;
      }
      if (MonoMs() >= deadline) return LockResult::kTimeout;
      continue;
    }
    // EINVAL (the kind was damaged after it was checked), ENOTRECOVERABLE
    // (the owner field says so), EAGAIN, EDEADLK: glibc could not use it.
    needs_repair = true;
  }
}

// The process a thread belongs to (/proc/<tid>/status, readable by all),
// 0 when unknown.
uint32_t TgidOf(uint32_t tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/status", tid);
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return 0;
  char line[256];
  unsigned tgid = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "Tgid: %u", &tgid) == 1) break;
  std::fclose(f);
  return tgid;
}

}  // namespace

bool MutexHeld(const pthread_mutex_t* mutex) {
  return Atomic(const_cast<int&>(mutex->__data.__lock)).load(std::memory_order_relaxed) != 0;
}

bool MutexKindIntact(const pthread_mutex_t* mutex) {
  return Atomic(const_cast<int&>(mutex->__data.__kind)).load(std::memory_order_relaxed) ==
         FreshKind();
}

LockResult Lock(pthread_mutex_t* mutex, LockPolicy* policy, HeldLocks* held) {
  if (__builtin_expect(MutexKindIntact(mutex), 1)) {
    int rc = pthread_mutex_trylock(mutex);
    if (rc == 0) {
      Push(mutex, held);
      return LockResult::kLocked;
    }
    if (rc == EOWNERDEAD) {
      Push(mutex, held);
      return LockResult::kOwnerDied;
    }
  }
  return LockSlow(mutex, policy, held);
}

LockResult TryLock(pthread_mutex_t* mutex, HeldLocks* held) {
  if (!MutexKindIntact(mutex)) return LockResult::kBusy;
  int rc = pthread_mutex_trylock(mutex);
  if (rc == 0 || rc == EOWNERDEAD) {
    Push(mutex, held);
    return rc == 0 ? LockResult::kLocked : LockResult::kOwnerDied;
  }
  return LockResult::kBusy;  // held, or damaged: Lock() sorts it out
}

void MarkConsistent(pthread_mutex_t* mutex) { pthread_mutex_consistent(mutex); }

void Unlock(pthread_mutex_t* mutex, HeldLocks* held) {
  // We hold it, so nobody else is inside: put back what glibc's unlock
  // reads (its kind, owner, links) should the file have been rewritten.
  auto& d = mutex->__data;
  if (__builtin_expect(!MutexKindIntact(mutex), 0))
    Atomic(d.__kind).store(FreshKind(), std::memory_order_relaxed);
  int owner = Atomic(d.__owner).load(std::memory_order_relaxed);
  if (__builtin_expect(owner == kInconsistent || owner == kNotRecoverable, 0))
    Atomic(d.__owner).store(0, std::memory_order_relaxed);
  Pop(mutex, held);
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (pthread_mutex_unlock(mutex) == 0) return;
    // EPERM: the lock word no longer names us (rewritten while we held
    // it). It is ours: say so again, so that glibc unlinks it from this
    // thread's robust list and lets it go (and wakes whoever waits).
    Word(mutex).store(SelfTid() | kWaiters, std::memory_order_relaxed);
  }
}

bool OwnerGone(uint32_t tid, LockPolicy* p) {
  if (tid == 0) return true;  // waiters bit alone: nobody to wake them
  if (tid == SelfTid()) return true;
  if (kill(static_cast<pid_t>(tid), 0) != 0 && errno == ESRCH) return true;
  if (!p->resolved) {
    p->resolved = true;
    p->known = p->path != nullptr && MappedFileIdentity(p->base, *p->path, &p->dev, &p->ino);
  }
  if (!p->known) return false;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/maps", tid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    // /proc without the thread: gone (kill() said it exists, so this is
    // a race with its exit, or /proc is another pid namespace's).
    if (e == ENOENT) return access("/proc/self/maps", R_OK) == 0;
    // Its mappings are not ours to read (another uid, or no ptrace
    // rights): a process that no handle of the segment belongs to cannot
    // hold its lock.
    if ((e == EACCES || e == EPERM) && p->not_a_handle != nullptr) {
      uint32_t tgid = TgidOf(tid);
      return tgid != 0 && p->not_a_handle(p->ctx, tgid);
    }
    return false;
  }
  // A thread whose process maps this file (device and inode) may be inside.
  char want[64];
  std::snprintf(want, sizeof want, " %02x:%02x %llu ", major(p->dev), minor(p->dev),
                static_cast<unsigned long long>(p->ino));
  std::string maps;
  char buf[16384];
  bool ok = true;
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) ok = false;
    if (r <= 0) break;
    maps.append(buf, static_cast<size_t>(r));
    if (maps.size() > (64u << 20)) break;
  }
  ::close(fd);
  return ok && maps.find(want) == std::string::npos;
}

bool MappedFileIdentity(const void* base, const std::string& path, uint64_t* dev, uint64_t* ino) {
  FILE* f = std::fopen("/proc/self/maps", "re");
  if (f != nullptr) {
    char line[4096];
    uintptr_t want = reinterpret_cast<uintptr_t>(base);
    while (std::fgets(line, sizeof line, f) != nullptr) {
      unsigned long start = 0, end = 0, offset = 0, inode = 0;
      unsigned int maj = 0, min = 0;
      char perms[8];
      if (std::sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &start, &end, perms, &offset, &maj, &min,
                      &inode) == 7 &&
          start == want) {
        std::fclose(f);
        *dev = makedev(maj, min);
        *ino = inode;
        return true;
      }
    }
    std::fclose(f);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return true;
}

}  // namespace shmcache
