// How much of a full segment holds key and value bytes, with 100-byte values.
// argv: JSON { path, size }. Prints { ratio, entries, size }.
import { Cache } from '../esm/index.mjs';

const { path, size = '64MB' } = JSON.parse(process.argv[2]);
const cache = new Cache({ path, size, stamp: false });
const value = 'v'.repeat(100);
let i = 0;
while (cache.stats().evictions === 0) for (let j = 0; j < 1000; j++, i++) cache.set(`f:${i}`, value);
// Keep writing as much again: the steady state of a full cache.
const more = i;
for (let j = 0; j < more; j++, i++) cache.set(`f:${i}`, value);
const stats = cache.stats();
let kvBytes = 0;
for (const k of cache.keys()) kvBytes += Buffer.byteLength(k) + value.length;
cache.close();
console.log(JSON.stringify({ ratio: kvBytes / stats.size, entries: stats.entries, size: stats.size }));
