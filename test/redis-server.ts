// Real redis-server processes for the tier's tests: a standalone server or a
// 3-master Cluster on free loopback ports, persistence off, config files in a
// temp dir, always stopped in afterAll (also when a test failed), and killed
// if the test process exits without it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

export const HOST = '127.0.0.1';
export const hasRedis = spawnSync('redis-server', ['--version']).status === 0;

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, HOST, () => s.close(() => resolve(true)));
  });
}

/** A free port (and port + 10000, a Cluster node's bus port, free too). */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 25000);
    if ((await portIsFree(port)) && (await portIsFree(port + 10000))) return port;
  }
  throw new Error('no free port found');
}

export class RedisServer {
  readonly port: number;
  readonly dir: string;
  readonly args: string[];
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  constructor(port: number, dir: string, args: string[] = []) {
    this.port = port;
    this.dir = dir;
    this.args = args;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the server and resolves once it accepts connections. */
  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', this.dir, '--loglevel', 'warning', ...this.args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#child = child;
    const kill = (): void => {
      try {
        child.kill('SIGKILL');
      } catch {}
    };
    process.once('exit', kill);
    this.#exited = new Promise((resolve) =>
      child.once('exit', () => {
        process.off('exit', kill);
        resolve();
      }),
    );
    let log = '';
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const deadline = Date.now() + 10_000;
    while (!this.ping()) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server on ${this.port} did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** redis-cli against this server. */
  cli(...args: string[]): string {
    const r = spawnSync('redis-cli', ['-h', HOST, '-p', String(this.port), ...args], { encoding: 'utf8', timeout: 5000 });
    return (r.stdout ?? '').trim();
  }

  ping(): boolean {
    return this.cli('ping') === 'PONG';
  }

  signal(sig: NodeJS.Signals): void {
    this.#child?.kill(sig);
  }

  /** SIGKILL, and resolves once it is gone. */
  async kill(): Promise<void> {
    const c = this.#child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGCONT');
    c.kill('SIGKILL');
    await this.#exited;
  }

  async stop(): Promise<void> {
    await this.kill();
  }
}

/**
 * A standalone server for the calling describe block: started in beforeAll,
 * stopped and its folder removed in afterAll (hooks registered now, at
 * collection: a hook registered from inside another hook never runs).
 */
export function useRedis(): { readonly server: RedisServer } {
  let server: RedisServer | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shmcache-redis-'));
    server = new RedisServer(await freePort(), dir);
    await server.start();
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get server(): RedisServer {
      if (!server) throw new Error('the redis-server is not started yet');
      return server;
    },
  };
}

export interface RedisCluster {
  servers: RedisServer[];
  ports: number[];
  /** The server that owns `key`'s slot. */
  ownerOf(key: string): RedisServer;
}

/**
 * Three masters, no replicas, made one Cluster with `redis-cli --cluster
 * create`, for the calling describe block: started in beforeAll, every
 * server stopped and the config folder removed in afterAll.
 */
export function useCluster(): { readonly cluster: RedisCluster } {
  let cluster: RedisCluster | undefined;
  const servers: RedisServer[] = [];
  let dir: string | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shmcache-cluster-'));
    cluster = await startCluster(dir, servers);
  });
  afterAll(async () => {
    for (const s of servers) await s.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get cluster(): RedisCluster {
      if (!cluster) throw new Error('the cluster is not started yet');
      return cluster;
    },
  };
}

async function startCluster(dir: string, servers: RedisServer[]): Promise<RedisCluster> {
  for (let i = 0; i < 3; i++) {
    let port = await freePort();
    while (servers.some((s) => Math.abs(s.port - port) < 2)) port = await freePort();
    const s = new RedisServer(port, dir, [
      '--cluster-enabled', 'yes',
      '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', '10000',
    ]);
    servers.push(s);
    await s.start();
  }
  const create = spawnSync(
    'redis-cli',
    ['--cluster', 'create', ...servers.map((s) => `${HOST}:${s.port}`), '--cluster-replicas', '0', '--cluster-yes'],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout} ${create.stderr}`);
  const deadline = Date.now() + 20_000;
  while (!servers.every((s) => s.cli('cluster', 'info').includes('cluster_state:ok'))) {
    if (Date.now() > deadline) throw new Error('the cluster did not become ok');
    await new Promise((r) => setTimeout(r, 50));
  }
  const ports = servers.map((s) => s.port);
  return {
    servers,
    ports,
    ownerOf(key: string): RedisServer {
      const slot = Number(servers[0]!.cli('cluster', 'keyslot', key));
      const lines = servers[0]!.cli('cluster', 'nodes').split('\n');
      for (const line of lines) {
        const parts = line.split(' ');
        const port = Number(parts[1]!.split(':')[1]!.split('@')[0]);
        for (const range of parts.slice(8)) {
          const [a, b = a] = range.split('-').map(Number);
          if (slot >= a! && slot <= b!) return servers.find((s) => s.port === port)!;
        }
      }
      throw new Error(`no owner for slot ${slot}`);
    },
  };
}
