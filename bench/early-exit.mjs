// Early exit on a stable prediction (docs/solver.md, issue 23), measured over a Fashion-MNIST test set:
// per bundle, the default stop (manifest tol) as the reference answer, fixed iteration budgets
// (max_iter k) and stop_mode "prediction" at several patiences and residual bounds. Mean NFE,
// accuracy, and top-1 agreement with the default stop. NFE and agreement are counts, not timings.
//   npm run build && node bench/early-exit.mjs [--data-dir DIR] [--limit N] [--only NAME]
//     [--configs 3:0.1:0.8,…] [--budgets 3,5,8,10] [--batch 50] [--out docs/results/early-exit.md]
//   node bench/early-exit.mjs --plot-from docs/results/early-exit.md   (redraws the plots from a report)
// Each config is patience:prediction_tol:prediction_margin.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { dirname, basename, join } from 'node:path';
import { argmax, DeqModel } from '../dist/runtime/index.js';
import { readFashionMnist } from '../dist/eval/fashion-mnist.js';
import { normalizePixels } from '../dist/preprocess/normalize.js';
import { logPlot } from '../dist/eval/svg-plot.js';

const here = (p) => new URL(p, import.meta.url).pathname;
const arg = (flag, dflt) => { const i = process.argv.indexOf(flag); return i > 0 ? process.argv[i + 1] : dflt; };
const list = (s) => s.split(',').filter(Boolean).map(Number);
const dataDir = arg('--data-dir', '/usr/share/datasets/fashion-mnist');
const configText = arg('--configs', '1:0.1:0,2:0.1:0,3:0.1:0,4:0.1:0,6:0.1:0,8:0.1:0,1:0.1:0.8,2:0.1:0.8,3:0.1:0.8,4:0.1:0.8,3:0.1:0.5,3:0.1:0.9');
const configs = configText.split(',').map((c) => { const [k, t, m] = c.split(':').map(Number); return { k, t, m }; });
const budgets = list(arg('--budgets', '3,5,8,10'));
const B = Number(arg('--batch', '50'));
const out = arg('--out');
const only = arg('--only');
const names = ['fashion-mnist-plain', 'fashion-mnist-jr'].filter((n) => !only || n === only);


/** One plot per model beside `out`: accuracy (linear) against mean NFE, each stop rule a line through its settings. Returns the markdown that shows them. */
async function plots(reports, out, count) {
  const colors = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
  const md = [];
  for (const r of reports) {
    const series = [];
    const base = r.rows.filter((x) => x.kind === 'budget' || x.kind === 'default').sort((a, b) => a.nfe - b.nfe);
    series.push({ label: 'max_iter budgets, then the default stop', color: colors[0], values: base.map((x) => 100 * x.accuracy), x: base.map((x) => x.nfe) });
    const kinds = [...new Set(r.rows.filter((x) => x.kind.startsWith('prediction')).map((x) => x.kind))];
    kinds.forEach((kind) => {
      const p = r.rows.filter((x) => x.kind === kind).sort((a, b) => a.nfe - b.nfe);
      if (p.length < 2) return;
      const [, t, margin] = kind.split(' ');
      series.push({ label: `prediction, tol ${t}, margin ${margin}, patience ${p.map((x) => x.patience).join('/')}`, color: colors[series.length % colors.length], values: p.map((x) => 100 * x.accuracy), x: p.map((x) => x.nfe) });
    });
    const file = `${basename(out).replace(/\.md$/, '')}-${r.name}.svg`;
    await writeFile(join(dirname(out), file), logPlot(series, `${r.name}: accuracy against mean NFE (${count} test images)`, 'mean NFE per image', 'accuracy (%)', { y: 'linear', legend: 'bottom' }));
    md.push(`![${r.name}: accuracy against mean NFE](${file})`, '');
  }
  return md;
}

// --plot-from FILE.md: redraw the plots from a report this script wrote, without measuring again.
const plotFrom = arg('--plot-from');
if (plotFrom) {
  const text = await readFile(plotFrom, 'utf8');
  const reports = [];
  let cur = null;
  for (const line of text.split('\n')) {
    const h = /^## (\S+)$/.exec(line);
    if (h) reports.push((cur = { name: h[1], rows: [] }));
    const m = /^\| (default stop|max_iter \d+|prediction: patience (\d+), prediction_tol (\S+), prediction_margin (\S+)) .*?\| ([\d.]+) \| [\d.]+× \| ([\d.]+)% \|/.exec(line);
    if (!cur || !m) continue;
    const kind = m[1].startsWith('default') ? 'default' : m[1].startsWith('max_iter') ? 'budget' : `prediction ${m[3]} ${m[4]}`;
    cur.rows.push({ kind, patience: m[2] && Number(m[2]), nfe: Number(m[5]), accuracy: Number(m[6]) / 100 });
  }
  const count = Number(/Test images: (\d+)/.exec(text)?.[1]);
  await plots(reports, plotFrom, count);
  process.exit(0);
}

const set = await readFashionMnist('test', dataDir);
const count = Math.min(Number(arg('--limit', String(set.count))), set.count);
const started = new Date().toISOString();
const load0 = loadavg()[0];
const REASONS = ['deadline', 'converged', 'max_iter', 'diverged', 'deadline', 'prediction'];

async function run(m, solver) {
  const per = 784, top1 = new Int32Array(count);
  let nfe = 0, correct = 0;
  const reasons = {};
  const input = new Float32Array(B * per);
  const t0 = performance.now();
  for (let s0 = 0; s0 < count; s0 += B) {
    const b = Math.min(B, count - s0);
    for (let i = 0; i < b; i++) normalizePixels(set.images.subarray((s0 + i) * per, (s0 + i + 1) * per), m.manifest.preprocess, input, i * per);
    const r = await m.infer({ input: input.subarray(0, b * per), batch: b, solver });
    const logits = r.outputs.logits.data;
    const k = logits.length / b;
    for (let i = 0; i < b; i++) {
      top1[s0 + i] = argmax(logits.subarray(i * k, (i + 1) * k));
      if (top1[s0 + i] === set.labels[s0 + i]) correct++;
      nfe += r.solver.iterations[i];
      const why = REASONS[r.solver.end[i]];
      reasons[why] = (reasons[why] ?? 0) + 1;
    }
  }
  return { top1, nfe: nfe / count, accuracy: correct / count, reasons, s: (performance.now() - t0) / 1000 };
}

const agree = (a, b) => { let n = 0; for (let i = 0; i < a.length; i++) n += a[i] === b[i] ? 1 : 0; return n / a.length; };
const pct = (x) => (x * 100).toFixed(2);
const reasonText = (r) => Object.entries(r).sort().map(([k, v]) => `${k} ${v}`).join(', ');
const reports = [];
for (const name of names) {
  const m = await DeqModel.load(here(`../models/${name}`));
  const d = m.solverDefaults;
  const ref = await run(m, {});
  const rows = [{ setting: `default stop (${d.stopMode} tol ${d.tol}, max_iter ${d.maxIter})`, kind: 'default', ...ref, agreement: 1 }];
  console.error(`${name}: default NFE ${ref.nfe.toFixed(2)} accuracy ${pct(ref.accuracy)} (${ref.s.toFixed(0)} s)`);
  for (const k of budgets) {
    const r = await run(m, { maxIter: k });
    rows.push({ setting: `max_iter ${k}`, kind: 'budget', ...r, agreement: agree(r.top1, ref.top1) });
    console.error(`  max_iter ${k}: NFE ${r.nfe.toFixed(2)} accuracy ${pct(r.accuracy)} agreement ${pct(agree(r.top1, ref.top1))}`);
  }
  for (const { k, t, m: margin } of configs) {
    const r = await run(m, { patience: k, predictionTol: t, predictionMargin: margin });
    rows.push({ setting: `prediction: patience ${k}, prediction_tol ${t}, prediction_margin ${margin}`, kind: `prediction ${t} ${margin}`, patience: k, ...r, agreement: agree(r.top1, ref.top1) });
    console.error(`  patience ${k} prediction_tol ${t} margin ${margin}: NFE ${r.nfe.toFixed(2)} accuracy ${pct(r.accuracy)} agreement ${pct(agree(r.top1, ref.top1))} (${reasonText(r.reasons)})`);
  }
  reports.push({ name, rows, ref });
  await m.release();
}

const lines = [
  '# Early exit on a stable prediction: Fashion-MNIST',
  '',
  `Generated by \`node bench/early-exit.mjs --data-dir ${dataDir}${only ? ` --only ${only}` : ''} --configs ${configText} --budgets ${budgets.join(',')} --batch ${B}${out ? ` --out ${out}` : ''}\` (after \`npm run build\`), started ${started}.`,
  `Test images: ${count} of ${set.count}, batch ${B}, batching off (DeqModel.infer). Machine: ${cpus()[0]?.model ?? '?'}, shared with other jobs (load ${load0.toFixed(1)} at start); nothing here is a timing.`,
  'NFE: cell evaluations per image, the initial f(z₀) included; the head runs on the current iterate in prediction mode are not cell evaluations and are not counted.',
  'Agreement: share of images whose top-1 equals the top-1 at the default stop.',
  '',
];
for (const r of reports) {
  lines.push(`## ${r.name}`, '', '| setting | mean NFE | NFE vs default | accuracy | Δ accuracy (points) | top-1 agreement | why samples stopped |', '|---|---|---|---|---|---|---|');
  for (const x of r.rows) {
    lines.push(`| ${x.setting} | ${x.nfe.toFixed(2)} | ${(x.nfe / r.ref.nfe).toFixed(2)}× | ${pct(x.accuracy)}% | ${((x.accuracy - r.ref.accuracy) * 100).toFixed(2)} | ${pct(x.agreement)}% | ${reasonText(x.reasons)} |`);
  }
  lines.push('');
}
if (out) {
  await mkdir(dirname(out), { recursive: true });
  lines.push(...(await plots(reports, out, count)));
  await writeFile(out, lines.join('\n'));
}
console.log(lines.join('\n'));
