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
