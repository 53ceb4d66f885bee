#!/usr/bin/env node
/**
 * The `shmcache` command (DESIGN §9, docs/operations.md). Exit codes: 0
 * success, 1 an error (the message names its ERR_SHMCACHE_* code and the
 * path), 2 bad usage.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { visible } from './format';
import { getCommand } from './get';
import { keysCommand } from './keys';
import { clearCommand, deleteCommand } from './mutate';
import { statsCommand } from './stats';
import { verifyCommand } from './verify';
import { watchCommand } from './watch';

const EXIT_ERROR = 1;
const EXIT_USAGE = 2;

function integer(min: number, max: number) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    }
    return n;
  };
}

function seconds(raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0.1 || n > 3600) throw new InvalidArgumentError('expected seconds from 0.1 to 3600');
  return n;
}

function program(): { cli: Command; result: { code: number; path?: string } } {
  const result: { code: number; path?: string } = { code: 0 };
  const run = (path: string, fn: () => number | Promise<number>) => async () => {
    result.path = path;
    result.code = await fn();
  };
  const cli = new Command('shmcache')
    .description('Look into shmcache segments: stats, keys, values, live rates, a status page and Prometheus metrics.\nEvery command attaches with { create: false, stamp: false }: it never creates, resets or grows a segment.')
    .version((require('../../package.json') as { version: string }).version)
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureHelp({ sortSubcommands: false });
  const json = new Option('--json', 'print machine-readable JSON');

  cli
    .command('stats')
    .description('sizes and counters of a segment')
    .argument('<path>', 'the segment file')
    .addOption(json)
    .action((path: string, o: { json?: boolean }) => run(path, () => statsCommand(path, o))());
  cli
    .command('keys')
    .description('live keys (sorted), with type, bytes and TTL left')
    .argument('<path>', 'the segment file')
    .argument('[prefix]', 'only keys starting with this')
    .option('--limit <n>', 'show at most n keys', integer(1, Number.MAX_SAFE_INTEGER))
    .addOption(json)
    .action((path: string, prefix: string | undefined, o: { json?: boolean; limit?: number }) => run(path, () => keysCommand(path, prefix, o))());
  cli
    .command('get')
    .description("a key's value (as stored when piped; made safe to look at on a terminal); exit 1 when missing")
    .argument('<path>', 'the segment file')
    .argument('<key>', 'the key')
    .addOption(json)
    .action((path: string, key: string, o: { json?: boolean }) => run(path, () => getCommand(path, key, o))());
  cli
    .command('delete')
    .description('delete a key (exit 0 whether or not it was there)')
    .argument('<path>', 'the segment file')
    .argument('<key>', 'the key')
    .addOption(json)
    .action((path: string, key: string, o: { json?: boolean }) => run(path, () => deleteCommand(path, key, o))());
  cli
    .command('clear')
    .description('drop every entry of the segment')
    .argument('<path>', 'the segment file')
    .addOption(json)
    .action((path: string, o: { json?: boolean }) => run(path, () => clearCommand(path, o))());
  cli
    .command('verify')
    .description('walk and check every structure of the segment, read-only (nothing is changed); exit 1 when not ok')
    .argument('<path>', 'the segment file')
    .option('--repair', 'attach read-write and drop what the problems touch (a damaged shard loses its entries)')
    .addOption(json)
    .action((path: string, o: { json?: boolean; repair?: boolean }) => run(path, () => verifyCommand(path, o))());
  cli
    .command('watch')
    .description('live rates in the terminal: hits/s, misses/s, sets/s, evictions/s, expired/s, hit ratio, fill, top prefixes (q quits)')
    .argument('<path>', 'the segment file')
    .option('--interval <seconds>', 'seconds between samples', seconds, 1)
    .option('--count <n>', 'stop after n samples', integer(1, Number.MAX_SAFE_INTEGER))
    .action((path: string, o: { interval: number; count?: number }) => run(path, () => watchCommand(path, o))());
  cli
    .command('serve')
    .description('the status page, a JSON API and /metrics over segments (a folder: every *.shm in it, one per tenant)')
    .argument('<paths...>', 'segment files and folders')
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', integer(0, 65535), 9464)
    .addOption(new Option('--token <token>', 'bearer token of delete and clear (default: random, printed at start)').conflicts('tokenFile'))
    .addOption(new Option('--token-file <file>', 'read the token from the first line of this file').conflicts('token'))
    .action((paths: string[], o: { host: string; port: number; token?: string; tokenFile?: string }) =>
      run(paths.join(' '), async () => (await import('./serve')).serveCommand(paths, o))(),
    );
  return { cli, result };
}

export async function main(argv: string[]): Promise<number> {
  // No lock wait set here: the reads take no lock, and each read-write
  // command (delete, clear, verify --repair: 5 s; serve: 250 ms) sets its own.
  const { cli, result } = program();
  try {
    await cli.parseAsync(argv, { from: 'user' });
    return result.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end in a CommanderError with exit code 0.
      return err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    const e = err as { code?: unknown; message?: unknown; path?: unknown };
    if (e?.code === 'ERR_USAGE') {
      process.stderr.write(`shmcache: ${visible(String(e.message))}\n`);
      return EXIT_USAGE;
    }
    const code = typeof e?.code === 'string' ? e.code : 'ERROR';
    let message = typeof e?.message === 'string' ? e.message : String(err);
    const path = result.path;
    if (path !== undefined && !message.includes(path)) message += ` (path: ${path})`;
    process.stderr.write(`shmcache ${argv[0] ?? ''}: ${code}: ${visible(message)}\n`);
    return EXIT_ERROR;
  }
}

if (require.main === module) {
  // `shmcache keys ... | head`: a closed pipe ends the command quietly.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  const command = process.argv[2];
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // A command that is done ends the process once its output is out,
      // whatever timer a sampler may still hold (a re-attach backoff kept
      // `watch` alive for seconds after q). `serve` ends when its server does.
      if (command !== 'serve') {
        const end = (): never => process.exit(code);
        if (process.stdout.writableLength === 0) end();
        else process.stdout.once('drain', end);
      }
    },
    (err: unknown) => {
      process.stderr.write(`shmcache: ${String((err as Error)?.stack ?? err)}\n`);
      process.exitCode = EXIT_ERROR;
    },
  );
}
