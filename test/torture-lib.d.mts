export interface TortureReport {
  seconds: number;
  kills: number;
  killsPerSecond: number;
  longestPauseMs: number;
  ops: number;
  problems: string[];
  verify: { ok: boolean; problems: string[] };
}
export function torture(options: {
  path: string;
  seconds: number;
  workers?: number;
  keys?: number;
  size?: string;
  killEvery?: [number, number];
  stallMs?: number;
}): Promise<TortureReport>;
