// Memory latency of this machine: a dependent random walk over 64-byte
// lines in buffers of growing size (4 KiB pages, the V8 heap's own). It is
// the floor under any random lookup: docs/benchmark.md compares it with what
// a random get() costs.
//
//   node bench/memlat.mjs [--json] [MB ...]
const json = process.argv.includes('--json');
const sizes = process.argv.slice(2).filter((a) => a !== '--json').map(Number);
const out = {};
for (const mb of sizes.length ? sizes : [2, 16, 32, 150]) {
  const lines = (mb * 1024 * 1024) / 64;
  const a = new Uint32Array(lines * 16);
  // One random cycle through every line (Sattolo's shuffle).
  const order = new Uint32Array(lines);
  for (let i = 0; i < lines; i++) order[i] = i;
  let seed = 88172645;
  for (let i = lines - 1; i > 0; i--) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const j = (seed >>> 0) % i;
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (let i = 0; i < lines; i++) a[order[i] * 16] = order[(i + 1) % lines] * 16;
  const steps = 5_000_000;
  let p = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) p = a[p];
  const ns = Number(process.hrtime.bigint() - t0) / steps;
  out[mb] = Math.round(ns * 10) / 10;
  if (!json) console.log(`${String(mb).padStart(5)} MB: ${ns.toFixed(1)} ns per dependent load${p < 0 ? '!' : ''}`);
}
if (json) console.log(JSON.stringify(out));
