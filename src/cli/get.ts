import { attach } from './attach';
import { json, painter, visible, wantsColour, bytes, ttl } from './format';
import { entryInfo, hexDump, peekValue } from './inspect';
import { inspect } from 'node:util';

/**
 * Prints `key`'s value. To a terminal: made safe to look at (escapes
 * written out, bytes as a hex dump). To a pipe: as stored (a string's
 * UTF-8, a Buffer's bytes), so that `shmcache get ... > file` copies it.
 * A missing key exits 1.
 */
export function getCommand(path: string, key: string, opts: { json?: boolean }): number {
  const cache = attach(path);
  try {
    const info = entryInfo(cache, key);
    const value = info === undefined ? undefined : peekValue(cache, key);
    if (info === undefined || value === undefined) {
      if (opts.json) process.stdout.write('null\n');
      process.stderr.write(`shmcache get: no live entry ${JSON.stringify(visible(key))} in ${visible(cache.path)}\n`);
      return 1;
    }
    if (opts.json) {
      const v = value instanceof Uint8Array ? Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') : value;
      process.stdout.write(json({ key, ...info, ...(value instanceof Uint8Array ? { encoding: 'base64' } : {}), value: v }) + '\n');
      return 0;
    }
    const tty = process.stdout.isTTY === true;
    if (!tty) {
      if (value instanceof Uint8Array) process.stdout.write(value);
      else if (typeof value === 'string') process.stdout.write(value);
      else if (typeof value === 'number') process.stdout.write(String(value) + '\n');
      else process.stdout.write(inspect(value, { depth: null, maxArrayLength: null, maxStringLength: null }) + '\n');
      return 0;
    }
    const paint = painter(wantsColour(process.stdout));
    process.stdout.write(paint(`${info.type}, ${bytes(info.bytes)}, ttl ${ttl(info.ttl)}`, 'dim') + '\n');
    if (value instanceof Uint8Array) process.stdout.write(hexDump(Buffer.from(value.buffer, value.byteOffset, value.byteLength)) + '\n');
    else if (typeof value === 'string') process.stdout.write(visible(value, true) + '\n');
    else if (typeof value === 'number') process.stdout.write(String(value) + '\n');
    // util.inspect writes control characters in strings and keys as escapes.
    else process.stdout.write(inspect(value, { depth: 6, colors: wantsColour(process.stdout) }) + '\n');
    return 0;
  } finally {
    cache.close();
  }
}
