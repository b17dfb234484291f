import { readFileSync } from 'node:fs';

// Loads the solver's WebAssembly SIMD kernels (assembly/solver-kernels.ts and its
// float32 twin solver-kernels-f32.ts, built by `npm run build:wasm` into dist/). The path is the same from
// src/solver (tests) and dist/solver (the package): both sit two levels below the root.
const WASM_URL = new URL('../../dist/solver-kernels.wasm', import.meta.url);

/** The kernels' exports; every pointer is a byte offset into the workspace's memory. */
export interface KernelExports {
  residual(z: number, fz: number, g: number, n: number, out: number): void;
  finite(p: number, n: number): number;
  copy(dst: number, src: number, bytes: number): void;
  fixedPoint(z: number, g: number, d: number, n: number): number;
  broydenStart(z: number, g: number, p: number, zPrev: number, gPrev: number, n: number): number;
  broydenDots(z: number, zPrev: number, p: number, g: number, U: number, V: number, stride: number, count: number, n: number, out: number): void;
  broydenCombine(z: number, zPrev: number, p: number, g: number, gPrev: number, U: number, V: number, stride: number, coef: number, count: number, n: number, s: number, out: number): void;
  broydenUpdateAccept(z: number, zPrev: number, g: number, gPrev: number, p: number, s: number, Us: number, Vs: number, inv: number, dzScale: number, cOld: number, tail: number, n: number, out: number): void;
  broydenAccept(z: number, zPrev: number, g: number, gPrev: number, p: number, s: number, Us: number, tail: number, fromPrev: number, n: number): number;
  andersonGram(X: number, F: number, stride: number, g: number, count: number, n: number, out: number): void;
  andersonMix(z: number, X: number, F: number, stride: number, alpha: number, beta: number, count: number, n: number): number;
}

// The project's TypeScript lib (ES2022, @types/node) has no WebAssembly value types; this is the part used.
interface WasmMemory { readonly buffer: ArrayBuffer }
type WasmModule = object;
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (mod: WasmModule, imports: object) => { exports: unknown };
  Memory: new (desc: { initial: number; maximum: number }) => WasmMemory;
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Which kernel module: float64 arithmetic as the reference does it, or float32. */
export type KernelPrecision = 'f64' | 'f32';

const FILES: Record<KernelPrecision, URL> = {
  f64: WASM_URL,
  f32: new URL('../../dist/solver-kernels-f32.wasm', import.meta.url),
};
const cached = new Map<KernelPrecision, WasmModule | null>();
const loadErrors = new Map<KernelPrecision, string>();

/** The compiled kernel module, or null when it is missing or this engine lacks SIMD. */
export function kernelModule(precision: KernelPrecision = 'f64'): WasmModule | null {
  let mod = cached.get(precision);
  if (mod !== undefined) return mod;
  try {
    mod = new WA.Module(readFileSync(FILES[precision]));
    loadErrors.set(precision, '');
  } catch (err) {
    loadErrors.set(precision, err instanceof Error ? err.message : String(err));
    mod = null;
  }
  cached.set(precision, mod);
  return mod;
}

/** Why the kernels are unavailable ('' when they loaded). */
export function kernelLoadError(precision: KernelPrecision = 'f64'): string {
  kernelModule(precision);
  return loadErrors.get(precision) ?? '';
}

/**
 * A fixed-size memory of `bytes` (rounded up to 64 KiB pages) with the kernels bound to it.
 * The memory never grows, so typed-array views on its buffer stay valid.
 */
export function instantiateKernels(bytes: number, precision: KernelPrecision = 'f64'): { buffer: ArrayBuffer; kernels: KernelExports } {
  const mod = kernelModule(precision);
  if (!mod) throw new Error(`solver kernels unavailable: ${kernelLoadError(precision)}`);
  const pages = Math.ceil(bytes / 65536);
  const memory = new WA.Memory({ initial: pages, maximum: pages });
  const kernels = new WA.Instance(mod, { env: { memory } }).exports as KernelExports;
  return { buffer: memory.buffer, kernels };
}
