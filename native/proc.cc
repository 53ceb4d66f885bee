#include "proc.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shmcache {

namespace {

unsigned char g_boot_id[16];
bool g_boot_known = false;
uint64_t g_self_start = 0;
uint32_t g_self_pidns = 0;

// Reads up to `cap - 1` bytes of a small file; -1 with errno on failure.
ssize_t ReadSmall(const char* path, char* buf, size_t cap) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  ssize_t n;
  do {
    n = ::read(fd, buf, cap - 1);
  } while (n < 0 && errno == EINTR);
  int e = errno;
  ::close(fd);
  errno = e;
  if (n >= 0) buf[n] = '\0';
  return n;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Start time from /proc/<pid>/stat text: field 22, counted after the
// command name's closing parenthesis (the name may hold spaces and ')').
// A zombie (state Z or X) holds no mapping or lock any more: its start time
// reads as 0 through `dead`.
uint64_t StartFromStat(const char* stat, bool* dead) {
  const char* p = std::strrchr(stat, ')');
  if (p == nullptr) return 0;
  p += 1;
  while (*p == ' ') ++p;
  *dead = *p == 'Z' || *p == 'X' || *p == 'x';
  // Fields 3.. follow, space separated; the start time is field 22.
  for (int field = 2; field < 22; ++field) {
    while (*p == ' ') ++p;
    if (*p == '\0') return 0;
    if (field == 21) break;
    while (*p != ' ' && *p != '\0') ++p;
  }
  char* end = nullptr;
  unsigned long long v = std::strtoull(p, &end, 10);
  return end == p ? 0 : static_cast<uint64_t>(v);
}

// 1: read, 0: no such process (or a zombie), -1: cannot tell.
int ReadStart(pid_t pid, uint64_t* start) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  char buf[1024];
  if (ReadSmall(path, buf, sizeof buf) < 0) {
    // No /proc entry: gone, or only hidden from us (hidepid), or no /proc at
    // all. The kernel's answer to kill(pid, 0) tells gone from the others.
    return kill(pid, 0) != 0 && errno == ESRCH ? 0 : -1;
  }
  bool dead = false;
  *start = StartFromStat(buf, &dead);
  if (dead) return 0;
  return *start != 0 ? 1 : -1;
}

}  // namespace

void InitProcessInfo() {
  g_self_start = ProcessStart(getpid());
  char ns[64];
  ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
  if (n > 0) {
    ns[n] = '\0';
    const char* open = std::strchr(ns, '[');
    if (open != nullptr) g_self_pidns = static_cast<uint32_t>(std::strtoul(open + 1, nullptr, 10));
  }
  char buf[64];
  if (ReadSmall("/proc/sys/kernel/random/boot_id", buf, sizeof buf) < 32) return;
  unsigned char id[16];
  int nibbles = 0;
  for (const char* p = buf; *p != '\0' && nibbles < 32; ++p) {
    if (*p == '-' || *p == '\n') continue;
    int d = HexDigit(*p);
    if (d < 0) return;
    if (nibbles % 2 == 0)
      id[nibbles / 2] = static_cast<unsigned char>(d << 4);
    else
      id[nibbles / 2] |= static_cast<unsigned char>(d);
    ++nibbles;
  }
  if (nibbles != 32) return;
  std::memcpy(g_boot_id, id, sizeof id);
  g_boot_known = true;
}

const unsigned char* BootId() { return g_boot_id; }
bool BootIdKnown() { return g_boot_known; }
uint64_t SelfStart() { return g_self_start; }
uint32_t SelfPidNamespace() { return g_self_pidns; }

uint64_t ProcessStart(pid_t pid) {
  uint64_t start = 0;
  return ReadStart(pid, &start) == 1 ? start : 0;
}

bool MayBeAlive(pid_t pid, uint64_t start, uint32_t ns) {
  if (pid <= 0) return false;
  if (ns != 0 && ns != g_self_pidns) return true;  // its pid numbers are not ours
  uint64_t now = 0;
  int r = ReadStart(pid, &now);
  if (r == 0) return false;
  if (r == 1) return start == 0 || now == start;
  return !(kill(pid, 0) != 0 && errno == ESRCH);
}

}  // namespace shmcache
