// Row helpers over flat typed arrays. Offsets instead of subarray() so the
// solver's loop allocates nothing.

type F = Float32Array | Float64Array;

export function copyRow(src: F, so: number, dst: F, dOff: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dOff + i] = src[so + i];
}

/** True if every value in the row is finite. */
export function allFinite(a: F, o: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (!Number.isFinite(a[o + i])) return false;
  return true;
}
