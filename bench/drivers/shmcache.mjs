// shmcache: one segment on /dev/shm shared by every process of a trial.
import { Cache } from '../../esm/index.mjs';

export const shared = true;
export function open({ path, size = '256MB', memo = 0, codec }) {
  const cache = new Cache({ path, size, stamp: false, memo, ...(codec ? { codec } : {}) });
  return {
    get: (k) => cache.get(k),
    set: (k, v) => cache.set(k, v),
    close: () => cache.close(),
  };
}
