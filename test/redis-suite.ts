// The tier's multi-machine suite, run against a standalone redis-server
// (test/redis.test.ts) and a 3-master Cluster (test/redis-cluster.test.ts).
// A "machine" is an L1 segment path; each of its processes is a child
// running test/fixtures/redis-machine.mjs, driven over stdin/stdout.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { fixtures, tempDir } from './helpers';
import type { RedisServer } from './redis-server';

export interface MachineConfig {
  path: string;
  prefix: string;
  localTtl: number;
  timeout: number;
  lockTtl: number;
  ports: number[];
  cluster: boolean;
  name: string;
}

const live = new Set<Proc>();
afterAll(() => {
  for (const p of live) p.kill('SIGKILL');
});

/** One child process of one machine. */
export class Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly events: any[] = [];
  #next = 1;
  #pending = new Map<number, (m: any) => void>();
  #eventWaiters: (() => void)[] = [];
  #stderr = '';
  readonly exited: Promise<void>;

  constructor(config: MachineConfig) {
    this.name = config.name;
    this.child = spawn(process.execPath, [join(fixtures, 'redis-machine.mjs'), JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(this);
    this.exited = new Promise((resolve) => this.child.once('exit', () => (live.delete(this), resolve())));
    this.child.stderr!.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const m = JSON.parse(line);
      if (m.id !== undefined) {
        this.#pending.get(m.id)?.(m);
        this.#pending.delete(m.id);
      } else {
        this.events.push(m);
        for (const w of this.#eventWaiters.splice(0)) w();
      }
    });
  }

  /** Sends one op; resolves with the child's answer. */
  call(op: string, args: Record<string, unknown> = {}, timeoutMs = 20_000): Promise<any> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: ${op} got no answer; stderr: ${this.#stderr}`)), timeoutMs);
      this.#pending.set(id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      this.child.stdin!.write(JSON.stringify({ id, op, ...args }) + '\n');
    });
  }

  /** Resolves with the first event matching `match`. */
  async event(match: (e: any) => boolean, timeoutMs = 20_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.events.find(match);
      if (e) return e;
      if (Date.now() > deadline) throw new Error(`${this.name}: no such event; stderr: ${this.#stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, deadline - Date.now());
        this.#eventWaiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  kill(sig: NodeJS.Signals): void {
    try {
      this.child.kill(sig);
    } catch {}
  }

  async exit(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await this.call('exit').catch(() => this.kill('SIGKILL'));
    await this.exited;
  }
}

export interface Endpoint {
  ports: number[];
  cluster: boolean;
  /** Stops (SIGSTOP) and resumes (SIGCONT) the server(s) holding `key`. */
  serverOf(key: string): RedisServer;
  /** Standalone only: kills the server and starts it again on its port (empty). */
  restart?: { kill(): Promise<void>; start(): Promise<void> };
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;

/** The suite. `endpoint()` gives the Redis the machines use (started by the calling file). */
export function tierSuite(label: string, endpoint: () => Endpoint, restartable: boolean): void {
  const tmp = tempDir('shmcache-tier-');
  const prefix = `t${Math.floor(Math.random() * 1e9)}:`;
  const paths = { A: tmp.file('A'), B: tmp.file('B'), C: tmp.file('C') };
  const base = { prefix, localTtl: 10_000, timeout: 800, lockTtl: 1500 };
  const procs: Record<string, Proc> = {};
  const start = async (machine: keyof typeof paths, name: string): Promise<Proc> => {
    const e = endpoint();
    const p = new Proc({ ...base, path: paths[machine], ports: e.ports, cluster: e.cluster, name });
    await p.event((m) => m.event === 'started');
    const r = await p.call('ready');
    expect(r.error, r.message).toBeUndefined();
    procs[name] = p;
    return p;
  };
  afterAll(async () => {
    await Promise.all(Object.values(procs).map((p) => p.exit()));
  });

  it(`${label}: starts 3 machines (A with 2 processes, B with 2, C with 1)`, async () => {
    await Promise.all([start('A', 'a1'), start('A', 'a2'), start('B', 'b1'), start('B', 'b2'), start('C', 'c1')]);
  });

  it(`${label}: a write on one machine is seen by every other one, with its type (string, Buffer, codec object)`, async () => {
    const { a1 } = procs;
    for (const [kind, type] of [[0, 'string'], [1, 'buffer'], [2, 'object']] as const) {
      const key = `see:${kind}`;
      expect((await a1!.call('set', { key, n: 1, kind })).error).toBeUndefined();
      for (const p of Object.values(procs)) expect(await p.call('get', { key })).toMatchObject({ found: true, writer: 'a1', n: 1, type });
      // Every other machine holds a copy now; a new write replaces it everywhere.
      expect((await procs.b1!.call('set', { key, n: 2, kind })).error).toBeUndefined();
      for (const p of Object.values(procs)) {
        expect(await p.call('watch', { key, n: 2 })).toMatchObject({ t: expect.any(Number) });
        expect(await p.call('get', { key })).toMatchObject({ writer: 'b1', n: 2, type });
      }
    }
  });

  it(`${label}: invalidation latency over 200 rounds, p99 under 100 ms`, async () => {
    const { a1, b1 } = procs;
    const key = 'latency';
    const latencies: number[] = [];
    expect((await a1!.call('set', { key, n: 0 })).error).toBeUndefined();
    for (let i = 1; i <= 200; i++) {
      // b1 holds round i - 1 in its L1, then watches for round i. A fill
      // that an invalidation overtook is rightly not kept (the stale-fill
      // guard): read again until the copy is held.
      let held = false;
      for (let tries = 0; tries < 50 && !held; tries++) {
        expect(await b1!.call('get', { key })).toMatchObject({ n: i - 1 });
        held = (await b1!.call('l1', { key })).has === true;
      }
      expect(held, `b1 never kept round ${i - 1} in its L1`).toBe(true);
      const watching = b1!.call('watch', { key, n: i });
      const w = await a1!.call('set', { key, n: i });
      const seen = await watching;
      expect(seen.t, JSON.stringify(seen)).toBeTypeOf('number');
      latencies.push(seen.t - w.t0);
    }
    latencies.sort((x, y) => x - y);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    console.log(`[${label}] invalidation latency over 200 rounds: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${latencies.at(-1)!.toFixed(2)} ms`);
    expect(p99).toBeLessThan(100);
  });

  it(`${label}: a machine keeps its own fresh write (its processes ignore their own bus message)`, async () => {
    const { a1, a2, b1 } = procs;
    const key = 'own';
    await a1!.call('set', { key, n: 1 });
    expect(await b1!.call('get', { key })).toMatchObject({ n: 1 });
    await a1!.call('set', { key, n: 2 });
    // Once B has dropped round 1 the message has been delivered to A's processes too.
    expect(await b1!.call('watch', { key, n: 2 })).toMatchObject({ t: expect.any(Number) });
    expect((await a1!.call('set', { key: 'own:marker', n: 1 })).error).toBeUndefined();
    expect(await b1!.call('watch', { key: 'own:marker', n: 1 })).toMatchObject({ t: expect.any(Number) });
    expect(await a1!.call('l1', { key })).toEqual(expect.objectContaining({ has: true }));
    expect(await a2!.call('l1', { key })).toEqual(expect.objectContaining({ has: true }));
    expect(await a2!.call('get', { key })).toMatchObject({ writer: 'a1', n: 2 });
  });

  it(`${label}: delete and clear propagate`, async () => {
    const { a1, b1, b2, c1 } = procs;
    const keys = ['del:1', 'del:2', 'del:3'];
    for (const [i, key] of keys.entries()) await a1!.call('set', { key, n: i, kind: i });
    for (const p of [b1, b2, c1]) for (const key of keys) expect(await p!.call('get', { key })).toMatchObject({ found: true });
    expect(await b1!.call('delete', { key: 'del:1' })).toMatchObject({ removed: true });
    expect(await b1!.call('l1', { key: 'del:1' })).toEqual(expect.objectContaining({ has: false }));
    for (const p of [a1, b2, c1]) expect(await p!.call('watch', { key: 'del:1', n: null })).toMatchObject({ t: expect.any(Number) });
    expect(await c1!.call('clear')).not.toHaveProperty('error');
    for (const p of [a1, b1, b2]) for (const key of keys) expect(await p!.call('watch', { key, n: null })).toMatchObject({ t: expect.any(Number) });
    for (const key of keys) expect(await a1!.call('l1', { key })).toEqual(expect.objectContaining({ has: false }));
  });

  it(`${label}: remember() across 2 machines x 2 processes runs the producer exactly once`, async () => {
    const four = [procs.a1!, procs.a2!, procs.b1!, procs.b2!];
    for (let round = 0; round < 3; round++) {
      const key = `remember:${round}`;
      const results = await Promise.all(four.map((p) => p.call('remember', { key, delayMs: 150, n: round })));
      const producing = four.flatMap((p) => p.events.filter((e) => e.event === 'producing' && e.key === key));
      expect(producing).toHaveLength(1);
      for (const r of results) expect(r).toMatchObject({ found: true, writer: producing[0].name, n: round, type: 'object' });
      expect(await procs.c1!.call('get', { key })).toMatchObject({ writer: producing[0].name, n: round });
    }
  });

  it(`${label}: a producer SIGKILLed while holding the Redis lock is taken over`, async () => {
    const key = 'remember:killed';
    const victim = await start('A', 'a3');
    const hung = victim.call('remember', { key, mode: 'hang', lockTtl: 800 }).catch(() => undefined);
    await victim.event((e) => e.event === 'producing' && e.key === key);
    // Waiters on both machines, one of them on the victim's machine (behind its local claim too).
    const waiting = [procs.a1!, procs.b1!].map((p) => p.call('remember', { key, delayMs: 20, n: 7, wait: 8000 }));
    victim.kill('SIGKILL');
    await victim.exited;
    delete procs.a3;
    const results = await Promise.all(waiting);
    void hung;
    const takers = [procs.a1!, procs.b1!].flatMap((p) => p.events.filter((e) => e.event === 'producing' && e.key === key));
    expect(takers).toHaveLength(1);
    for (const r of results) expect(r).toMatchObject({ found: true, writer: takers[0].name, n: 7 });
  });

  it(`${label}: Redis stopped${restartable ? ', killed and restarted' : ' and resumed'} mid-run: the failure rules hold, no stale value after recovery`, async () => {
    const { a1, b1, b2, c1 } = procs;
    const e = endpoint();
    // Hash-tagged, so that on a Cluster they all live on the one master stopped.
    const key = '{o}outage';
    const server = e.serverOf(prefix + key);
    const churnKeys = ['outage:churn:1', 'outage:churn:2', '{o}churn:3'];
    await a1!.call('set', { key, n: 1 });
    expect(await b1!.call('get', { key })).toMatchObject({ n: 1 });
    await c1!.call('churn', { name: 'c', keys: churnKeys });
    await b2!.call('churn', { name: 'b', keys: churnKeys });

    server.signal('SIGSTOP');
    try {
      // L1 hits are served; misses and writes reject with ERR_SHMCACHE_REDIS within the timeout.
      expect(await b1!.call('get', { key })).toMatchObject({ found: true, n: 1 });
      expect(await b1!.call('get', { key: '{o}never-read' })).toMatchObject({ error: 'ERR_SHMCACHE_REDIS' });
      expect(await a1!.call('set', { key, n: 2 })).toMatchObject({ error: 'ERR_SHMCACHE_REDIS' });
      expect(await a1!.call('l1', { key })).toEqual(expect.objectContaining({ has: false }));
      expect(await a1!.call('delete', { key: '{o}other' })).toMatchObject({ error: 'ERR_SHMCACHE_REDIS' });
      if (e.restart) {
        await e.restart.kill();
        // The clients see the connection close: every command fails at once now.
        expect(await a1!.call('set', { key, n: 3 })).toMatchObject({ error: 'ERR_SHMCACHE_REDIS' });
        expect(await a1!.call('get', { key })).toMatchObject({ error: 'ERR_SHMCACHE_REDIS' });
        // B's L1 is small and was churned on purpose: by now its copy may
        // have been evicted (then the read is a miss, which must reject), but
        // it is never a value other than the one B holds.
        const after = await b1!.call('get', { key });
        if ('error' in after) expect(after).toMatchObject({ error: 'ERR_SHMCACHE_REDIS' });
        else expect(after).toMatchObject({ found: true, n: 1 });
        await e.restart.start();
      }
    } finally {
      server.signal('SIGCONT');
    }
    for (const p of [a1, b1]) expect(await p!.call('ready')).not.toHaveProperty('error');
    if (e.restart) {
      // The restarted server is empty: B dropped its copies when its bus came back.
      expect(await b1!.call('watch', { key, n: null, timeoutMs: base.localTtl + 2000 })).toMatchObject({ t: expect.any(Number) });
    } else {
      // The write a1 was told had failed reached Redis when it woke up: a1
      // saw it land and told the others, so B reads round 2, not round 1.
      expect(await b1!.call('watch', { key, n: 2, timeoutMs: base.localTtl + 2000 })).toMatchObject({ t: expect.any(Number) });
    }
    await a1!.call('set', { key, n: 4 });
    for (const p of [b1, b2, c1]) expect(await p!.call('watch', { key, n: 4 })).toMatchObject({ t: expect.any(Number) });
    const churned = [await c1!.call('stopChurn', { name: 'c' }), await b2!.call('stopChurn', { name: 'b' })];
    for (const s of churned) {
      expect(s.bad, JSON.stringify(s.badValues)).toBe(0);
      expect(s.ops).toBeGreaterThan(0);
      for (const code of Object.keys(s.errors)) expect(code).toBe('ERR_SHMCACHE_REDIS');
    }
  });
}
