import { readFileSync } from 'node:fs';

// Loads the solver's WebAssembly SIMD kernels (assembly/solver-kernels.ts, built by
// `npm run build:wasm` into dist/solver-kernels.wasm). The path is the same from
// src/solver (tests) and dist/solver (the package): both sit two levels below the root.
const WASM_URL = new URL('../../dist/solver-kernels.wasm', import.meta.url);

/** The kernels' exports; every pointer is a byte offset into the workspace's memory. */
export interface KernelExports {
  residual(z: number, fz: number, g: number, n: number, out: number): void;
  sum(p: number, n: number): number;
  copy(dst: number, src: number, bytes: number): void;
  fixedPoint(z: number, g: number, d: number, n: number): number;
  broydenStart(z: number, g: number, p: number, zPrev: number, gPrev: number, n: number): number;
  broydenDelta(z: number, zPrev: number, p: number, n: number): void;
  dot2(a: number, x: number, b: number, y: number, n: number, out: number): void;
  broydenCombine(z: number, zPrev: number, g: number, gPrev: number, U: number, V: number, stride: number, coef: number, count: number, n: number, s: number, out: number): void;
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

let cached: WasmModule | null | undefined;
let loadError = '';

/** The compiled kernel module, or null when it is missing or this engine lacks SIMD. */
export function kernelModule(): WasmModule | null {
  if (cached !== undefined) return cached;
  try {
    cached = new WA.Module(readFileSync(WASM_URL));
  } catch (err) {
    loadError = err instanceof Error ? err.message : String(err);
    cached = null;
  }
  return cached;
}

/** Why the kernels are unavailable ('' when they loaded). */
export function kernelLoadError(): string {
  kernelModule();
  return loadError;
}

/**
 * A fixed-size memory of `bytes` (rounded up to 64 KiB pages) with the kernels bound to it.
 * The memory never grows, so typed-array views on its buffer stay valid.
 */
export function instantiateKernels(bytes: number): { buffer: ArrayBuffer; kernels: KernelExports } {
  const mod = kernelModule();
  if (!mod) throw new Error(`solver kernels unavailable: ${loadError}`);
  const pages = Math.ceil(bytes / 65536);
  const memory = new WA.Memory({ initial: pages, maximum: pages });
  const kernels = new WA.Instance(mod, { env: { memory } }).exports as KernelExports;
  return { buffer: memory.buffer, kernels };
}
