import { attach } from './attach';
import { bytes, json, painter, ttl, visible, wantsColour } from './format';
import { boundedInspect, boundedJson, damageNote, decodeStored, entryInfo, hexDump, peekValue, RAW_CODEC } from './inspect';

/**
 * Prints `key`'s value. To a terminal: made safe to look at (escapes
 * written out, bytes as a hex dump, an object through the budgeted walker).
 * To a pipe: as stored (a string's UTF-8, a Buffer's bytes, an object's
 * encoded bytes as the codec wrote them), so that `shmcache get ... > file`
 * copies it; nothing is decoded. `--json`: a bounded form of the value
 * (`truncated: true` when it was cut). A missing key exits 1.
 */
export function getCommand(path: string, key: string, opts: { json?: boolean }): number {
  const cache = attach(path, { codec: RAW_CODEC });
  try {
    const info = entryInfo(cache, key);
    const stored = info === undefined ? undefined : peekValue(cache, key);
    const note = damageNote(cache, 100_000);
    if (note) process.stderr.write(`shmcache get: warning: ${note}\n`);
    if (info === undefined || stored === undefined) {
      if (opts.json) process.stdout.write('null\n');
      process.stderr.write(`shmcache get: no live entry ${JSON.stringify(visible(key))} in ${visible(cache.path)}\n`);
      return 1;
    }
    const tty = process.stdout.isTTY === true;
    if (!tty && !opts.json) {
      if (stored instanceof Uint8Array) process.stdout.write(stored);
      else if (typeof stored === 'string') process.stdout.write(stored);
      else process.stdout.write(String(stored) + '\n');
      return 0;
    }
    let value: unknown = stored;
    let undecodable: string | undefined;
    if (info.type === 'object' && stored instanceof Uint8Array) {
      const d = decodeStored(cache, stored);
      if ('undecodable' in d) undecodable = d.undecodable;
      else value = d.value;
    }
    if (opts.json) {
      if (undecodable !== undefined || value instanceof Uint8Array) {
        const b = stored as Uint8Array;
        const why = undecodable === undefined ? {} : { undecodable };
        process.stdout.write(json({ key, ...info, encoding: 'base64', ...why, value: Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64') }) + '\n');
        return 0;
      }
      if (typeof value === 'string' || typeof value === 'number') {
        process.stdout.write(json({ key, ...info, value }) + '\n');
        return 0;
      }
      const bounded = boundedJson(value);
      process.stdout.write(json({ key, ...info, ...(bounded.truncated ? { truncated: true } : {}), value: bounded.value }) + '\n');
      return 0;
    }
    const paint = painter(wantsColour(process.stdout));
    process.stdout.write(paint(`${info.type}, ${bytes(info.bytes)}, ttl ${ttl(info.ttl)}`, 'dim') + '\n');
    if (undecodable !== undefined) process.stdout.write(undecodable + '\n');
    else if (value instanceof Uint8Array) process.stdout.write(hexDump(Buffer.from(value.buffer, value.byteOffset, value.byteLength)) + '\n');
    else if (typeof value === 'string') process.stdout.write(visible(value, true) + '\n');
    else if (typeof value === 'number') process.stdout.write(String(value) + '\n');
    else {
      const p = boundedInspect(value);
      process.stdout.write(p.preview + '\n');
      if (p.truncated) process.stdout.write(paint('(cut short: --json or a pipe gives more)', 'dim') + '\n');
    }
    return 0;
  } finally {
    cache.close();
  }
}
