/**
 * The clock TTLs are measured by in this process: Date.now(), plus an offset
 * that only tests set (with the addon's own, see testing.ts).
 */
let offsetMs = 0;

export function nowMs(): number {
  return Date.now() + offsetMs;
}

export function setClockOffset(ms: number): void {
  offsetMs = ms;
}
