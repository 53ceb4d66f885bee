// shmcache with the option `memo` on in every process: a string a process
// has read once comes back from its own memory, after a check in the segment
// that its entry is still the live one. Off by default (it costs process
// memory, and other values one more lookup); only get100 and mixed run.
import { open as openCache } from './shmcache.mjs';

export const shared = true;
export const open = (cfg) => openCache({ ...cfg, memo: '32MB' });
