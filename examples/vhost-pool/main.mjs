// node examples/vhost-pool/main.mjs  (as root)
// Starts two sites, each in its own jail under its own uid, two workers each,
// and prints where they serve. Ctrl-C stops them.
import { chownSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Supervisor } from './supervisor.mjs';

const base = mkdtempSync(join(tmpdir(), 'vhosts-'));
function makeJail(site, uid) {
  const root = join(base, site);
  mkdirSync(join(root, 'var', 'cache'), { recursive: true, mode: 0o755 });
  chownSync(join(root, 'var', 'cache'), uid, uid);
  return root;
}

const supervisor = new Supervisor();
for (const [name, uid] of [['site-a', 3001], ['site-b', 3002]]) {
  const port = await supervisor.startTenant({ name, root: makeJail(name, uid), uid, gid: uid, workers: 2 });
  console.log(`${name}: http://127.0.0.1:${port}/incr?key=hits  (pids ${supervisor.pids(name).join(', ')})`);
}
process.on('SIGINT', async () => {
  await supervisor.stopAll();
  process.exit(0);
});
