// The long torture run: npm run torture -- --seconds 300 [--workers 4]
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { torture } from '../test/torture-lib.mjs';

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const dir = mkdtempSync('/dev/shm/shmcache-torture-');
try {
  const report = await torture({
    path: join(dir, 'torture.shm'),
    seconds: flag('seconds', 60),
    workers: flag('workers', 4),
  });
  console.log(JSON.stringify(report, null, 2));
  process.exitCode = report.problems.length === 0 && report.verify.ok ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
