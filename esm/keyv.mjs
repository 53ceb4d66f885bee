// ES module entry of shmcache/keyv: the same class as the CommonJS build, so
// that `instanceof` holds whichever way the package was loaded.
import cjs from '../dist/keyv.js';

export const { KeyvShmcache } = cjs;
export default cjs;
