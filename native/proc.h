// What this process knows about processes and the boot, read from /proc:
// the boot id, and start times that tell a live process from a dead one
// whose pid was reused. The values about this process are read once when the
// addon loads, before any chroot can hide /proc.
#ifndef SHMCACHE_PROC_H_
#define SHMCACHE_PROC_H_

#include <sys/types.h>

#include <cstdint>

namespace shmcache {

// Reads this process's start time and the boot id (call once, at load).
void InitProcessInfo();

// The current boot's id (/proc/sys/kernel/random/boot_id), 16 bytes; all
// zero when it could not be read.
const unsigned char* BootId();
bool BootIdKnown();

// This process's start time in clock ticks since boot, 0 when unknown.
uint64_t SelfStart();

// The inode of this process's pid namespace (/proc/self/ns/pid), 0 when
// unknown. Pids recorded by a process of another namespace mean nothing here.
uint32_t SelfPidNamespace();

// The start time of `pid` (field 22 of /proc/<pid>/stat), 0 when unknown.
uint64_t ProcessStart(pid_t pid);

// Whether the process `pid` that started at `start` (0: unknown), recorded
// by a process of pid namespace `ns` (0: unknown), may still run. Only says
// false when it is sure: the namespace is this one (or unknown), and /proc
// shows a zombie or a process with another start time, or kill(pid, 0) says
// ESRCH. A pid hidden by hidepid, or of another namespace, may be alive.
bool MayBeAlive(pid_t pid, uint64_t start, uint32_t ns = 0);

}  // namespace shmcache

#endif  // SHMCACHE_PROC_H_
