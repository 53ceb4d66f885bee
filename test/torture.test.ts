import { expect, test } from 'vitest';
import { torture } from './torture-lib.mjs';
import { tempDir } from './helpers';

const tmp = tempDir();

// The long run: npm run torture -- --seconds 300
test('workers SIGKILLed every few ms: no wrong value, no stall, verify() ok', async () => {
  const report = await torture({ path: tmp.file('torture'), seconds: 6, workers: 4 });
  console.log(
    `torture: ${report.kills} kills in ${report.seconds.toFixed(1)} s (${report.killsPerSecond.toFixed(1)}/s), ` +
      `${report.ops} ops, longest pause ${report.longestPauseMs} ms`,
  );
  expect(report.problems).toEqual([]);
  expect(report.verify).toEqual({ ok: true, problems: [] });
  // Correctness, not speed: how many kills and operations fit in the run
  // depends on the machine's load; that some happened is what counts.
  expect(report.kills).toBeGreaterThan(0);
  expect(report.ops).toBeGreaterThan(0);
});
