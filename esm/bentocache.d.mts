export { shmcacheDriver, ShmcacheDriver } from '../dist/bentocache.js';
export type * from '../dist/bentocache.js';
import type * as bentocache from '../dist/bentocache.js';
declare const cjs: typeof bentocache;
export default cjs;
