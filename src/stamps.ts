import * as fs from 'node:fs';

/** Who this process's default start-time stamp comes from. */
export interface GroupIdentity {
  /**
   * When the leader of this process's group started, in milliseconds since
   * the epoch: the default stamp. 0 (never reset) where it cannot be read.
   */
  stamp: number;
  /** The group leader's pid (the process group id), 0 when unknown. */
  leaderPid: number;
  /** Its start time in clock ticks since boot (field 22 of /proc/<pid>/stat), 0 when unknown. */
  leaderStart: number;
}

/**
 * Processes forked or spawned by one master share it (they inherit its
 * process group); a new start of the master is a new group with a later
 * stamp. Read once, when the package loads, so that it is known before any
 * chroot hides /proc.
 */
function readGroupIdentity(): GroupIdentity {
  const fields = (pid: string): string[] => {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name is in parentheses and may hold spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  };
  let leaderPid = 0;
  try {
    leaderPid = Number(fields('self')[2]); // field 5: pgrp
    if (!Number.isSafeInteger(leaderPid) || leaderPid <= 0) leaderPid = 0;
  } catch {
    return { stamp: 0, leaderPid: 0, leaderStart: 0 };
  }
  try {
    const startTicks = Number(fields(String(leaderPid))[19]); // field 22: starttime
    const procStat = fs.readFileSync('/proc/stat', 'latin1');
    const btime = Number(/^btime (\d+)$/m.exec(procStat)?.[1]);
    if (!Number.isSafeInteger(startTicks) || !Number.isSafeInteger(btime)) throw new Error('unreadable');
    // USER_HZ is 100 on every Linux architecture Node runs on.
    return { stamp: btime * 1000 + startTicks * 10, leaderPid, leaderStart: startTicks };
  } catch {
    // The leader's /proc entry is hidden (hidepid) or gone: no stamp (never
    // resets), but its pid is still recorded, so that the segment counts it
    // as alive while kill(pid, 0) says so.
    return { stamp: 0, leaderPid, leaderStart: 0 };
  }
}

export const processGroup: GroupIdentity = readGroupIdentity();
