/**
 * Output for people: sizes, counts, rates and durations, aligned tables,
 * colour only on a terminal, and keys and values made safe to print (a
 * segment is hostile input: a key may carry terminal escape sequences).
 */

/** Whether `stream` gets colour: a TTY, and no NO_COLOR (https://no-color.org). */
export function wantsColour(stream: NodeJS.WriteStream): boolean {
  const noColor = process.env.NO_COLOR;
  return stream.isTTY === true && (noColor === undefined || noColor === '');
}

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, cyan: 36, dim: 2, bold: 1 } as const;
export type Colour = keyof typeof CODES;

/** A painter for one stream: paint(text, 'green') is text itself when colour is off. */
export function painter(on: boolean): (text: string, colour: Colour) => string {
  return on ? (text, colour) => `\x1b[${CODES[colour]}m${text}\x1b[0m` : (text) => text;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 -> "1.5 KiB". */
export function bytes(n: number): string {
  if (!Number.isFinite(n)) return '?';
  let u = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

/** 1234567 -> "1,234,567". */
export function count(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '?';
}

/** Per second: 0.25 -> "0.3/s", 12345 -> "12.3k/s"; null (unknown) -> "-". */
export function rate(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return '-';
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M/s`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k/s`;
  return `${n.toFixed(1)}/s`;
}

/** 0.981 -> "98.1%"; null -> "-". */
export function percent(ratio: number | null): string {
  return ratio === null || !Number.isFinite(ratio) ? '-' : `${(ratio * 100).toFixed(1)}%`;
}

/** A TTL: null -> "?" (unknown), 0 -> "none", 65000 -> "1m 5s". */
export function ttl(ms: number | null): string {
  if (ms === null) return '?';
  if (ms === 0) return 'none';
  let s = Math.ceil(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  if (s > 0 || parts.length === 0) parts.push(`${s}s`);
  return parts.slice(0, 2).join(' ');
}

/** A bar of `width` cells, `ratio` of them full. */
export function bar(ratio: number, width: number): string {
  const r = Math.min(1, Math.max(0, Number.isFinite(ratio) ? ratio : 0));
  const full = Math.round(r * width);
  return '█'.repeat(full) + '░'.repeat(width - full);
}

/* eslint-disable no-control-regex -- matching control characters is the point */
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_IN_TEXT = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const ANSI_SGR = /\x1b\[[0-9;]*m/g;
/* eslint-enable no-control-regex */

/**
 * A string safe to print on a terminal: C0 and C1 control characters, DEL
 * and the bidirectional overrides (which reorder what follows them) are
 * written as escapes. With `keepNewlines`, "\n" and "\t" stay (values).
 */
export function visible(s: string, keepNewlines = false): string {
  return s.replace(keepNewlines ? UNSAFE_IN_TEXT : UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    if (c === '\r') return '\\r';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** JSON with DEL, the C1 controls and the bidi controls escaped too (JSON.stringify leaves them raw). */
export function json(value: unknown, indent = 2): string {
  return JSON.stringify(value, jsonSafe, indent).replace(/[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * A Prometheus label value: control characters (but newline, which the
 * exposition format escapes) and the bidi controls written as escapes
 * (`\x1b`), so a cache name cannot reach a terminal or a log raw.
 */
export function labelSafe(s: string): string {
  return s.split('\n').map((part) => visible(part)).join('\n');
}

/** A JSON.stringify replacer for what the v8 codec can store: bigint, Map, Set, Buffer. */
function jsonSafe(this: unknown, _key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Map) return Object.fromEntries(value);
  if (value instanceof Set) return [...value];
  if (value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return { base64: Buffer.from((value as { data: number[] }).data).toString('base64') };
  }
  return value;
}

// Printed width: ANSI colour codes take no room.
const width = (s: string): number => s.replace(ANSI_SGR, '').length;

/**
 * Rows as aligned columns, two spaces apart. Columns listed in `right` are
 * right-aligned (numbers). The last column is not padded.
 */
export function table(rows: string[][], right: ReadonlySet<number> = new Set()): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, width(cell))));
  return rows
    .map((row) =>
      row
        .map((cell, i) => {
          const pad = ' '.repeat((widths[i] ?? 0) - width(cell));
          if (right.has(i)) return pad + cell;
          return i === row.length - 1 ? cell : cell + pad;
        })
        .join('  '),
    )
    .join('\n');
}
