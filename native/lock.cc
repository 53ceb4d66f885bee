// The shard lock: a futex lock word of our own, kept where the shard's
// pthread_mutex_t's lock word was (the rest of that record is unused). The
// common case is one CAS to take it and one exchange to release it. See
// "Damage and lock recovery" in docs/design.md for why each step is safe.
//
// glibc's robust mutex is not used: its lock and unlock follow the
// robust-list pointers stored inside the mutex, that is inside the file,
// which any process of the owner's uid may rewrite while we hold it (a write
// to an address of its choosing in our process). Without the robust list
// the kernel cannot mark a dead holder's lock; a waiter finds it instead:
// after each short wait it asks whether the TID in the word is a thread of
// a process that maps this file (OwnerGone), and takes a dead one's lock
// over, reporting kOwnerDied so that the caller drops the shard.
#include "lock.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
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

#include "proc.h"

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

// This thread's TID, asked of the kernel once per thread (a syscall on every
// lock and unlock cost set() more than the rest of the lock did). A child
// made by fork() forgets it: its one thread has a TID of its own.
thread_local uint32_t t_tid = 0;
void ForgetTid() { t_tid = 0; }
uint32_t SelfTid() {
  uint32_t tid = t_tid;
  if (__builtin_expect(tid == 0, 0)) {
    static const int forget_on_fork = pthread_atfork(nullptr, nullptr, ForgetTid);
    (void)forget_on_fork;
    tid = t_tid = static_cast<uint32_t>(syscall(SYS_gettid));
  }
  return tid;
}

// A TID is a number in its thread's pid namespace: a process of another
// namespace (a container sharing the file) would read it as some other
// thread of its own, or none, and take a live holder's lock. So the word
// also says which namespace its TID is in: TIDs are below 2^22
// (PID_MAX_LIMIT), and bits 22..29 (inside FUTEX_TID_MASK, which no TID
// reaches) hold a mark of the holder's pid namespace, 1..255 (0: none, a
// word of an older version, or written into the file). The record's second
// word (glibc's __count, unused by us) holds the namespace itself for the
// rare foreign namespace whose mark equals ours: written right after the
// word is taken, cleared before it is released, so a waiter that sees a TID
// sees 0 (not tagged yet) or the holder's namespace, never an earlier one's.
constexpr uint32_t kTidBits = (1u << 22) - 1;
constexpr int kMarkShift = 22;

std::atomic_ref<uint32_t> Tag(pthread_mutex_t* m) {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(&m->__data.__count));
}

uint32_t SelfMark() {
  static const uint32_t mark = NamespaceMark(SelfPidNamespace());
  return mark;
}

// What this thread writes into a word it holds.
uint32_t OwnWord(uint32_t tid) { return tid > kTidBits ? tid : tid | (SelfMark() << kMarkShift); }
uint32_t OwnWord() { return OwnWord(SelfTid()); }

// The holder's thread start time (clock ticks since boot, low 32 bits, 0
// unknown), kept in the record's third word (glibc's __owner, unused by
// us): a TID that is reused by a thread of a process that maps the file (a
// holder killed inside the lock, its number handed out again to a new
// worker) would otherwise look like a live holder for as long as that
// thread lives, and every write to the shard would time out. Written and
// cleared with the tag.
std::atomic_ref<uint32_t> Stamp(pthread_mutex_t* m) {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(&m->__data.__owner));
}

uint32_t StartWord(uint64_t start) {
  uint32_t w = static_cast<uint32_t>(start);
  return start == 0 ? 0 : w == 0 ? 1 : w;
}

uint32_t SelfStamp(uint32_t now) {
  static thread_local uint32_t tid = 0, stamp = 0;
  if (__builtin_expect(tid != now, 0)) {
    tid = now;
    stamp = StartWord(ProcessStart(static_cast<pid_t>(now)));
  }
  return stamp;
}

// `word`: what this thread wrote into the lock word (OwnWord()).
inline void TagHeld(pthread_mutex_t* m, uint32_t word) {
  Tag(m).store(SelfPidNamespace(), std::memory_order_relaxed);
  Stamp(m).store(SelfStamp(word & kTidBits), std::memory_order_relaxed);
}

// Whether the thread `tid` of this namespace, which maps the file, is not
// the one that took the lock: its start time is not the stamp's.
bool Reused(pthread_mutex_t* m, uint32_t tid) {
  uint32_t stamp = Stamp(m).load(std::memory_order_relaxed);
  if (stamp == 0) return false;  // not stamped (yet, or by an older version)
  uint32_t now = StartWord(ProcessStart(static_cast<pid_t>(tid)));
  return now != 0 && now != stamp;
}

long Futex(pthread_mutex_t* m, int op, uint32_t val, const struct timespec* rel) {
  // Shared futexes (no FUTEX_PRIVATE_FLAG): the word is in a MAP_SHARED file.
  return syscall(SYS_futex, &m->__data.__lock, op, val, rel, nullptr, 0);
}

int64_t MonoMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Takes the lock word: from free, from a dead owner (kOwnerDied: the shard
// may be half-changed), or after waiting in slices for a live one, up to
// `deadline` (kTimeout). A word with FUTEX_OWNER_DIED (left by an older
// recovery, or written into the file) counts as a dead owner's. Held this
// way the lock is in no list of any kind: if this process dies now, the next
// locker finds a TID that is gone and recovers it.
LockResult HoldWord(pthread_mutex_t* m, LockPolicy* p, int64_t deadline, uint32_t tid) {
  auto w = Word(m);
  // A holder whose mark is ours but whose record is not tagged yet (it
  // tags it right after taking the word) is given one slice to do so.
  uint32_t untagged = 0;
  for (;;) {
    uint32_t v = w.load(std::memory_order_acquire);
    bool dead = false;
    if (v != 0 && (v & kOwnerDied) != 0) {
      dead = true;
    } else if (v != 0) {
      uint32_t mark = (v & kTidMask) >> kMarkShift;
      uint32_t ns = Tag(m).load(std::memory_order_relaxed);
      uint32_t owner = mark == 0 ? v & kTidMask : v & kTidBits;
      bool local = false;
      if (mark == 0 || SelfMark() == 0) {
        local = true;  // no mark: a TID of this namespace
        dead = OwnerGone(owner, p);
      } else if (mark != SelfMark()) {
        dead = HolderGone(owner, NamespaceMark(ns) == mark ? ns : 0, mark, p);
      } else if (ns != 0 || owner == untagged) {
        if (ns == 0) ns = SelfPidNamespace();
        local = ns == SelfPidNamespace();
        dead = HolderGone(owner, ns, mark, p);
      } else {
        untagged = owner;
      }
      // A live thread of a process that maps the file, but not the one
      // that took the lock (its TID was reused).
      if (local && !dead && owner != 0) dead = Reused(m, owner);
    }
    if (v == 0 || dead) {
      // Taken with the waiters bit: others may sleep on the word.
      if (w.compare_exchange_strong(v, tid | kWaiters, std::memory_order_acquire)) {
        TagHeld(m, tid);
        return dead ? LockResult::kOwnerDied : LockResult::kLocked;
      }
      continue;
    }
    if (MonoMs() >= deadline) return LockResult::kTimeout;
    if ((v & kWaiters) == 0 &&
        !w.compare_exchange_strong(v, v | kWaiters, std::memory_order_relaxed))
      continue;
    int64_t left = deadline - MonoMs();
    int64_t ms = left <= 0 ? 1 : left < p->slice_ms ? left : p->slice_ms;
    struct timespec rel {
      static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000L
    };
    Futex(m, FUTEX_WAIT, v | kWaiters, &rel);
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

bool MutexKindIntact(const pthread_mutex_t*) { return true; }  // the kind is not used

LockResult Lock(pthread_mutex_t* mutex, LockPolicy* policy, HeldLocks*) {
  uint32_t tid = OwnWord();
  uint32_t free = 0;
  if (__builtin_expect(Word(mutex).compare_exchange_strong(free, tid, std::memory_order_acquire),
                       1)) {
    TagHeld(mutex, tid);
    return LockResult::kLocked;
  }
  return HoldWord(mutex, policy, MonoMs() + policy->wait_ms, tid);
}

LockResult TryLock(pthread_mutex_t* mutex, HeldLocks*) {
  auto w = Word(mutex);
  uint32_t v = 0;
  uint32_t own = OwnWord();
  if (w.compare_exchange_strong(v, own, std::memory_order_acquire)) {
    TagHeld(mutex, own);
    return LockResult::kLocked;
  }
  // A dead owner's mark (an older recovery): taken as Lock() would.
  if ((v & kOwnerDied) != 0 &&
      w.compare_exchange_strong(v, own | kWaiters, std::memory_order_acquire)) {
    TagHeld(mutex, own);
    return LockResult::kOwnerDied;
  }
  return LockResult::kBusy;  // held, or a dead owner not yet known: Lock() sorts it out
}

void MarkConsistent(pthread_mutex_t*) {}  // nothing to mark: the caller dropped the shard

void Unlock(pthread_mutex_t* mutex, HeldLocks*) {
  // Whatever the word says now (the file may have been rewritten while we
  // held it), we are the holder: free it, and wake a sleeper if one may be
  // there. A stray wake-up costs a sleeper one more look, nothing else.
  Tag(mutex).store(0, std::memory_order_relaxed);
  Stamp(mutex).store(0, std::memory_order_relaxed);
  uint32_t was = Word(mutex).exchange(0, std::memory_order_release);
  if ((was & ~kTidMask) != 0 || (was & kTidMask) != OwnWord()) Futex(mutex, FUTEX_WAKE, 1, nullptr);
}

uint32_t NamespaceMark(uint32_t ns) {
  if (ns == 0) return 0;
  return 1 + static_cast<uint32_t>(Mix(ns, 0x9E3779B97F4A7C15ull) % 255);
}

bool HolderGone(uint32_t tid, uint32_t ns, uint32_t mark, LockPolicy* p) {
  if (tid == 0) return true;
  if (ns != 0 && ns == SelfPidNamespace()) return OwnerGone(tid, p);
  // Another namespace's TID: nothing here can be asked about it. Its
  // process is gone only if no handle of that namespace is left.
  return p->ns_has_handle != nullptr && !p->ns_has_handle(p->ctx, ns, mark);
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
