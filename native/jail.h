// jail(): chroot and privilege drop for per-tenant workers, and the
// process-wide record of whether any segment was ever mapped (a mapping
// made before the jail would cross it).
#ifndef SHMCACHE_JAIL_H_
#define SHMCACHE_JAIL_H_

#include <sys/types.h>

#include <string>

#include "common.h"

namespace shmcache {

void NoteSegmentOpened();
bool AnySegmentOpened();

// chroot(root) + chdir("/") when root is non-empty, then setgroups({gid}),
// setgid(gid) when has_gid, then setuid(uid) when has_uid, in that order.
bool Jail(const std::string& root, bool has_uid, uid_t uid, bool has_gid, gid_t gid, Error* error);

}  // namespace shmcache

#endif  // SHMCACHE_JAIL_H_
