// The binding floor: one call into the shmcache addon that does nothing.
import { nativeNoop } from '../../dist/testing.js';

export const shared = false;
export function open() {
  return { get: () => nativeNoop(), set: () => nativeNoop(), close() {} };
}
