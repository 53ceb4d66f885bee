// The Zipf trace every hit-ratio script uses (bench/zipf.mjs, evict-sim.mjs,
// hitratio.mjs): `accesses` ranks drawn from a Zipf distribution with
// exponent `s` over `keys` ranks, and a seeded permutation that spreads the
// ranks over the key space so that hot keys are not neighbours. The same
// arguments give the same trace in every script and run.
import { xorshiftUniform } from './xorshift.mjs';

export function zipfTrace({ keys = 1_000_000, accesses = 2_000_000, s = 0.99, seed = 12345 } = {}) {
  const cdf = new Float64Array(keys);
  let sum = 0;
  for (let i = 0; i < keys; i++) cdf[i] = sum += 1 / Math.pow(i + 1, s);
  for (let i = 0; i < keys; i++) cdf[i] /= sum;
  const uniform = xorshiftUniform(seed);
  const perm = new Uint32Array(keys);
  for (let i = 0; i < keys; i++) perm[i] = i;
  for (let i = keys - 1; i > 0; i--) {
    const j = Math.floor(uniform() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const ranks = new Uint32Array(accesses);
  for (let n = 0; n < accesses; n++) {
    const u = uniform();
    let lo = 0;
    let hi = keys - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    ranks[n] = lo;
  }
  return { perm, ranks };
}
