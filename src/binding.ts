import * as fs from 'node:fs';
import * as path from 'node:path';
import { ShmCacheError } from './errors';

/** What the addon's open() reports. */
export interface OpenInfo {
  created: boolean;
  reset: boolean;
  size: number;
  maxValue: number;
  /** Mapped without write access (a read-only file or mount). */
  readOnly: boolean;
}

/** The addon's cache handle. Internal: arguments arrive checked. */
export interface NativeCache {
  /** stampMode: 0 never, 1 explicit, 2 process group. */
  open(
    path: string,
    size: number,
    create: boolean,
    stamp: number,
    stampMode: number,
    leaderPid: number,
    leaderStart: number,
    lockWaitMs: number,
    createFolder: boolean,
    readOnly: boolean,
  ): OpenInfo;
  setBuffers(key: Buffer, out: Buffer, value: Buffer): void;
  setPool(pool: Buffer): void;
  /** The mapping, and the byte offset of this handle's memo hit counter (-1: none). */
  memoView(): [ArrayBuffer, number];
  get(keyLength: number, poolOffset: number): number | string;
  has(keyLength: number): boolean;
  /** value: a Buffer holding the value, or a string the addon encodes (valueLength is then ignored). */
  set(keyLength: number, type: number, valueLength: number, ttl: number, onlyIfAbsent: boolean, value?: Buffer | string): number;
  delete(keyLength: number): boolean;
  incr(keyLength: number, by: number, initial: number, ttl: number): number;
  cas(keyLength: number, expected: number, next: number): number;
  claim(keyLength: number): number;
  release(keyLength: number): boolean;
  keys(prefixLength: number): string[];
  clear(): void;
  stats(): Record<string, number>;
  verify(): string[];
  close(): void;
  // Batches, peek, info, touch, scan (native/batch.cc). A batch of keys is
  // packed as a u16 byte length (LE) and the UTF-8 bytes, key after key.
  /** Reads `count` keys from `byteOffset`; results[2i] get()'s code (-1 miss, length * 8 + type, <= -2 needs that pool), results[2i+1] the pool offset. Returns the keys read. */
  getMany(batch: Buffer, byteOffset: number, count: number, poolOffset: number, results: Float64Array): number;
  /** Entries packed as u16 key length, u8 type, u8 pad, u32 value length, key, value; all checked before any is stored. */
  setMany(batch: Buffer, count: number, ttl: number): void;
  deleteMany(batch: Buffer, count: number): number;
  /** get()'s results without marking or counting. */
  peek(keyLength: number, poolOffset: number): number | string;
  /** -1 missing, 0 no expiry, else ms left. */
  ttl(keyLength: number): number;
  /** [type, value bytes, ttl as ttl()], or undefined when missing. */
  info(keyLength: number): [number, number, number] | undefined;
  touch(keyLength: number, ttl: number): boolean;
  /** [next cursor (-1: shard done), records, bytes needed, shards]; the prefix is in the key buffer. */
  scan(shard: number, cursor: number, prefixLength: number, buffer: Buffer): [number, number, number, number];
  count(): number;
}

export interface Binding {
  NativeCache: new () => NativeCache;
  setErrorClass(cls: typeof ShmCacheError): void;
  setClockOffset(ms: number): void;
  noop(): void;
  lockedReads(): number;
  shardOf(key: string, shards: number): number;
  jail(root: string, uid: number, gid: number): void;
  abiVersion: number;
}

/** The package folder: node-gyp-build looks in its build/Release, then its prebuilds/. */
const root = path.join(__dirname, '..');

interface NodeGypBuild {
  (dir: string): unknown;
  /** The addon file that would load: build/Release first, then a matching prebuild; throws when none. */
  resolve(dir: string): string;
}

/**
 * Loads the addon: a freshly compiled build/Release/shmcache.node wins (a
 * contributor's build, or the fallback compile of `npm install`), else the
 * prebuild for this platform, arch and libc that ships in the package
 * (prebuilds/linux-x64/shmcache.glibc.node). If a compiled addon is
 * there but fails to load (copied from another machine, say), the matching
 * prebuild is tried before giving up.
 */
function load(): Binding {
  let binding: Binding;
  let file: string | undefined;
  try {
    const nodeGypBuild = require('node-gyp-build') as NodeGypBuild;
    file = nodeGypBuild.resolve(root);
    try {
      binding = require(file) as Binding;
    } catch (err) {
      const prebuild = prebuildFor(libc());
      if (!file.startsWith(path.join(root, 'build') + path.sep) || prebuild === undefined) throw err;
      binding = require(prebuild) as Binding;
      process.emitWarning(
        `shmcache: ${file} could not be loaded (${(err as Error).message.split('\n')[0]}); using the prebuilt ${prebuild}`,
      );
    }
  } catch (err) {
    throw new ShmCacheError('ERR_SHMCACHE_IO', loadFailure(err, file), { cause: err });
  }
  binding.setErrorClass(ShmCacheError);
  return binding;
}

/** The prebuild for this platform and arch whose libc tag (if it has one) is `kind`. */
function prebuildFor(kind: string): string | undefined {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch {
    return undefined;
  }
  const name = names.find((n) => {
    const tags = n.split('.');
    return tags.pop() === 'node' && !tags.some((t) => (t === 'glibc' || t === 'musl') && t !== kind);
  });
  return name === undefined ? undefined : path.join(dir, name);
}

function exists(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** 'glibc' or 'musl', as node-gyp-build tells them apart (LIBC, else Alpine's marker file). */
function libc(): string {
  return process.env.LIBC ?? (exists('/etc/alpine-release') ? 'musl' : 'glibc');
}

/** What was looked for, what was found, and what to run. */
function loadFailure(err: unknown, file: string | undefined): string {
  const list = (dir: string, depth: number): string[] => {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      return [];
    }
    return names.flatMap((n) => {
      const sub = path.join(dir, n);
      const isDir = depth > 0 && fs.statSync(sub, { throwIfNoEntry: false })?.isDirectory();
      return isDir ? list(sub, depth - 1).map((m) => `${n}/${m}`) : [n];
    });
  };
  const prebuilds = list(path.join(root, 'prebuilds'), 1);
  const built = list(path.join(root, 'build', 'Release'), 0).filter((n) => n.endsWith('.node'));
  let glibc: string | undefined;
  try {
    glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
      ?.glibcVersionRuntime;
  } catch {}
  const kind = libc();
  const target =
    `${process.platform}-${process.arch}, ${kind}${kind === 'glibc' && glibc ? ` ${glibc}` : ''}, ` +
    `Node.js ${process.versions.node} (Node-API ${process.versions.napi ?? '?'}, ABI ${process.versions.modules})`;
  const reason = (err as Error)?.message?.split('\n')[0] ?? String(err);
  return [
    `shmcache: the native addon could not be loaded.`,
    `  looked for: build/Release/shmcache.node, or prebuilds/${process.platform}-${process.arch}/shmcache.${kind}.node, in ${root}`,
    `  this system: ${target}`,
    `  found: build/Release: ${built.join(', ') || 'nothing'}; prebuilds: ${prebuilds.join(', ') || 'nothing'}`,
    file ? `  ${file} failed: ${reason}` : `  ${reason}`,
    `The prebuilt addons are for linux-x64 and linux-arm64 with glibc 2.34 or newer and Node-API 8 (Node.js 20 or newer).`,
    `Anywhere else, compile one: run \`npm rebuild shmcache\` (it needs python3, make and g++), then try again.`,
  ].join('\n');
}

/** Loaded once when the package loads: before any chroot, as it must be. */
export const binding: Binding = load();
