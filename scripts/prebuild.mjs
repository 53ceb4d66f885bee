#!/usr/bin/env node
// Builds the prebuilt addons that ship in the package (run by `npm pack` and
// `npm publish` as the prepack step; `npm run prebuild` runs it alone):
//
//   prebuilds/linux-x64/shmcache.glibc.node     always (this machine)
//   prebuilds/linux-arm64/shmcache.glibc.node   when g++-aarch64-linux-gnu is installed
//
// Each is built by prebuildify against Node-API 8 (NAPI_VERSION in
// binding.gyp), stripped, and tagged with its libc so that node-gyp-build
// never hands a glibc build to a musl system. The build runs in a scratch
// copy of binding.gyp and native/, so a contributor's build/ folder (which
// node-gyp-build prefers) is left as it was.
//
// Environment:
//   SHMCACHE_PREBUILD_ARCHS  comma-separated archs to build (default: this
//                            machine's, plus arm64 when its cross compiler is
//                            found); an arch that cannot be built is an error.
//   SHMCACHE_PREBUILD_OUT    the folder prebuilds/ is written in (default: the
//                            package root).
//   npm_config_nodedir       Node headers to build against (npm passes the
//                            `nodedir` config); else node-gyp downloads the
//                            headers of this Node version.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.resolve(process.env.SHMCACHE_PREBUILD_OUT ?? root);
const cross = { arm64: 'aarch64-linux-gnu-', x64: 'x86_64-linux-gnu-' };

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

const requested = process.env.SHMCACHE_PREBUILD_ARCHS;
const archs = requested
  ? requested.split(',').map((a) => a.trim()).filter(Boolean)
  : [os.arch(), ...(os.arch() !== 'arm64' && has(`${cross.arm64}g++`) ? ['arm64'] : [])];
if (!requested && !archs.includes('arm64')) {
  console.warn('prebuild: no linux-arm64 prebuild (install g++-aarch64-linux-gnu to make one)');
}

// Build against this Node's own headers when they are installed beside it
// (or in node-gyp's cache), so that no download is needed.
if (!process.env.npm_config_nodedir) {
  const v = process.versions.node;
  const candidates = [
    path.dirname(path.dirname(process.execPath)),
    process.config.variables.node_prefix,
    path.join(os.homedir(), '.cache', 'node-gyp', v),
  ].filter(Boolean);
  const headers = candidates.find((dir) => {
    try {
      const h = fs.readFileSync(path.join(dir, 'include', 'node', 'node_version.h'), 'utf8');
      const part = (name) => h.match(new RegExp(`#define NODE_${name}_VERSION (\\d+)`))?.[1];
      return `${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}` === v;
    } catch {
      return false;
    }
  });
  if (headers) process.env.npm_config_nodedir = headers;
}

// This machine's arch goes last: prebuildify leaves it in the scratch build/.
archs.sort((a, b) => (a === os.arch()) - (b === os.arch()));

// Only what is built now ships.
fs.rmSync(path.join(out, 'prebuilds'), { recursive: true, force: true });

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'shmcache-prebuild-'));
try {
  fs.cpSync(path.join(root, 'binding.gyp'), path.join(work, 'binding.gyp'));
  fs.cpSync(path.join(root, 'native'), path.join(work, 'native'), { recursive: true });
  fs.writeFileSync(path.join(work, 'package.json'), JSON.stringify({ name: 'shmcache', private: true }));
  // node-addon-api's include_dir is relative to the build's cwd.
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(work, 'node_modules'));
  const prebuildify = path.join(root, 'node_modules', 'prebuildify', 'bin.js');

  for (const arch of archs) {
    const env = { ...process.env, JOBS: process.env.JOBS ?? String(Math.min(2, os.availableParallelism())) };
    const args = [
      prebuildify,
      '--napi',
      '--strip',
      '--tag-libc',
      `--target=node@${process.versions.node}`,
      `--arch=${arch}`,
      `--out=${out}`,
    ];
    if (arch !== os.arch()) {
      const prefix = cross[arch];
      if (!prefix || !has(`${prefix}g++`)) throw new Error(`prebuild: no cross compiler for ${arch} (${prefix ?? '?'}g++)`);
      Object.assign(env, {
        CC: `${prefix}gcc`,
        CXX: `${prefix}g++`,
        LINK: `${prefix}g++`,
        AR: `${prefix}ar`,
      });
      args.push(`--strip-bin=${prefix}strip`);
    }
    console.log(`prebuild: linux-${arch}`);
    execFileSync(process.execPath, args, { cwd: work, env, stdio: 'inherit' });
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}

for (const dir of fs.readdirSync(path.join(out, 'prebuilds')).sort()) {
  for (const file of fs.readdirSync(path.join(out, 'prebuilds', dir))) {
    const full = path.join(out, 'prebuilds', dir, file);
    console.log(`prebuild: ${path.relative(out, full)} (${fs.statSync(full).size} bytes)`);
  }
}
