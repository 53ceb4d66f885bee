// Locks kept inside the segment: the per-shard robust process-shared mutex
// that writers take, and the per-shard sequence counter that lets readers
// copy an entry out without writing anything shared.
//
// The mutex lives in a file any process of the owner's uid may write, so
// every word of it is hostile input: its kind may be damaged, its lock word
// may name a thread that is gone (or never took it), and its robust-list
// pointers (which glibc follows when it unlocks) may be rewritten while we
// hold it. Lock() and Unlock() below check and repair all three; see
// "Damage and lock recovery" in docs/design.md.
#ifndef SHMCACHE_LOCK_H_
#define SHMCACHE_LOCK_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "common.h"

namespace shmcache {

// Initializes a robust, process-shared mutex. Only ever called on a segment
// that no other process can have mapped (during creation under the file lock).
int InitRobustMutex(pthread_mutex_t* mutex);

enum class LockResult {
  kLocked,     // taken, state consistent
  kOwnerDied,  // taken, previous owner died holding it (or the mutex was
               // repaired): caller must drop the shard, then MarkConsistent
  kBusy,       // TryLock only: held by someone else (or needs a repair)
  kUnrecoverable,
  kTimeout,  // a live holder kept it for longer than the policy's wait
};

// How Lock() tells a lock word's owner from a dead one: the identity of the
// segment file (a thread whose process does not map it cannot be inside),
// and how long it waits for a holder that is alive.
struct LockPolicy {
  const void* base = nullptr;         // where the file is mapped
  const std::string* path = nullptr;  // and its path (if /proc/self/maps fails)
  bool resolved = false;              // dev/ino looked up (the first time they are needed)
  bool known = false;                 // and found
  uint64_t dev = 0, ino = 0;
  // For a thread whose mappings this process may not read (another uid):
  // whether its process (`tgid`) is surely no handle of the segment (no
  // statistics slot names it, and every handle has one).
  bool (*not_a_handle)(const void* ctx, uint32_t tgid) = nullptr;
  // For a holder of another pid namespace (whose TID means nothing here):
  // whether some handle of that namespace (`ns`, its inode; 0 when only its
  // NamespaceMark `mark` is known) may still be open (a statistics slot
  // names it, or some handle has no slot).
  bool (*ns_has_handle)(const void* ctx, uint32_t ns, uint32_t mark) = nullptr;
  const void* ctx = nullptr;
  int64_t wait_ms = 2000;  // a live holder longer than this: kTimeout
  int64_t slice_ms = 50;   // owner checks between waits
};

// The robust-list links glibc wrote into each mutex this handle holds, in
// locking order: put back before unlocking, because glibc's unlock follows
// them (a pointer rewritten in the file would otherwise make it write
// through it). At most two are held at once (a shard and an eviction victim).
struct HeldLocks {
  struct Held {
    pthread_mutex_t* mutex;
    void* prev;
    void* next;
  };
  Held held[4];
  int count = 0;
};

// Whether the mutex's lock word names a holder (glibc: __data.__lock).
bool MutexHeld(const pthread_mutex_t* mutex);
// Whether the mutex's kind is that of a fresh robust process-shared mutex.
bool MutexKindIntact(const pthread_mutex_t* mutex);

// Takes the mutex: one trylock when it is free and sound; otherwise waits in
// slices, recovering a lock whose owner is gone and repairing a damaged
// mutex (both reported as kOwnerDied), or gives up with kTimeout.
LockResult Lock(pthread_mutex_t* mutex, LockPolicy* policy, HeldLocks* held);
// Never waits; a damaged mutex is kBusy (the caller then Lock()s it).
LockResult TryLock(pthread_mutex_t* mutex, HeldLocks* held);
void MarkConsistent(pthread_mutex_t* mutex);
void Unlock(pthread_mutex_t* mutex, HeldLocks* held);

// The mark of pid namespace `ns` (its inode) a lock word carries in bits
// 22..29 next to its TID: 1..255, 0 for an unknown namespace.
uint32_t NamespaceMark(uint32_t ns);
// Whether the holder `tid` (a lock word's TID, of the pid namespace `ns`, or
// 0 when only its mark is known) cannot be inside the lock. A TID is only
// interpreted in this process's namespace; a holder of another one is gone
// only when no handle of its namespace is left.
bool HolderGone(uint32_t tid, uint32_t ns, uint32_t mark, LockPolicy* policy);
// Whether thread `tid`, named by a lock word, cannot be inside the lock: no
// such thread, a thread of a process that does not map the file, or this
// very thread (which never waits for a lock it holds). False when it cannot
// tell.
bool OwnerGone(uint32_t tid, LockPolicy* policy);
// The device and inode of the file mapped at `base` (from /proc/self/maps,
// else a stat() of `path`).
bool MappedFileIdentity(const void* base, const std::string& path, uint64_t* dev, uint64_t* ino);

// Seqlock helpers on a shard's counter.
inline uint32_t ReadBegin(uint32_t& seq) { return Atomic(seq).load(std::memory_order_acquire); }
inline bool ReadRetry(uint32_t& seq, uint32_t begin) {
  std::atomic_thread_fence(std::memory_order_acquire);
  return Atomic(seq).load(std::memory_order_relaxed) != begin;
}
// Writers hold the shard mutex around these.
inline void WriteBegin(uint32_t& seq) {
  auto a = Atomic(seq);
  a.store(a.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}
inline void WriteEnd(uint32_t& seq) {
  auto a = Atomic(seq);
  a.store(a.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}
// After a crash the counter may be odd: make it even and different from
// anything a reader saw.
inline void WriteReset(uint32_t& seq) {
  auto a = Atomic(seq);
  uint32_t s = a.load(std::memory_order_relaxed);
  a.store((s | 1u) + 1u, std::memory_order_release);
}

// A spin-wait hint: x86 `pause`, arm64 `yield`, nothing elsewhere.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ __volatile__("pause" ::: "memory");
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  __asm__ __volatile__("" ::: "memory");
#endif
}

}  // namespace shmcache

#endif  // SHMCACHE_LOCK_H_
