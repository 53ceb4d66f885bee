// lmdb: memory-mapped KV store shared by processes; noSync + useWritemap on
// /dev/shm, its fastest settings. Writes are synchronous (putSync), visible to
// other processes at once like shmcache's.
import { open as openLmdb } from 'lmdb';

export const shared = true;
export function open({ path }) {
  const db = openLmdb({ path, noSync: true, useWritemap: true, mapSize: 2 * 1024 ** 3 });
  return {
    get: (k) => db.get(k),
    set: (k, v) => db.putSync(k, v),
    close: () => db.close(),
  };
}
