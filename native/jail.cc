#include "jail.h"

#include <grp.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace shmcache {

namespace {
std::atomic<bool> g_opened{false};

bool Fail(Error* error, const char* call, const std::string& what) {
  int e = errno;
  error->Set(Code::kJail, what + ": " + std::strerror(e), e, call);
  return false;
}
}  // namespace

void NoteSegmentOpened() { g_opened.store(true, std::memory_order_relaxed); }
bool AnySegmentOpened() { return g_opened.load(std::memory_order_relaxed); }

bool Jail(const std::string& root, bool has_uid, uid_t uid, bool has_gid, gid_t gid, Error* error) {
  if (AnySegmentOpened()) {
    error->Set(Code::kJail,
               "a cache of this process was opened before jail(): its mapping would cross the "
               "jail; call jail() before the first cache operation");
    return false;
  }
  if (!root.empty()) {
    if (chroot(root.c_str()) != 0) return Fail(error, "chroot", "cannot chroot to '" + root + "'");
    if (chdir("/") != 0) return Fail(error, "chdir", "cannot chdir to / in the jail");
  }
  if (has_gid) {
    if (setgroups(1, &gid) != 0) return Fail(error, "setgroups", "cannot set supplementary groups");
    if (setgid(gid) != 0) return Fail(error, "setgid", "cannot set gid " + std::to_string(gid));
  }
  if (has_uid && setuid(uid) != 0)
    return Fail(error, "setuid", "cannot set uid " + std::to_string(uid));
  return true;
}

}  // namespace shmcache
