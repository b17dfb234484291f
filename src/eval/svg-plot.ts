/** One line of a residual plot. */
export interface Series {
  label: string;
  color: string;
  /** y per x = 1, 2, …; plotted on a log scale. Non-positive values are skipped. */
  values: ArrayLike<number>;
  /** x of each value (linear axis); 1, 2, … when left out. */
  x?: ArrayLike<number>;
}

/**
 * A small standalone SVG line chart with a log10 y axis (residual against iteration, latency
 * against throughput), or a linear one (`y: 'linear'`: accuracy against NFE).
 */
export function logPlot(series: Series[], title: string, xLabel: string, yLabel: string, opts: { y?: 'log' | 'linear'; legend?: 'top' | 'bottom' } = {}): string {
  const linear = opts.y === 'linear';
  const W = 640, H = 400, L = 70, R = 20, T = 40, B = 50;
  const xOf = (s: Series, i: number) => (s.x ? s.x[i] : i + 1);
  let x0 = 1, x1 = Math.max(2, ...series.map((s) => s.values.length));
  if (series.some((s) => s.x)) {
    const all = series.flatMap((s) => Array.from({ length: s.values.length }, (_, i) => xOf(s, i))).filter(Number.isFinite);
    x0 = Math.min(0, ...all);
    x1 = Math.max(x0 + 1e-9, ...all);
  }
  let lo = Infinity, hi = -Infinity;
  const plotted = (v: number) => Number.isFinite(v) && (linear || v > 0);
  for (const s of series) for (let i = 0; i < s.values.length; i++) {
    const v = s.values[i];
    if (plotted(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  if (!Number.isFinite(lo)) { lo = 1e-6; hi = 1; }
  const pad = linear ? Math.max((hi - lo) * 0.08, Math.abs(hi) * 1e-3, 1e-9) : 0;
  const y0 = linear ? lo - pad : Math.floor(Math.log10(lo));
  const y1 = linear ? hi + pad : Math.ceil(Math.log10(hi)) === Math.floor(Math.log10(lo)) ? Math.floor(Math.log10(lo)) + 1 : Math.ceil(Math.log10(hi));
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (v: number) => T + ((y1 - (linear ? v : Math.log10(v))) / (y1 - y0)) * (H - T - B);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${escape(title)}</text>`,
  ];
  const grid = linear ? niceTicks(y0, y1, 6) : Array.from({ length: y1 - y0 + 1 }, (_, k) => 10 ** (y0 + k));
  for (const v of grid) {
    const y = py(v);
    out.push(`<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#ddd"/>`, `<text x="${L - 6}" y="${y + 4}" text-anchor="end">${linear ? Number(v.toPrecision(4)) : `1e${Math.round(Math.log10(v))}`}</text>`);
  }
  const ticks = series.some((s) => s.x)
    ? niceTicks(x0, x1, 8)
    : Array.from({ length: Math.floor((x1 - 1) / Math.max(1, Math.ceil(x1 / 10))) + 1 }, (_, k) => 1 + k * Math.max(1, Math.ceil(x1 / 10)));
  for (const x of ticks) out.push(`<text x="${px(x)}" y="${H - B + 16}" text-anchor="middle">${Number(x.toPrecision(3))}</text>`);
  out.push(
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${escape(xLabel)}</text>`,
    `<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${escape(yLabel)}</text>`,
  );
  // The legend sits top right (or bottom right), as wide as its longest label (about 7 px a character at 12 px).
  const legendX = Math.max(L + 10, W - R - 24 - 7 * Math.max(0, ...series.map((s) => s.label.length)));
  series.forEach((s, k) => {
    const pts: string[] = [];
    for (let i = 0; i < s.values.length; i++) {
      const v = s.values[i];
      if (plotted(v)) pts.push(`${px(xOf(s, i)).toFixed(1)},${py(v).toFixed(1)}`);
    }
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.join(' ')}"/>`);
    if (s.x) for (const p of pts) { const [cx, cy] = p.split(','); out.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${s.color}"/>`); }
    const ly = opts.legend === 'bottom' ? H - B - 12 - (series.length - 1 - k) * 18 : T + 8 + k * 18;
    out.push(`<rect x="${legendX}" y="${ly}" width="12" height="3" fill="${s.color}"/>`, `<text x="${legendX + 18}" y="${ly + 5}">${escape(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** One group of bars: the figures of one run (a mode at one load), one pair per class. */
export interface BarGroup {
  label: string;
  /** Per class, in the order of `classes`: the lower figure (solid bar) and the upper one (pale bar behind it). */
  bars: { low: number; high: number }[];
}

/**
 * A grouped bar chart on a linear y axis from 0: one group per run, one bar per class inside it,
 * the solid part up to `low` (p50) and a pale part up to `high` (p99). This is what a mixed-traffic
 * run is read for: how each model fares beside the others, not one blended figure.
 */
export function barPlot(groups: BarGroup[], classes: { label: string; color: string }[], title: string, yLabel: string, legend: { low: string; high: string }): string {
  // The legend runs in a row under the title, so no bar can hide behind it.
  const W = 640, H = 400, L = 70, R = 20, T = 56, B = 50;
  const hi = Math.max(1e-9, ...groups.flatMap((g) => g.bars.flatMap((b) => [b.low, b.high]).filter(Number.isFinite)));
  // The axis ends at the first round tick at or above the tallest bar.
  const first = niceTicks(0, hi, 6);
  const step = first.length > 1 ? first[1] - first[0] : hi;
  const top = Math.ceil(hi / step - 1e-9) * step;
  const ticks = niceTicks(0, top, 6);
  const py = (v: number) => T + (1 - v / top) * (H - T - B);
  const slot = (W - L - R) / Math.max(1, groups.length);
  const barW = Math.min(48, (slot * 0.8) / Math.max(1, classes.length));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${escape(title)}</text>`,
  ];
  for (const v of ticks) {
    const y = py(v);
    out.push(`<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#ddd"/>`, `<text x="${L - 6}" y="${y + 4}" text-anchor="end">${Number(v.toPrecision(4))}</text>`);
  }
  groups.forEach((g, gi) => {
    const x0 = L + gi * slot + (slot - barW * classes.length) / 2;
    g.bars.forEach((b, ci) => {
      const x = (x0 + ci * barW).toFixed(1), w = (barW - 2).toFixed(1), color = classes[ci]?.color ?? '#777';
      if (Number.isFinite(b.high)) out.push(`<rect x="${x}" y="${py(b.high).toFixed(1)}" width="${w}" height="${(py(0) - py(b.high)).toFixed(1)}" fill="${color}" fill-opacity="0.3"/>`);
      if (Number.isFinite(b.low)) out.push(`<rect x="${x}" y="${py(b.low).toFixed(1)}" width="${w}" height="${(py(0) - py(b.low)).toFixed(1)}" fill="${color}"/>`);
    });
    out.push(`<text x="${(L + gi * slot + slot / 2).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${escape(g.label)}</text>`);
  });
  out.push(
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/>`,
    `<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${escape(yLabel)}</text>`,
  );
  const entries = [...classes.map((c) => ({ label: c.label, color: c.color, opacity: 1 })), { label: `solid: ${legend.low}, pale: ${legend.high}`, color: '#777', opacity: 0 }];
  // About 7 px a character at 12 px.
  let lx = L;
  for (const e of entries) {
    if (e.opacity) out.push(`<rect x="${lx}" y="30" width="12" height="10" fill="${e.color}"/>`);
    out.push(`<text x="${lx + (e.opacity ? 18 : 0)}" y="39">${escape(e.label)}</text>`);
    lx += (e.opacity ? 18 : 0) + 7 * e.label.length + 16;
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Round tick values inside [lo, hi]: multiples of 1, 2 or 5 × 10^k, about `target` of them
 * (0, 200, 400 … rather than 111, 222, 334 …).
 */
export function niceTicks(lo: number, hi: number, target: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  // Rounded to the step's own precision, so 0.1 + 0.2 prints as 0.3.
  const digits = Math.max(0, -Math.floor(Math.log10(step)));
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toFixed(digits)));
  return ticks;
}

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
