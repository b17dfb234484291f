/** Summary statistics of a sample, for reports. */
export interface Summary {
  mean: number;
  p50: number;
  p95: number;
  max: number;
}

export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (n === 0) return { mean: NaN, p50: NaN, p95: NaN, max: NaN };
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i];
  return { mean: sum / n, p50: quantile(sorted, 0.5), p95: quantile(sorted, 0.95), max: sorted[n - 1] };
}

/** Nearest-rank quantile of an ascending array. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  return sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))];
}
