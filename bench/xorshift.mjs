// A seeded xorshift32: rand(n) is an integer in [0, n). Every system of a
// run draws the same key sequence from the same seed.
function step(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

export function xorshift(seed) {
  const next = step(seed);
  return (n) => next() % n;
}

// The same generator as a number in [0, 1).
export function xorshiftUniform(seed) {
  const next = step(seed);
  return () => next() / 4294967296;
}
