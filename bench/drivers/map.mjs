// A plain Map: the in-process floor (not shared between processes).
export const shared = false;
export function open() {
  const map = new Map();
  return { get: (k) => map.get(k), set: (k, v) => void map.set(k, v), close() {} };
}
