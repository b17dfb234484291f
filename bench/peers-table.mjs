// Prints the README's "Performance against what you would use instead" table from the committed
// peer runs (docs/results/bench-peers-<bundle>.json and http-peers.json), so the README's ratios are
// read from the run rather than copied by hand:
//   node bench/peers-table.mjs
import { readFileSync } from 'node:fs';

const BUNDLES = ['fashion-mnist-jr', 'fashion-mnist-plain', 'brown-lm-jr'];
const PEERS = [
  ['torch-eager', 'PyTorch 2.x eager'],
  ['torch-compile', '`torch.compile`'],
  ['torchdeq', 'torchdeq'],
  ['onnxruntime', 'ONNX Runtime from Python'],
  ['pytorch', 'PyTorch 1.13 (Debian)'],
];
const read = (name) => JSON.parse(readFileSync(new URL(`../docs/results/${name}`, import.meta.url), 'utf8'));

const lines = [`| bundle, batch | ${PEERS.map(([, label]) => label).join(' | ')} |`, `|---|${PEERS.map(() => '---').join('|')}|`];
const nfeNotes = [];
const compile = [];
let machine;
for (const bundle of BUNDLES) {
  const r = read(`bench-peers-${bundle}.json`);
  machine ??= r.machine;
  for (const row of r.rows.filter((x) => x.threads === 1)) {
    const cells = PEERS.map(([peer]) => {
      const p = row.peers.find((x) => x.peer === peer);
      if (!p) return 'not run';
      // A peer whose mean NFE is off by more than 0.5 solved a different problem size: flag it.
      const off = Math.abs(p.nfe - row.nfe_deq_serve) > 0.5;
      if (off) nfeNotes.push(`${peer} on ${bundle} at batch ${row.batch}: NFE ${p.nfe.toFixed(2)} against ${row.nfe_deq_serve.toFixed(2)}, max |Δ| ${Number.isFinite(p.max_abs_diff) ? p.max_abs_diff.toExponential(1) : 'not finite (NaN outputs)'}`);
      if (p.compile_s !== undefined) compile.push(p.compile_s);
      return `${p.ratio.toFixed(1)}×${off ? '*' : ''}`;
    });
    lines.push(`| ${bundle}, ${row.batch} | ${cells.join(' | ')} |`);
  }
}
console.log(`Machine: ${machine}\n`);
console.log(lines.join('\n'));
console.log('\n* NFE differs by more than 0.5:');
for (const n of nfeNotes) console.log(`- ${n}`);
console.log(`\ntorch.compile compile time per new shape: ${Math.min(...compile).toFixed(1)} to ${Math.max(...compile).toFixed(1)} s`);

const http = read('http-peers.json');
const ours = http.rows.filter((x) => x.mode !== 'fastapi');
for (const peer of http.rows.filter((x) => x.mode === 'fastapi')) {
  const o = ours.find((x) => x.concurrency === peer.concurrency);
  console.log(`HTTP c=${peer.concurrency}: req/s ${(o.rps / peer.rps).toFixed(2)}× (${o.rps.toFixed(0)} vs ${peer.rps.toFixed(0)}), p50 ${o.p50_ms} vs ${peer.p50_ms} ms, p99 ${o.p99_ms} vs ${peer.p99_ms} ms`);
}
