import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { startStatusServer } from '../server/server';
import { defaultLockWait } from './attach';
import { visible } from './format';

export interface ServeOptions {
  host: string;
  port: number;
  token?: string;
  tokenFile?: string;
}

const usage = (message: string): Error => Object.assign(new Error(message), { code: 'ERR_USAGE' });

/** A token is one word of printable characters: no whitespace, not empty. */
function checkToken(token: string, where: string): string {
  if (token === '') throw usage(`${where} holds no token`);
  if (/[\s\p{Cc}]/u.test(token)) throw usage(`the token of ${where} has whitespace or control characters in it`);
  return token;
}

/**
 * The token of the mutations: given, read from a file (first line), or
 * random. A token file is opened with O_NOFOLLOW (a symlink is refused)
 * and must be a regular file owned by the effective uid or root.
 */
export function resolveToken(opts: ServeOptions): { token: string; shown: string } {
  if (opts.token !== undefined) {
    process.stderr.write('shmcache serve: warning: --token is visible to every user of this machine (ps, /proc/<pid>/cmdline); use --token-file\n');
    return { token: checkToken(opts.token, '--token'), shown: '(given with --token)' };
  }
  if (opts.tokenFile !== undefined) {
    const file = opts.tokenFile;
    let fd: number;
    try {
      fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw usage(e.code === 'ELOOP' ? `${file} is a symbolic link: give the token file itself` : `cannot open ${file}: ${e.message}`);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw usage(`${file} is not a regular file`);
      const euid = process.geteuid?.() ?? st.uid;
      if (st.uid !== euid && st.uid !== 0) throw usage(`${file} is owned by uid ${st.uid}, not by this user (${euid}) or root`);
      if ((st.mode & 0o077) !== 0) process.stderr.write(`shmcache serve: warning: ${file} can be read by others (chmod 600 it)\n`);
      const text = readFileSync(fd, 'utf8');
      const token = checkToken(text.split('\n')[0]!.replace(/\r$/, ''), file);
      return { token, shown: `(read from ${file})` };
    } finally {
      closeSync(fd);
    }
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
