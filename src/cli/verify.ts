import { attach, defaultLockWait } from './attach';
import { bytes, count, json, painter, visible, wantsColour } from './format';
import { MUTATION_LOCK_WAIT_MS } from './mutate';
import { LARGE_BYTES, LARGE_ENTRIES, Progress } from './progress';

/**
 * Walks every structure of the segment (Cache.verify()) and reports what
 * it finds, read-only: nothing is changed. With `repair`, attached
 * read-write: what it finds damaged is dropped. Exit 1 when it found problems.
 */
export function verifyCommand(path: string, opts: { json?: boolean; repair?: boolean }): number {
  if (opts.repair) defaultLockWait(MUTATION_LOCK_WAIT_MS);
  const cache = attach(path, { readOnly: !opts.repair });
  try {
    const s = cache.stats();
    const progress = new Progress();
    // verify() is one native call: the line says what is being walked, and
    // stays until it is done.
    if (s.entries >= LARGE_ENTRIES || s.size >= LARGE_BYTES) {
      progress.show(`verifying ${visible(s.path)}: ${bytes(s.size)}, ${count(s.entries)} entries…`, true);
    }
    const started = Date.now();
    const r = cache.verify();
    progress.done();
    if (opts.json) {
      process.stdout.write(json({ path: s.path, ...r, repaired: opts.repair === true && !r.ok }) + '\n');
      return r.ok ? 0 : 1;
    }
    const paint = painter(wantsColour(process.stdout));
    const where = `${visible(s.path)} (${bytes(s.size)}, ${count(s.entries)} entries, ${((Date.now() - started) / 1000).toFixed(1)} s)`;
    if (r.ok) {
      process.stdout.write(`${paint('ok', 'green')}: no problems in ${where}\n`);
      return 0;
    }
    const what = opts.repair ? 'what they touched was dropped' : 'nothing was changed (shmcache verify --repair drops what they touch)';
    process.stdout.write(`${paint(`${r.problems.length} ${r.problems.length === 1 ? 'problem' : 'problems'}`, 'red')} in ${where}; ${what}:\n`);
    for (const p of r.problems) process.stdout.write(`  - ${visible(p)}\n`);
    return 1;
  } finally {
    cache.close();
  }
}
