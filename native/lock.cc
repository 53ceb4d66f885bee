#include "lock.h"

#include <cerrno>

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

bool MutexHeld(const pthread_mutex_t* mutex) {
  return Atomic(const_cast<int&>(mutex->__data.__lock)).load(std::memory_order_relaxed) != 0;
}

static LockResult Classify(int rc) {
  switch (rc) {
    case 0: return LockResult::kLocked;
    case EOWNERDEAD: return LockResult::kOwnerDied;
    case EBUSY: return LockResult::kBusy;
    default: return LockResult::kUnrecoverable;
  }
}

LockResult Lock(pthread_mutex_t* mutex) { return Classify(pthread_mutex_lock(mutex)); }

LockResult TryLock(pthread_mutex_t* mutex) { return Classify(pthread_mutex_trylock(mutex)); }

void MarkConsistent(pthread_mutex_t* mutex) { pthread_mutex_consistent(mutex); }

void Unlock(pthread_mutex_t* mutex) { pthread_mutex_unlock(mutex); }

}  // namespace shmcache
