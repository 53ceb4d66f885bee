import { attach } from './attach';
import { bytes, count, json, painter, visible, wantsColour } from './format';
import { LARGE_BYTES, LARGE_ENTRIES, Progress } from './progress';

/**
 * Walks every structure of the segment (Cache.verify(): what it finds
 * damaged is dropped). Exit 1 when it found problems.
 */
export function verifyCommand(path: string, opts: { json?: boolean }): number {
  const cache = attach(path);
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
      process.stdout.write(json({ path: s.path, ...r }) + '\n');
      return r.ok ? 0 : 1;
    }
    const paint = painter(wantsColour(process.stdout));
    const where = `${visible(s.path)} (${bytes(s.size)}, ${count(s.entries)} entries, ${((Date.now() - started) / 1000).toFixed(1)} s)`;
    if (r.ok) {
      process.stdout.write(`${paint('ok', 'green')}: no problems in ${where}\n`);
      return 0;
    }
    process.stdout.write(`${paint(`${r.problems.length} ${r.problems.length === 1 ? 'problem' : 'problems'}`, 'red')} in ${where}; what they touched was dropped:\n`);
    for (const p of r.problems) process.stdout.write(`  - ${visible(p)}\n`);
    return 1;
  } finally {
    cache.close();
  }
}
