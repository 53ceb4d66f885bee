// ES module entry of shmcache/redis: the same classes as the CommonJS build,
// so that `instanceof` holds whichever way the package was loaded.
import cjs from '../dist/redis/index.js';

export const { TieredCache } = cjs;
export default cjs;
