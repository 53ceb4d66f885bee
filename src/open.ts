import * as path from 'node:path';
import { binding, type NativeCache, type OpenInfo } from './binding';
import type { ResolvedOptions } from './options';
import { processGroup } from './stamps';

const DEFAULT_LOCK_WAIT_MS = 30_000;
const STAMP_MODES = { never: 0, explicit: 1, group: 2 } as const;

/** How long open() retries the segment's file lock: `SHMCACHE_LOCK_TIMEOUT_MS` or 30 s. */
function lockWaitMs(): number {
  const env = process.env.SHMCACHE_LOCK_TIMEOUT_MS;
  const n = env === undefined ? NaN : Number(env);
  return Number.isSafeInteger(n) && n >= 0 ? n : DEFAULT_LOCK_WAIT_MS;
}

/**
 * Caches made by tenantCache(): their folder is made (0700) at first use
 * when missing.
 */
export const makesItsFolder = new WeakSet<object>();

/**
 * Opens (or creates) the segment of `options` in a new native handle: the
 * path resolved against the working directory now (inside a jail, the
 * jail's), then the file rules, the file lock, creation and the stamp rule,
 * all in the addon (native/segment.cc, native/attach.cc; docs/design.md,
 * "Opening a segment").
 */
export function openSegment(options: ResolvedOptions<unknown>, createFolder: boolean): { native: NativeCache; file: string; info: OpenInfo } {
  const file = path.resolve(options.path);
  const native = new binding.NativeCache();
  const info = native.open(
    file,
    options.size,
    options.create,
    options.stamp === false ? 0 : options.stamp,
    STAMP_MODES[options.stampMode],
    processGroup.leaderPid,
    processGroup.leaderStart,
    lockWaitMs(),
    createFolder,
    options.readOnly,
  );
  return { native, file, info };
}
