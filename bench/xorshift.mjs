// A seeded xorshift32: rand(n) is an integer in [0, n). Every system of a
// run draws the same key sequence from the same seed.
export function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}
