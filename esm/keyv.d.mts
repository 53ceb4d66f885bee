export { KeyvShmcache } from '../dist/keyv.js';
export type * from '../dist/keyv.js';
import type * as keyv from '../dist/keyv.js';
declare const cjs: typeof keyv;
export default cjs;
