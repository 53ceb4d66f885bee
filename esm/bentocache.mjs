// ES module entry of shmcache/bentocache: the same driver as the CommonJS
// build, so that `instanceof` holds whichever way the package was loaded.
import cjs from '../dist/bentocache.js';

export const { shmcacheDriver, ShmcacheDriver } = cjs;
export default cjs;
