export { TieredCache } from '../dist/redis/index.js';
export type * from '../dist/redis/index.js';
import type * as tier from '../dist/redis/index.js';
declare const cjs: typeof tier;
export default cjs;
