// The published package as a user gets it: `npm pack` of the working tree
// (its prepack step builds the prebuilt addons), installed into fresh
// projects with a PATH that holds node and npm only (no compiler, python3 or
// make), with install scripts off and on; and the tarball's file list.
// One tarball is packed for the whole file (the prepack compiles the addon).
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixtures, tempDir } from './helpers';

const repo = join(__dirname, '..');
const segments = tempDir('shmcache-package-');
/** Top-level entries of the working tree not copied for packing: build products and local state. */
const notCopied = new Set(['.git', 'node_modules', 'build', 'prebuilds', 'dist', '.vitest-temp']);
/** The glibc the prebuilds may need at most (README, "Install"). */
const GLIBC_DOCUMENTED = [2, 34];

interface PackInfo {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

let work: string;
let bin: string;
let tarball: string;
let pack: PackInfo;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command without the outer npm run's npm_* variables, and with PATH =
 * node, npm and sh only (a user's machine without a compiler), unless `path` is given.
 */
function run(cmd: string, args: string[], cwd: string, timeout = 120_000, path = bin, extra: NodeJS.ProcessEnv = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...extra };
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_/i.test(k) && k !== 'INIT_CWD' && k !== 'NODE_OPTIONS' && !k.startsWith('VITEST')) env[k] = v;
  }
  env.PATH = path;
  env.npm_config_update_notifier = 'false';
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env, timeout, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function npmCli(): string {
  if (process.env.npm_execpath && /npm-cli\.js$/.test(process.env.npm_execpath)) return process.env.npm_execpath;
  return realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
}

/** A fresh project with the tarball installed (scripts on or off) and the fixtures copied in. */
async function installInto(name: string, scripts: boolean): Promise<{ dir: string; install: Run }> {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true, version: '1.0.0' }));
  const args = ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'];
  args.push(scripts ? '--dangerously-allow-all-scripts' : '--ignore-scripts');
  const install = await run(join(bin, 'npm'), args, dir);
  for (const f of readdirSync(fixtures).filter((f) => f.startsWith('package-'))) cpSync(join(fixtures, f), join(dir, f));
  return { dir, install };
}

/** The highest GLIBC_x.y symbol version an ELF file asks for. */
function glibcNeeded(file: string): number[] {
  const versions = [...readFileSync(file).toString('latin1').matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
  return versions.reduce((a, b) => (b[0]! > a[0]! || (b[0] === a[0] && b[1]! > a[1]!) ? b : a), [0, 0]);
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'shmcache-package-'));
  bin = join(work, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync(npmCli(), join(bin, 'npm'));
  // npm runs scripts with `sh` from PATH; a shell is no compiler.
  symlinkSync('/bin/sh', join(bin, 'sh'));

  // A copy of the working tree (minus build products), packed as `npm pack`
  // would pack it: prepack builds the prebuilds, prepare compiles dist/.
  const src = join(work, 'src');
  cpSync(repo, src, {
    recursive: true,
    filter: (from) => {
      const rel = relative(repo, from);
      return !notCopied.has(rel.split('/')[0]!) && !rel.startsWith('bench/results') && !/\.(tgz|log)$/.test(rel);
    },
  });
  symlinkSync(join(repo, 'node_modules'), join(src, 'node_modules'));
  // The maintainer's side: this one needs the compiler (the caller's PATH).
  // Only this machine's prebuild, to compile once; scripts/prebuild-arm64.sh
  // builds and smoke-tests the arm64 one.
  const packed = await run(join(bin, 'npm'), ['pack', '--json', '--pack-destination', work], src, 240_000, `${bin}:${process.env.PATH}`, {
    SHMCACHE_PREBUILD_ARCHS: process.arch,
  });
  if (packed.code !== 0) throw new Error(`npm pack failed:\n${packed.stderr}\n${packed.stdout}`);
  // Scripts' output comes first; the JSON array is the rest.
  const start = packed.stdout.search(/^\[\s*\{/m);
  pack = (JSON.parse(packed.stdout.slice(start)) as PackInfo[])[0]!;
  tarball = join(work, pack.filename);
}, 300_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('holds the runtime, the prebuilds, the docs and the licence, and no tests, bench results or build intermediates', () => {
    const files = pack.files.map((f) => f.path).sort();
    for (const wanted of [
      'package.json',
      'README.md',
      'LICENSE',
      'CHANGELOG.md',
      'binding.gyp',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/binding.js',
      'esm/index.mjs',
      'esm/index.d.mts',
      'native/binding.cc',
      'native/segment.h',
      'examples/two-processes.mjs',
      `prebuilds/linux-${process.arch}/shmcache.glibc.node`,
    ]) {
      expect(files, wanted).toContain(wanted);
    }
    const forbidden = files.filter(
      (f) =>
        (/^(test|bench|build|src|scripts|node_modules|\.vitest-temp|\.ci)\//.test(f) && !f.startsWith('src/server/static/')) ||
        /(^|\/)obj(\.target)?\//.test(f) ||
        /\.(o|a|d|mk|tgz|log|tsbuildinfo)$/.test(f) ||
        /(^|\/)(Makefile|config\.gypi)$/.test(f),
    );
    expect(forbidden).toEqual([]);
    // Only one .node per platform folder, and each under prebuilds/.
    expect(files.filter((f) => f.endsWith('.node')).every((f) => /^prebuilds\/linux-(x64|arm64)\/shmcache\.glibc\.node$/.test(f))).toBe(true);
    expect(pack.size).toBeLessThan(1 << 20);
  });

  it("has every file the README links to", () => {
    const files = new Set(pack.files.map((f) => f.path));
    const readme = readFileSync(join(repo, 'README.md'), 'utf8');
    const links = [...readme.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l));
    expect(links.length).toBeGreaterThan(3);
    for (const link of links) {
      const path = link.replace(/^\.\//, '').replace(/\/$/, '');
      expect([...files].some((f) => f === path || f.startsWith(path + '/')), link).toBe(true);
    }
  });
});

describe('installed from the tarball with no compiler, python3 or make on PATH', () => {
  let plain: { dir: string; install: Run };
  let scripted: { dir: string; install: Run };

  beforeAll(async () => {
    [plain, scripted] = await Promise.all([installInto('app-ignore-scripts', false), installInto('app-scripts', true)]);
  }, 180_000);

  it('with --ignore-scripts: require() and import() load the prebuild and two processes share a value', async () => {
    expect(plain.install.code, plain.install.stderr).toBe(0);
    const pkg = join(plain.dir, 'node_modules', 'shmcache');
    expect(existsSync(join(pkg, 'build'))).toBe(false);
    const r = await run(join(bin, 'node'), ['package-share.mjs', 'parent', segments.file()], plain.dir);
    expect(r.code, r.stderr).toBe(0);
    const msg = JSON.parse(r.stdout);
    expect(realpathSync(msg.entry)).toBe(realpathSync(join(pkg, 'dist', 'index.js')));
    expect(realpathSync(msg.addon)).toBe(realpathSync(join(pkg, 'prebuilds', `linux-${process.arch}`, 'shmcache.glibc.node')));
    expect(msg.child.greeting).toEqual({ from: 'parent', pid: expect.any(Number) });
    expect(msg.visits).toBe(2);
  });

  it('with install scripts on: the install script runs, finds the prebuild and compiles nothing', async () => {
    expect(scripted.install.code, scripted.install.stderr + scripted.install.stdout).toBe(0);
    // --foreground-scripts prints the script as it runs: it ran, and succeeded without a compiler.
    expect(scripted.install.stdout).toMatch(/shmcache@[^\n]* install\n> node-gyp-build/);
    const pkg = join(scripted.dir, 'node_modules', 'shmcache');
    expect(existsSync(join(pkg, 'build'))).toBe(false);
    const r = await run(join(bin, 'node'), ['package-share.mjs', 'parent', segments.file()], scripted.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).visits).toBe(2);
  });

  it(`the prebuild needs glibc ${GLIBC_DOCUMENTED.join('.')} at most, as the README says`, () => {
    const dir = join(plain.dir, 'node_modules', 'shmcache', 'prebuilds');
    for (const arch of readdirSync(dir)) {
      const needed = glibcNeeded(join(dir, arch, 'shmcache.glibc.node'));
      expect(needed[0]! * 1000 + needed[1]!, arch).toBeLessThanOrEqual(GLIBC_DOCUMENTED[0]! * 1000 + GLIBC_DOCUMENTED[1]!);
    }
    expect(readFileSync(join(repo, 'README.md'), 'utf8')).toContain(`glibc ${GLIBC_DOCUMENTED.join('.')}`);
  });

  it('without a matching prebuild, loading fails with ERR_SHMCACHE_IO saying what was looked for, what was found and what to run', async () => {
    const dir = join(work, 'app-no-prebuild');
    cpSync(plain.dir, dir, { recursive: true, verbatimSymlinks: true });
    rmSync(join(dir, 'node_modules', 'shmcache', 'prebuilds', `linux-${process.arch}`), { recursive: true });
    const r = await run(join(bin, 'node'), ['package-load.mjs'], dir);
    expect(r.code, r.stderr).toBe(0);
    const msg = JSON.parse(r.stdout);
    expect(msg).toMatchObject({ name: 'ShmCacheError', code: 'ERR_SHMCACHE_IO' });
    expect(msg.cause).toMatch(/No native build was found/);
    expect(msg.message).toContain(`linux-${process.arch}, glibc`);
    expect(msg.message).toContain(`Node-API ${process.versions.napi}`);
    expect(msg.message).toContain('build/Release: nothing');
    expect(msg.message).toMatch(/prebuilds: (nothing|linux-\w+\/shmcache\.glibc\.node)/);
    expect(msg.message).toContain('npm rebuild shmcache');
    expect(msg.message).toMatch(/python3, make and g\+\+/);
  });
});

describe.runIf(process.arch === 'x64' && process.getuid?.() === 0)('the linux-arm64 prebuild', () => {
  it('cross-compiles and runs under qemu: two arm64 processes share values, count, read through the memo and verify', async () => {
    // scripts/prebuild-arm64.sh: Debian's aarch64 cross compiler and
    // qemu-user-static (.ci/run installs them when missing), and Debian's
    // arm64 nodejs unpacked into a private root (the script fetches it).
    const r = await run('bash', [join(repo, 'scripts', 'prebuild-arm64.sh')], repo, 600_000, process.env.PATH!);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/Machine:\s+AArch64/);
  }, 620_000);
});
