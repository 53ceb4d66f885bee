// Locks kept inside the segment: the per-shard robust process-shared mutex
// that writers take, and the per-shard sequence counter that lets readers
// copy an entry out without writing anything shared.
#ifndef SHMCACHE_LOCK_H_
#define SHMCACHE_LOCK_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>

#include "common.h"

namespace shmcache {

// Initializes a robust, process-shared mutex. Only ever called on a segment
// that no other process can have mapped (during creation under the file lock).
int InitRobustMutex(pthread_mutex_t* mutex);

enum class LockResult {
  kLocked,     // taken, state consistent
  kOwnerDied,  // taken, previous owner died holding it: caller must repair
               // the shard and then call MarkConsistent
  kBusy,       // TryLock only: held by someone else
  kUnrecoverable,
};

// Whether the mutex's lock word names a holder (glibc: __data.__lock).
bool MutexHeld(const pthread_mutex_t* mutex);

LockResult Lock(pthread_mutex_t* mutex);
LockResult TryLock(pthread_mutex_t* mutex);
void MarkConsistent(pthread_mutex_t* mutex);
void Unlock(pthread_mutex_t* mutex);

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

inline void CpuRelax() { __builtin_ia32_pause(); }

}  // namespace shmcache

#endif  // SHMCACHE_LOCK_H_
