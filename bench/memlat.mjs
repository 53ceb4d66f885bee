// Memory latency of this machine: a dependent random walk over 64-byte
// lines in buffers of growing size (4 KiB pages, the V8 heap's own). It is
// the floor under any random lookup: docs/benchmark.md compares it with what
// a random get() costs. The same walk over 1 KiB blocks, each step reading
// all 16 lines of its block before it can go on, is the floor under reading
// a random 1,000-byte value (get1k): its lines arrive together only as fast
// as the memory system streams them.
//
//   node bench/memlat.mjs [--json] [MB ...]
const json = process.argv.includes('--json');
const sizes = process.argv.slice(2).filter((a) => a !== '--json').map(Number);
const out = {};

// One random cycle through `n` slots (Sattolo's shuffle).
function cycle(n) {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let seed = 88172645;
  for (let i = n - 1; i > 0; i--) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const j = (seed >>> 0) % i;
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

// ns per step of a dependent random walk over `mb` MB in slots of `words`
// uint32 words, reading every 16th word (one per line) of each slot.
function walk(mb, words) {
  const slots = (mb * 1024 * 1024) / (words * 4);
  const a = new Uint32Array(slots * words);
  const order = cycle(slots);
  for (let i = 0; i < slots; i++) a[order[i] * words] = order[(i + 1) % slots] * words;
  const steps = words === 16 ? 5_000_000 : 1_000_000;
  let p = 0;
  const t0 = process.hrtime.bigint();
  if (words === 16) {
    for (let i = 0; i < steps; i++) p = a[p];
  } else {
    for (let i = 0; i < steps; i++) {
      let next = a[p];
      for (let w = 16; w < words; w += 16) next += a[p + w]; // all 0: only known once read
      p = next;
    }
  }
  const ns = Number(process.hrtime.bigint() - t0) / steps;
  return { ns: Math.round(ns * 10) / 10, ok: p >= 0 };
}

for (const mb of sizes.length ? sizes : [2, 16, 32, 150]) {
  const { ns, ok } = walk(mb, 16);
  out[mb] = ns;
  if (!json) console.log(`${String(mb).padStart(5)} MB: ${ns.toFixed(1)} ns per dependent load${ok ? '' : '!'}`);
}
const block = walk(150, 256);
out.block1k = block.ns;
if (!json) console.log(`  150 MB: ${block.ns.toFixed(1)} ns per dependent read of a whole 1 KiB block${block.ok ? '' : '!'}`);
if (json) console.log(JSON.stringify(out));
