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
  const none = { stamp: 0, leaderPid: 0, leaderStart: 0 };
  try {
    const fields = (pid: string): string[] => {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
      // The command name is in parentheses and may hold spaces.
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    };
    const pgid = fields('self')[2]; // field 5: pgrp
    if (pgid === undefined) return none;
    const startTicks = Number(fields(pgid)[19]); // field 22: starttime
    const procStat = fs.readFileSync('/proc/stat', 'latin1');
    const btime = Number(/^btime (\d+)$/m.exec(procStat)?.[1]);
    if (!Number.isSafeInteger(startTicks) || !Number.isSafeInteger(btime)) return none;
    // USER_HZ is 100 on every Linux architecture Node runs on.
    return { stamp: btime * 1000 + startTicks * 10, leaderPid: Number(pgid), leaderStart: startTicks };
  } catch {
    return none;
  }
}

export const processGroup: GroupIdentity = readGroupIdentity();
