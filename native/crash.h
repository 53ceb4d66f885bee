// Test-only crash points. SHMCACHE_CRASH_AT names a point inside a write (or
// read); the process dies there, by SIGKILL or abort() (SHMCACHE_CRASH_MODE),
// after passing it SHMCACHE_CRASH_SKIP times. Read once when the addon loads.
// Unsupported in production: unset, every point is a single predictable
// branch on a constant.
#ifndef SHMCACHE_CRASH_H_
#define SHMCACHE_CRASH_H_

namespace shmcache {

enum class CrashPoint {
  kNone = 0,
  kLocked,    // writer holds the shard mutex, nothing changed yet
  kAlloc,     // a page was taken, its record not yet set up
  kCopy,      // halfway through copying a value into the heap
  kUnlinked,  // old entry unlinked, new one not linked (seq odd)
  kEvict,     // mid-way through evicting a page (seq of its shard odd)
  kPromote,   // entries an eviction keeps linked in their new place (a
              // main page, or compacted in their own), the page records
              // not yet updated (seq odd)
  kIncr,      // counter bytes written, checksum not yet (seq odd)
  kReset,     // stamp reset: generation bumped, a shard lock held
  kRead,      // lock-free reader between its two sequence reads
  kCreate,    // new segment: mutexes set up, magic not yet written
};

extern CrashPoint g_crash_point;
void InitCrashPoints();
[[noreturn]] void CrashNow();
void CrashCount();

inline void CrashHere(CrashPoint p) {
  if (__builtin_expect(g_crash_point == p, 0)) CrashCount();
}

}  // namespace shmcache

#endif  // SHMCACHE_CRASH_H_
