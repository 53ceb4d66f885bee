// examples/two-processes.mjs: node examples/two-processes.mjs
import { fork } from 'node:child_process';
import { Cache } from 'shmcache';

const cache = new Cache({ path: '/dev/shm/example.shm', size: '16MB' });

if (process.argv[2] !== 'child') {
  cache.set('config', { theme: 'dark', features: ['a', 'b'] }, { ttl: 60_000 });
  cache.incr('visits');
  const child = fork(new URL(import.meta.url).pathname, ['child']);
  child.on('exit', () => {
    console.log('parent sees visits =', cache.get('visits')); // 2
    console.log(cache.stats().hits, 'hits across both processes');
    cache.close();
  });
} else {
  console.log('child reads', cache.get('config')); // { theme: 'dark', ... }
  cache.incr('visits'); // atomic across processes
  cache.close();
}
