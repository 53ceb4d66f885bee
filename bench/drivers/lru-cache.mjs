// lru-cache: the in-process cache most Node servers use (not shared).
import { LRUCache } from 'lru-cache';

export const shared = false;
export function open() {
  const lru = new LRUCache({ max: 1_000_000 });
  return { get: (k) => lru.get(k), set: (k, v) => void lru.set(k, v), close() {} };
}
