// Attaching a handle to a mapped segment: the start-time stamp rule (when a
// newer process group resets the segment), and the per-handle statistics
// slots that also record who has the segment open.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "crash.h"
#include "jail.h"
#include "proc.h"
#include "table.h"

namespace shmcache {

bool Store::Open(const AttachRequest& req, Error* error, bool* created, bool* reset) {
  *reset = false;
  if (!seg_.Open(req.file, error, created)) return false;
  pid_ = static_cast<uint32_t>(getpid());
  if (!seg_.read_only()) {
    // Shards another boot left mid-change (see Segment::RenewLocks).
    for (uint32_t si : seg_.stale_shards()) {
      if (!LockShard(si)) continue;
      DropShard(si);
      UnlockShard(si);
    }
    Header* h = header();
    auto seg_stamp = Atomic(h->stamp);
    bool reset_now = false;
    if (!*created && req.mode != StampMode::kNever &&
        req.stamp > seg_stamp.load(std::memory_order_acquire)) {
      reset_now = req.mode == StampMode::kExplicit || NobodyAlive();
    }
    if (reset_now) {
      Reset();
      Atomic(h->resets).fetch_add(1, std::memory_order_relaxed);
      *reset = true;
    }
    if (*created || reset_now) {
      seg_stamp.store(req.mode == StampMode::kNever ? 0 : req.stamp, std::memory_order_release);
      bool group = req.mode == StampMode::kGroup;
      Atomic(h->leader_pid).store(group ? req.leader_pid : 0, std::memory_order_relaxed);
      Atomic(h->leader_start).store(group ? req.leader_start : 0, std::memory_order_relaxed);
      Atomic(h->leader_ns).store(group ? SelfPidNamespace() : 0, std::memory_order_relaxed);
    }
    ClaimSlot();
  }
  // The slot is claimed before the file lock goes: a newer group that
  // attaches next sees this handle.
  seg_.ReleaseFileLock();
  NoteSegmentOpened();
  return true;
}

// A newer process group: everything stored before it is gone. Bumping the
// generation first hides every old entry at once; dropping the shards then
// gives their memory back. Runs under the file lock, so it happens once.
void Store::Reset() {
  Header* h = header();
  Atomic(h->generation).fetch_add(1, std::memory_order_acq_rel);
  for (uint32_t i = 0; i < seg_.layout().nshards; ++i) {
    if (!LockShard(i)) continue;
    DropShard(i);
    CrashHere(CrashPoint::kReset);
    UnlockShard(i);
  }
}

bool Store::NobodyAlive() const {
  const Header* h = header();
  // Every process of another boot is gone.
  if (BootIdKnown() && std::memcmp(h->boot_id, BootId(), sizeof h->boot_id) != 0) return true;
  if (Atomic(const_cast<uint32_t&>(h->unslotted)).load(std::memory_order_acquire) != 0)
    return false;
  uint32_t leader = Atomic(const_cast<uint32_t&>(h->leader_pid)).load(std::memory_order_relaxed);
  uint64_t start = Atomic(const_cast<uint64_t&>(h->leader_start)).load(std::memory_order_relaxed);
  uint32_t ns = Atomic(const_cast<uint32_t&>(h->leader_ns)).load(std::memory_order_relaxed);
  if (leader != 0 && MayBeAlive(static_cast<pid_t>(leader), start, ns)) return false;
  for (uint32_t i = 0; i < kSlots; ++i) {
    Slot* s = slot(i);
    uint32_t pid = Atomic(s->pid).load(std::memory_order_acquire);
    if (pid == 0) continue;
    if (pid == pid_) return false;  // another handle of this very process
    if (MayBeAlive(static_cast<pid_t>(pid), Atomic(s->start).load(std::memory_order_relaxed),
                   Atomic(s->pidns).load(std::memory_order_relaxed)))
      return false;
  }
  return true;
}

void Store::ClaimSlot() {
  uint64_t start = SelfStart();
  for (int pass = 0; pass < 2; ++pass) {
    for (uint32_t i = 0; i < kSlots; ++i) {
      Slot* s = slot(i);
      auto owner = Atomic(s->pid);
      uint32_t cur = owner.load(std::memory_order_relaxed);
      bool free = pass == 0 ? cur == 0
                            : (cur != pid_ &&
                               !MayBeAlive(static_cast<pid_t>(cur), Atomic(s->start).load()));
      if (free && owner.compare_exchange_strong(cur, pid_)) {
        // A taken-over slot keeps its counts (they are the segment's).
        Atomic(s->start).store(start, std::memory_order_relaxed);
        Atomic(s->pidns).store(SelfPidNamespace(), std::memory_order_relaxed);
        slot_ = i;
        return;
      }
    }
  }
  // No slot: counted, so that default stamps know someone they cannot see
  // uses the segment (a crash leaves it counted: never reset then).
  Atomic(header()->unslotted).fetch_add(1, std::memory_order_acq_rel);
  slot_ = kSlots;
  unslotted_ = true;
}

void Store::Close() {
  if (!seg_.is_open()) return;
  if (slot_ < kSlots) {
    uint32_t me = pid_;
    Atomic(slot(slot_)->pid).compare_exchange_strong(me, 0);
  }
  if (unslotted_) Atomic(header()->unslotted).fetch_sub(1, std::memory_order_acq_rel);
  unslotted_ = false;
  slot_ = kSlots;
  seg_.Close();
}

}  // namespace shmcache
