import { describe, expect, it } from 'vitest';
import { markdownTable } from '../../src/eval/markdown-table.js';
import { benchSolveMarkdown, type BenchSolveReport } from '../../src/eval/bench-solve.js';
import { benchCompareMarkdown, type BenchCompareReport } from '../../src/eval/bench-compare.js';

/** Every GFM table in `md`: header, delimiter and row cell counts (escaped pipes are not separators). */
export function tableShapes(md: string): { header: number; delimiter: number; rows: number[] }[] {
  const cells = (line: string) => line.trim().replace(/\\\|/g, '').split('|').length - 2;
  const lines = md.split('\n');
  const tables = [];
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i].startsWith('|') || !/^\|(-+\|)+$/.test(lines[i + 1].trim())) continue;
    const rows: number[] = [];
    let k = i + 2;
    for (; k < lines.length && lines[k].startsWith('|'); k++) rows.push(cells(lines[k]));
    tables.push({ header: cells(lines[i]), delimiter: cells(lines[i + 1]), rows });
    i = k;
  }
  return tables;
}

function expectWellFormed(md: string, tables: number): void {
  const shapes = tableShapes(md);
  expect(shapes).toHaveLength(tables);
  for (const t of shapes) {
    expect(t.delimiter).toBe(t.header);
    for (const r of t.rows) expect(r).toBe(t.header);
  }
}

describe('markdownTable', () => {
  it('writes one delimiter cell per header cell and escapes pipes in cells', () => {
    const md = markdownTable(['a', 'b'], [['1', 'x|y']]).join('\n');
    expect(md).toBe('| a | b |\n|---|---|\n| 1 | x\\|y |');
    expectWellFormed(md, 1);
  });

  it('refuses a row whose cell count differs from the header', () => {
    expect(() => markdownTable(['a', 'b'], [['1']])).toThrow(/row 0 has 1 cells, the header 2/);
  });
});

describe('bench reports render as tables', () => {
  it('bench solve: the kernel table and the RSS table', () => {
    const r: BenchSolveReport = {
      model: 'm', provider: 'cpu', threads: 1, solver: { method: 'broyden', tol: 1e-3, stop_mode: 'rel', max_iter: 30, history: 8 },
      default_kernel: 'wasm', inputs: 'x', machine: 'cpu', load_average: [0, 0, 0],
      rows: [{ batch: 1, kernel: 'wasm', runs: 4, nfe_mean: 5, solve_ms: 1, cell_ms: 0.8, solver_ms: 0.2, solver_fraction: 0.2, solver_us_per_iter: 40 }],
      rss: [{ max_iter: 10, batch: 32, history: 8, kernel: 'wasm', nfe_mean: 10, peak_rss_mb: 100 }],
    };
    expectWellFormed(benchSolveMarkdown(r, 'cmd'), 2);
  });

  it('bench compare: image and language-model tables', () => {
    const common = { model: 'm', machine: 'cpu', load_average: [0, 0, 0], torch: '1.13', torch_blas: 'openblas', solver_kernel: 'wasm' };
    const image = { ...common, task: 'image-classification', images: 'x', rows: [{ batch: 1, threads: 1, deq_serve_ms: 1, pytorch_ms: 5, speedup: 5, deq_serve_solver_ms: 0.2, speedup_solver_free: 6, nfe_deq_serve: 5, nfe_pytorch: 5, max_abs_diff: 1e-5, accuracy_deq_serve: 0.9, accuracy_pytorch: 0.9 }] };
    expectWellFormed(benchCompareMarkdown(image as unknown as BenchCompareReport, 'cmd'), 1);
    const lm = { ...common, task: 'language-model', windows: 'x', context: 64, stride: 32, pytorch_parity: { cases: 3, max_abs_diff: 1e-6 },
      rows: [{ batch: 1, threads: 1, windows: 4, deq_serve_ms: 1, pytorch_ms: 5, tokens_per_s_deq_serve: 100, tokens_per_s_pytorch: 20, speedup: 5, nfe_deq_serve: 7, nfe_pytorch: 7, max_abs_diff: 1e-6, perplexity_deq_serve: 200, perplexity_pytorch: 200 }] };
    expectWellFormed(benchCompareMarkdown(lm as unknown as BenchCompareReport, 'cmd'), 1);
  });
});
