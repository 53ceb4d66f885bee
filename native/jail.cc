#include "jail.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace shmcache {

namespace {
std::atomic<bool> g_opened{false};

bool Fail(Error* error, const char* call, const std::string& what) {
  int e = errno;
  error->Set(Code::kJail, what + ": " + std::strerror(e), e, call);
  return false;
}
// "fd 5 (/srv/www)" for every descriptor of this process that names a
// directory: each is a way out of a chroot (fchdir, then "..").
std::vector<std::string> DirectoryDescriptors() {
  std::vector<std::string> found;
  auto note = [&](int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode)) return;
    std::string what = "fd " + std::to_string(fd);
    char link[64], target[4096];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n > 0) what += " (" + std::string(target, static_cast<size_t>(n)) + ")";
    found.push_back(what);
  };
  if (DIR* d = opendir("/proc/self/fd")) {
    int own = dirfd(d);
    std::vector<int> fds;
    while (struct dirent* e = readdir(d)) {
      char* end = nullptr;
      long fd = std::strtol(e->d_name, &end, 10);
      if (end != e->d_name && *end == '\0' && fd != own) fds.push_back(static_cast<int>(fd));
    }
    closedir(d);
    for (int fd : fds) note(fd);
    return found;
  }
  // No /proc: every descriptor number up to the limit.
  struct rlimit rl;
  long max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                 ? static_cast<long>(rl.rlim_cur)
                 : 65536;
  for (long fd = 0; fd < max && fd < (1 << 20); ++fd)
    if (fcntl(static_cast<int>(fd), F_GETFD) != -1) note(static_cast<int>(fd));
  return found;
}

// Mounts of procfs at or below `root`: inside the jail each is a way out
// (/proc/<pid>/root of any process outside it that the jailed uid may
// trace). From /proc/self/mountinfo; empty when it cannot be read.
std::vector<std::string> ProcMountsUnder(const std::string& root) {
  std::vector<std::string> found;
  FILE* f = std::fopen("/proc/self/mountinfo", "re");
  if (f == nullptr) return found;
  char line[4096];
  std::string prefix = root.back() == '/' ? root : root + "/";
  while (std::fgets(line, sizeof line, f) != nullptr) {
    // id parent major:minor root mountpoint options... - fstype source superoptions
    char mount_point[2048], fstype[256];
    const char* dash = std::strstr(line, " - ");
    if (dash == nullptr || std::sscanf(line, "%*s %*s %*s %*s %2047s", mount_point) != 1 ||
        std::sscanf(dash + 3, "%255s", fstype) != 1)
      continue;
    std::string mp = mount_point;  // octal escapes (\040) are left as they are
    if (std::strcmp(fstype, "proc") == 0 && (mp == root || mp.rfind(prefix, 0) == 0))
      found.push_back(mp);
  }
  std::fclose(f);
  return found;
}

// Drops every capability this process still has (after setuid to a non-root
// uid a process that held capabilities without being root keeps them, and
// ambient ones survive): inside a chroot, CAP_SYS_CHROOT or CAP_SETUID is a
// way out. Then checks that none is left.
bool DropCapabilities(Error* error) {
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capset, &header, data) != 0)
    return Fail(error, "capset", "cannot drop the capabilities left after setuid");
  __user_cap_data_struct now[2] = {};
  if (syscall(SYS_capget, &header, now) != 0)
    return Fail(error, "capget", "cannot read the capabilities left after setuid");
  for (const auto& d : now) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) {
      errno = EPERM;
      return Fail(error, "capset", "capabilities are left after setuid; exit this process");
    }
  }
  return true;
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
  if (!root.empty() && (!has_uid || uid == 0)) {
    error->Set(Code::kJail,
               "jail() with a root needs a uid other than 0: a process left root inside a chroot "
               "can leave it");
    return false;
  }
  if (!root.empty()) {
    std::vector<std::string> procs = ProcMountsUnder(root);
    if (!procs.empty()) {
      std::string list;
      for (const std::string& p : procs) list += (list.empty() ? "" : ", ") + p;
      error->Set(Code::kJail, "procfs is mounted inside the jail (" + list +
                                  "): /proc/<pid>/root of any process outside it is a way out");
      return false;
    }
    std::vector<std::string> dirs = DirectoryDescriptors();
    if (!dirs.empty()) {
      std::string list;
      for (const std::string& d : dirs) list += (list.empty() ? "" : ", ") + d;
      error->Set(Code::kJail,
                 "this process holds open directory descriptors, each a way out of the chroot "
                 "(fchdir): " +
                     list + "; close them before jail()");
      return false;
    }
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
  if (has_uid && !DropCapabilities(error)) return false;
  // No execve may give privileges back (a setuid binary in the jail).
  if (has_uid && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return Fail(error, "prctl", "cannot set no_new_privs");
  return true;
}

}  // namespace shmcache
