// shmcache with codec 'v8' named: only the object workloads run.
import { open as openCache } from './shmcache.mjs';

export const shared = true;
export const open = (cfg) => openCache({ ...cfg, codec: 'v8' });
