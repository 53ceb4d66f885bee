import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { startStatusServer } from '../server/server';
import { defaultLockWait } from './attach';
import { visible } from './format';

export interface ServeOptions {
  host: string;
  port: number;
  token?: string;
  tokenFile?: string;
}

/** The token of the mutations: given, read from a file (first line), or random. */
export function resolveToken(opts: ServeOptions): { token: string; shown: string } {
  if (opts.token !== undefined) return { token: opts.token, shown: '(given with --token)' };
  if (opts.tokenFile !== undefined) {
    const st = statSync(opts.tokenFile);
    if ((st.mode & 0o077) !== 0) process.stderr.write(`shmcache serve: warning: ${opts.tokenFile} can be read by others (chmod 600 it)\n`);
    const token = readFileSync(opts.tokenFile, 'utf8').split('\n')[0]!.trim();
    if (token === '') throw Object.assign(new Error(`${opts.tokenFile} holds no token`), { code: 'ERR_USAGE' });
    return { token, shown: `(read from ${opts.tokenFile})` };
  }
  const token = randomBytes(24).toString('base64url');
  return { token, shown: token };
}

export async function serveCommand(targets: string[], opts: ServeOptions): Promise<number> {
  // A tenant holding its segment's file lock must not stall the server:
  // attaches give up quickly (and are retried later, less and less often).
  defaultLockWait(250);
  const { token, shown } = resolveToken(opts);
  const s = await startStatusServer({
    targets,
    host: opts.host,
    port: opts.port,
    token,
    warn: (m) => process.stderr.write(`shmcache serve: ${visible(m)}\n`),
  });
  process.stdout.write(`shmcache status page: ${s.url}\ntoken: ${shown}\n`);
  for (const w of s.caches.list()) {
    process.stdout.write(`  ${visible(w.name)}  ${visible(w.path)}${w.error ? `  ${w.error.code}: ${visible(w.error.message)}` : ''}\n`);
  }
  return new Promise((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void s.close().then(() => resolve(0));
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
