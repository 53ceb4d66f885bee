/** Every code a {@link ShmCacheError} can carry. Stable: match on these. */
export type ShmCacheErrorCode =
  | 'ERR_SHMCACHE_INVALID_OPTION'
  | 'ERR_SHMCACHE_INVALID_KEY'
  | 'ERR_SHMCACHE_VALUE_TOO_LARGE'
  | 'ERR_SHMCACHE_ENCODE'
  | 'ERR_SHMCACHE_NOT_NUMBER'
  | 'ERR_SHMCACHE_RANGE'
  | 'ERR_SHMCACHE_PERMISSION'
  | 'ERR_SHMCACHE_NOT_A_SEGMENT'
  | 'ERR_SHMCACHE_CORRUPT'
  | 'ERR_SHMCACHE_NO_SPACE'
  | 'ERR_SHMCACHE_TIMEOUT'
  | 'ERR_SHMCACHE_CLOSED'
  | 'ERR_SHMCACHE_JAIL'
  | 'ERR_SHMCACHE_IO'
  | 'ERR_SHMCACHE_NOT_FOUND'
  | 'ERR_SHMCACHE_REDIS';

export interface ShmCacheErrorOptions {
  /** The OS error number, when an OS call failed. */
  errno?: number;
  /** The OS call that failed. */
  syscall?: string;
  /** The error that caused this one (a codec's exception, say). */
  cause?: unknown;
}

/**
 * The one error class of shmcache. Errors raised by the native addon are
 * instances of it too: the class is handed to the addon when it loads.
 */
export class ShmCacheError extends Error {
  readonly code: ShmCacheErrorCode;
  readonly errno?: number;
  readonly syscall?: string;

  constructor(code: ShmCacheErrorCode, message: string, options: ShmCacheErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ShmCacheError';
    this.code = code;
    if (options.errno !== undefined) this.errno = options.errno;
    if (options.syscall !== undefined) this.syscall = options.syscall;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)} of type string`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${String(value)} of type ${typeof value}`;
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  return `a value of type ${typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value}`;
}

/** "Expected a positive integer for ttl but received -1 of type number". */
export function invalid(
  code: ShmCacheErrorCode,
  expected: string,
  name: string,
  value: unknown,
): ShmCacheError {
  return new ShmCacheError(code, `Expected ${expected} for ${name} but received ${describe(value)}`);
}
