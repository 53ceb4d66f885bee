// The benchmark's own dependencies (bench/package.json): peers that compile
// from source, such as better-sqlite3, stay out of the project's `npm ci`
// and are installed here, once, on the first run that needs them.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** Installs bench/node_modules from bench/package-lock.json when `name` is missing there. */
export function ensureBenchDependency(name) {
  if (existsSync(join(here, 'node_modules', name, 'package.json'))) return;
  console.log(`bench: installing the benchmark's own dependencies (${name} compiles from source: a few minutes) into bench/node_modules; this happens once`);
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: here, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`npm ci in ${here} failed (exit ${r.status})`);
}
