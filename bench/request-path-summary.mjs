// Summarizes bench/request-path-compare.sh's reports: per scenario, batching mode and load,
// req/s and p99 before and after in each round, and each side's spread (min–max) over rounds.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
const cells = new Map();
for (const f of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
  const [side, scenario, round] = f.replace('.json', '').split('-');
  const report = JSON.parse(readFileSync(join(dir, f), 'utf8'));
  for (const row of report.rows) {
    const key = `${scenario} | ${row.mode} | c=${row.concurrency}`;
    if (!cells.has(key)) cells.set(key, { before: [], after: [] });
    cells.get(key)[side][Number(round) - 1] = { rps: row.rps, p99: row.p99_ms, errors: row.errors };
  }
}
const fmt = (xs, k) => xs.map((x) => (x ? x[k].toFixed(k === 'rps' ? 0 : 1) : '-')).join(' / ');
const spread = (xs, k) => { const v = xs.filter(Boolean).map((x) => x[k]); return `${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)}`; };
console.log('| scenario | batching | load | req/s before (rounds) | req/s after | p99 ms before | p99 ms after | p99 spread before | after | errors before/after |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const [key, { before, after }] of cells) {
  const errs = (xs) => xs.filter(Boolean).reduce((a, x) => a + x.errors, 0);
  console.log(`| ${key} | ${fmt(before, 'rps')} | ${fmt(after, 'rps')} | ${fmt(before, 'p99')} | ${fmt(after, 'p99')} | ${spread(before, 'p99')} | ${spread(after, 'p99')} | ${errs(before)}/${errs(after)} |`);
}
