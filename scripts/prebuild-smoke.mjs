#!/usr/bin/env node
// Smoke test of a built package on this machine's Node, or (under
// qemu-user) on another arch's: loads shmcache from the package folder given
// (dist/ and a prebuild, no build/ folder needed), then stores, reads,
// counts, verifies and reads strings back through the memo, whose loads on
// arm64 are the ordered (Atomics) ones.
//
//   node scripts/prebuild-smoke.mjs <package dir> <segment file> write|read
//
// `write` sets the values and prints "wrote"; `read`, run as another
// process afterwards, checks it sees them and prints "read ok". Exit code 0
// when everything held. scripts/prebuild-arm64.sh runs it under
// qemu-aarch64-static with Debian's arm64 nodejs.
import { createRequire } from 'node:module';
import * as path from 'node:path';

const [dir, file, mode] = process.argv.slice(2);
if (!dir || !file || (mode !== 'write' && mode !== 'read')) {
  console.error('usage: prebuild-smoke.mjs <package dir> <segment file> write|read');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(dir), 'package.json'));
const { Cache } = require('./dist/index.js');

function check(ok, what) {
  if (!ok) {
    console.error(`smoke: ${what} failed`);
    process.exit(1);
  }
}

const cache = new Cache({ path: file, size: '1MB', memo: 1 << 20, stamp: false });
if (mode === 'write') {
  cache.set('greeting', 'hello from ' + process.arch);
  cache.set('object', { list: [1, 2, 3], nested: { ok: true } });
  check(cache.incr('counter', 5) === 5, 'incr');
  for (let i = 0; i < 200; i++) cache.set(`k${i}`, 'v'.repeat(i));
  console.log('wrote');
} else {
  check(typeof cache.get('greeting') === 'string' && cache.get('greeting').startsWith('hello from'), 'get string');
  check(cache.get('object')?.nested?.ok === true, 'get object');
  check(cache.incr('counter') === 6, 'incr across processes');
  for (let i = 0; i < 200; i++) check(cache.get(`k${i}`) === 'v'.repeat(i), `get k${i}`);
  // Memo hits, then a change in the kept entries' pages: the memo must see it.
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 200; i++) check(cache.get(`k${i}`) === 'v'.repeat(i), `memo get k${i}`);
  }
  for (let i = 0; i < 200; i += 2) cache.set(`k${i}`, 'w'.repeat(i));
  for (let i = 0; i < 200; i++) check(cache.get(`k${i}`) === (i % 2 ? 'v' : 'w').repeat(i), `memo after set k${i}`);
  cache.delete('k1');
  check(cache.get('k1') === undefined, 'memo after delete');
  const { ok, problems } = cache.verify();
  check(ok, `verify (${problems.join('; ')})`);
  console.log(`read ok (${process.arch}, Node ${process.version})`);
}
cache.close();
