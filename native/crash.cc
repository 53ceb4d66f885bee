#include "crash.h"

#include <signal.h>

#include <cstdlib>
#include <cstring>

namespace shmcache {

CrashPoint g_crash_point = CrashPoint::kNone;

namespace {
bool g_abort = false;
long g_skip = 0;

struct Name {
  const char* name;
  CrashPoint point;
};
constexpr Name kNames[] = {
    {"locked", CrashPoint::kLocked}, {"alloc", CrashPoint::kAlloc},
    {"copy", CrashPoint::kCopy},     {"unlinked", CrashPoint::kUnlinked},
    {"evict", CrashPoint::kEvict},   {"promote", CrashPoint::kPromote},
    {"incr", CrashPoint::kIncr},     {"reset", CrashPoint::kReset},
    {"read", CrashPoint::kRead},     {"create", CrashPoint::kCreate},
};
}  // namespace

void InitCrashPoints() {
  const char* at = std::getenv("SHMCACHE_CRASH_AT");
  if (at == nullptr) return;
  for (const Name& n : kNames)
    if (std::strcmp(at, n.name) == 0) g_crash_point = n.point;
  const char* mode = std::getenv("SHMCACHE_CRASH_MODE");
  g_abort = mode != nullptr && std::strcmp(mode, "abort") == 0;
  const char* skip = std::getenv("SHMCACHE_CRASH_SKIP");
  g_skip = skip != nullptr ? std::strtol(skip, nullptr, 10) : 0;
}

void CrashNow() {
  if (g_abort) std::abort();
  raise(SIGKILL);
  std::abort();
}

void CrashCount() {
  if (g_skip-- <= 0) CrashNow();
}

}  // namespace shmcache
