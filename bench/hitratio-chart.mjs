// Draws docs/hitratio.svg: hit ratio over cache size (1% to 30% of the keys)
// for the three traces of bench/hitratio.mjs, one line per policy: lru-cache,
// the page FIFO with second chance (the build before S3-FIFO), S3-FIFO with
// a fixed small share (its first build) and this build's.
//
//   node bench/hitratio-chart.mjs new.json old.json [fixed.json] [--out out.svg]
// new.json: bench/hitratio.mjs --json of this build (with lru-cache);
// old.json: bench/hitratio.mjs --esm <the build before> --no-lru --json;
// fixed.json: the same for the build with a fixed share (optional).
import { readFileSync, writeFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const outAt = argv.indexOf('--out');
const out = outAt >= 0 ? argv.splice(outAt, 2)[1] : 'docs/hitratio.svg';
const [newFile, oldFile, fixedFile] = argv;
const now = JSON.parse(readFileSync(newFile, 'utf8'));
const before = JSON.parse(readFileSync(oldFile, 'utf8'));
const fixed = fixedFile ? JSON.parse(readFileSync(fixedFile, 'utf8')) : null;
const traces = [
  ['zipf', 'Zipf s = 0.99'],
  ['scan', 'Zipf + scans (zipf accesses)'],
  ['shift', 'shifting hot set'],
];
const lines = [
  ['lru-cache', '#bcbd22', (t) => now.filter((r) => r.trace === t).map((r) => [r.pct, r.lruCache])],
  ['page FIFO + second chance (before)', '#1f77b4', (t) => before.filter((r) => r.trace === t).map((r) => [r.pct, r.shmcache])],
  ...(fixed ? [['S3-FIFO, fixed 10% small share', '#ff7f0e', (t) => fixed.filter((r) => r.trace === t).map((r) => [r.pct, r.shmcache])]] : []),
  ['S3-FIFO, adaptive share (now)', '#d62728', (t) => now.filter((r) => r.trace === t).map((r) => [r.pct, r.shmcache])],
];
const W = 1000;
const H = 380;
const panelW = 280;
const panelH = 250;
const top = 50;
const left = 60;
const gap = 30;
const lo = 0.5;
const hi = 0.85;
const xs = [1, 2, 5, 10, 20, 30];
// Log scale for the cache size.
const xOf = (p, i) => left + i * (panelW + gap) + (Math.log(p) / Math.log(30)) * panelW;
const yOf = (v) => top + panelH - ((v - lo) / (hi - lo)) * panelH;
const svg = [
  `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
  `<rect width="${W}" height="${H}" fill="white"/>`,
  `<text x="${left}" y="22" font-size="14">hit ratio over cache size (% of 1,000,000 keys, log scale), real addon, bench/hitratio.mjs</text>`,
];
traces.forEach(([t, title], i) => {
  const x0 = left + i * (panelW + gap);
  svg.push(`<text x="${x0}" y="${top - 8}">${title}</text>`);
  for (let v = lo; v <= hi + 1e-9; v += 0.05) {
    svg.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${yOf(v).toFixed(1)}" y2="${yOf(v).toFixed(1)}" stroke="#ddd"/>`);
    if (i === 0) svg.push(`<text x="${x0 - 6}" y="${(yOf(v) + 4).toFixed(1)}" text-anchor="end">${Math.round(v * 100)}%</text>`);
  }
  for (const p of xs) {
    svg.push(`<line x1="${xOf(p, i).toFixed(1)}" x2="${xOf(p, i).toFixed(1)}" y1="${top}" y2="${top + panelH}" stroke="#eee"/>`);
    svg.push(`<text x="${xOf(p, i).toFixed(1)}" y="${top + panelH + 16}" text-anchor="middle">${p}%</text>`);
  }
  for (const [name, color, pts] of lines) {
    const ps = pts(t).filter(([, v]) => v !== undefined);
    if (ps.length === 0) continue;
    svg.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${ps.map(([p, v]) => `${xOf(p, i).toFixed(1)},${yOf(v).toFixed(1)}`).join(' ')}"/>`);
    for (const [p, v] of ps) svg.push(`<circle cx="${xOf(p, i).toFixed(1)}" cy="${yOf(v).toFixed(1)}" r="3" fill="${color}"><title>${name} ${t} ${p}%: ${(v * 100).toFixed(2)}%</title></circle>`);
  }
});
lines.forEach(([name, color], j) => {
  const x = left + j * 235;
  svg.push(`<rect x="${x}" y="${H - 28}" width="12" height="12" fill="${color}"/>`, `<text x="${x + 18}" y="${H - 18}">${name}</text>`);
});
svg.push('</svg>');
writeFileSync(out, svg.join('\n') + '\n');
// The chart's numbers, as a Markdown table; under scans also each policy's
// drop from its own Zipf ratio at that size.
const pctOf = (v) => (v === undefined ? '–' : `${(v * 100).toFixed(2)}%`);
const ratioOf = (rows, t, p, key = 'shmcache') => rows?.find((x) => x.trace === t && x.pct === p)?.[key];
const md = [
  `| trace | cache | entries | lru-cache | before | ${fixed ? 'S3-FIFO fixed | ' : ''}now | now − lru-cache | scan drop: lru-cache / now |`,
  `|---|---:|---:|---:|---:|${fixed ? '---:|' : ''}---:|---:|---:|`,
];
for (const [t] of traces) {
  for (const r of now.filter((x) => x.trace === t)) {
    const drop =
      t === 'scan'
        ? `${((ratioOf(now, 'zipf', r.pct, 'lruCache') - r.lruCache) * 100).toFixed(2)} / ${((ratioOf(now, 'zipf', r.pct) - r.shmcache) * 100).toFixed(2)}`
        : '';
    md.push(
      `| ${t} | ${r.pct}% | ${r.capacityEntries.toLocaleString('en-US')} | ${pctOf(r.lruCache)} | ${pctOf(ratioOf(before, t, r.pct))} | ` +
        `${fixed ? pctOf(ratioOf(fixed, t, r.pct)) + ' | ' : ''}${pctOf(r.shmcache)} | ${((r.shmcache - r.lruCache) * 100).toFixed(2)} | ${drop} |`,
    );
  }
}
console.log(md.join('\n'));
