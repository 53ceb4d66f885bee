import * as fs from 'node:fs';

/**
 * The default start-time stamp: when the leader of this process's group
 * started, in milliseconds since the epoch. Processes forked or spawned by
 * one master share it (they inherit its process group); a new start of the
 * master is a new group with a later stamp. Read once, when the package
 * loads, so that it is known before any chroot hides /proc.
 * Returns 0 (never reset) where it cannot be read.
 */
function readStartStamp(): number {
  try {
    const fields = (pid: string): string[] => {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
      // The command name is in parentheses and may hold spaces.
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    };
    const pgid = fields('self')[2]; // field 5: pgrp
    if (pgid === undefined) return 0;
    const startTicks = Number(fields(pgid)[19]); // field 22: starttime
    const procStat = fs.readFileSync('/proc/stat', 'latin1');
    const btime = Number(/^btime (\d+)$/m.exec(procStat)?.[1]);
    if (!Number.isFinite(startTicks) || !Number.isFinite(btime)) return 0;
    // USER_HZ is 100 on every Linux architecture Node runs on.
    return btime * 1000 + startTicks * 10;
  } catch {
    return 0;
  }
}

export const processGroupStamp: number = readStartStamp();
