// BLAS-1 kernels over rows of flat typed arrays. Offsets instead of subarray()
// so the solver's inner loop allocates nothing.

type F = Float32Array | Float64Array;

export function dot(a: F, ao: number, b: F, bo: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[ao + i] * b[bo + i];
  return s;
}

export function norm2(a: F, ao: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) { const v = a[ao + i]; s += v * v; }
  return Math.sqrt(s);
}

/** y[yo..] += alpha * x[xo..] */
export function axpy(alpha: number, x: F, xo: number, y: F, yo: number, n: number): void {
  for (let i = 0; i < n; i++) y[yo + i] += alpha * x[xo + i];
}

export function copyRow(src: F, so: number, dst: F, dOff: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dOff + i] = src[so + i];
}

export function fillRow(dst: F, o: number, n: number, v: number): void {
  for (let i = 0; i < n; i++) dst[o + i] = v;
}

/** True if every value in the row is finite. */
export function allFinite(a: F, o: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (!Number.isFinite(a[o + i])) return false;
  return true;
}
