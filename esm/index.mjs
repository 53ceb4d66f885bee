// ES module entry: the same classes as the CommonJS build, so that
// `instanceof ShmCacheError` holds whichever way the package was loaded.
import cjs from '../dist/index.js';

export const { Cache, ShmCacheError, jail, tenantCache } = cjs;
export default cjs;
