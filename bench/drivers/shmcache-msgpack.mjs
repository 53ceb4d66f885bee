// shmcache with codec 'msgpack' (the default codec is 'v8'): only the
// object workloads run.
import { open as openCache } from './shmcache.mjs';

export const shared = true;
export const open = (cfg) => openCache({ ...cfg, codec: 'msgpack' });
