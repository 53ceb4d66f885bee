// One worker of a tenant's pool. It loads everything it needs, makes its
// cache (nothing is opened yet), jails itself into the tenant's root under the
// tenant's uid/gid, and only then opens the cache: /var/cache/<tenant>.shm
// inside the jail, a 0600 file of the tenant's uid.
//   GET /get?key=k  /set?key=k&value=v  /incr?key=k  /stats
import http from 'node:http';
import { jail, tenantCache } from 'shmcache';

const { name, root, uid, gid, cacheDir } = JSON.parse(process.argv[2]);
const cache = tenantCache(name, { dir: cacheDir, size: '8MB' });
try {
  jail({ root, uid, gid });
  cache.open();
} catch (err) {
  process.send({ error: `${err.code}: ${err.message}` });
  process.exit(1);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const key = url.searchParams.get('key') ?? '';
  let body;
  try {
    if (url.pathname === '/get') body = { value: cache.get(key) ?? null };
    else if (url.pathname === '/set') body = { ok: (cache.set(key, url.searchParams.get('value') ?? ''), true) };
    else if (url.pathname === '/incr') body = { value: cache.incr(key) };
    else if (url.pathname === '/stats') body = { ...cache.stats(), pid: process.pid, uid: process.getuid() };
    else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'x-worker-pid': String(process.pid) });
    res.end(JSON.stringify(body));
  } catch (err) {
    res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err.code }));
  }
});

// Connections arrive from the supervisor, already accepted.
process.on('message', (m, socket) => {
  if (m === 'connection' && socket) {
    server.emit('connection', socket);
    socket.resume();
  }
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
});
// The supervisor is gone: so is its pool.
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
