// A small supervisor for per-site worker pools: each tenant gets its own
// listening socket on loopback, its own pool of jailed workers (chroot + its
// own uid/gid) and, through them, its own cache file inside its jail.
// Crashed workers are restarted. Stopping or restarting a tenant touches
// only the processes that tenant's pool started, found by the pids it
// recorded, never by executable name.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const workerScript = fileURLToPath(new URL('./worker.mjs', import.meta.url));

export class Supervisor {
  #tenants = new Map();

  /**
   * Starts a tenant: { name, root, uid, gid, workers = 2, cacheDir = '/var/cache', host = '127.0.0.1', port = 0 }.
   * Resolves to the port it serves on.
   */
  async startTenant(config) {
    const { name, workers = 2, host = '127.0.0.1', port = 0 } = config;
    if (this.#tenants.has(name)) throw new Error(`tenant ${name} is already running`);
    // The supervisor accepts and hands each connection to the next ready
    // worker of the tenant (round robin), as cluster does.
    const server = net.createServer({ pauseOnConnect: true });
    const tenant = { config: { cacheDir: '/var/cache', ...config }, server, pool: new Map(), ready: [], next: 0, stopping: false, restarts: 0 };
    server.on('connection', (socket) => {
      const live = tenant.ready.filter((c) => c.connected);
      if (live.length === 0) return socket.destroy();
      live[tenant.next++ % live.length].send('connection', socket);
    });
    server.listen({ host, port });
    await once(server, 'listening');
    this.#tenants.set(name, tenant);
    await Promise.all(Array.from({ length: workers }, () => this.#spawn(tenant)));
    return server.address().port;
  }

  #spawn(tenant) {
    const { name, root, uid, gid, cacheDir } = tenant.config;
    const child = fork(workerScript, [JSON.stringify({ name, root, uid, gid, cacheDir })], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: [], // not the parent's flags (a test runner's, say)
    });
    tenant.pool.set(child.pid, child);
    child.on('exit', () => {
      tenant.pool.delete(child.pid);
      tenant.ready = tenant.ready.filter((c) => c !== child);
      if (!tenant.stopping) {
        tenant.restarts++;
        // Restart a crashed worker (not in a tight loop if it keeps dying).
        setTimeout(() => {
          if (!tenant.stopping) this.#spawn(tenant).catch((err) => console.error(`restart of ${name} failed: ${err.message}`));
        }, Math.min(1000, 50 * tenant.restarts));
      }
    });
    return new Promise((resolve, reject) => {
      child.once('message', (m) => {
        if (m?.ready) {
          tenant.ready.push(child);
          resolve(child.pid);
        } else {
          reject(new Error(`worker of ${name} failed: ${m?.error}`));
        }
      });
      child.once('exit', (code) => reject(new Error(`worker of ${name} exited with ${code}`)));
    }).catch((err) => {
      if (!tenant.stopping) throw err;
    });
  }

  /** The pids of a tenant's workers. */
  pids(name) {
    const tenant = this.#tenants.get(name);
    return tenant ? [...tenant.pool.keys()] : [];
  }

  /** Stops one tenant: its workers (by the pids it started) and its socket. */
  async stopTenant(name, { graceMs = 2000 } = {}) {
    const tenant = this.#tenants.get(name);
    if (!tenant) return;
    tenant.stopping = true;
    const children = [...tenant.pool.values()];
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }),
    );
    tenant.server.close();
    this.#tenants.delete(name);
  }

  /** Stops and starts one tenant again on the same port. */
  async restartTenant(name) {
    const tenant = this.#tenants.get(name);
    if (!tenant) throw new Error(`no tenant ${name}`);
    const port = tenant.server.address().port;
    const config = { ...tenant.config, port };
    await this.stopTenant(name);
    return this.startTenant(config);
  }

  async stopAll() {
    await Promise.all([...this.#tenants.keys()].map((n) => this.stopTenant(n)));
  }
}
