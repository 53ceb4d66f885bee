export { Cache } from './cache';
export type { CacheStats, EntryInfo, IncrOptions, RememberOptions, SetOptions, VerifyResult } from './cache';
export type { CacheOptions } from './options';
export type { Codec } from './codecs';
export { ShmCacheError } from './errors';
export type { ShmCacheErrorCode, ShmCacheErrorOptions } from './errors';
export { jail, tenantCache } from './tenants';
export type { JailOptions, TenantCacheOptions } from './tenants';
