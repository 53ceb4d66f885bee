export { Cache, ShmCacheError, jail, tenantCache } from '../dist/index.js';
export type * from '../dist/index.js';
import type * as shmcache from '../dist/index.js';
declare const cjs: typeof shmcache;
export default cjs;
