// The js fallback: a workspace asked for 'wasm' whose memory the engine refuses, or a build
// without the kernel module, runs the TypeScript reference and solves the same.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { defaultSolverKernel, solve, SolverWorkspace } from '../../src/solver/index.js';
import { instantiateKernels } from '../../src/solver/wasm-kernels.js';
import { batchedMap, linearFixedPoint, randomMatrix, randomVector } from './maps.js';

const state = vi.hoisted(() => ({ moduleMissing: false }));

vi.mock('../../src/solver/wasm-kernels.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/solver/wasm-kernels.js')>();
  return {
    ...real,
    kernelModule: () => (state.moduleMissing ? null : real.kernelModule()),
    instantiateKernels: vi.fn(() => { throw new RangeError('WebAssembly.Memory(): could not allocate memory'); }),
  };
});

beforeEach(() => {
  state.moduleMissing = false;
  vi.mocked(instantiateKernels).mockClear();
});

describe('js fallback', () => {
  it('a wasm workspace whose memory is refused falls back to js buffers', () => {
    const ws = new SolverWorkspace('broyden', 2, 3, 4, 'wasm');
    expect(instantiateKernels).toHaveBeenCalledTimes(1);
    expect(vi.mocked(instantiateKernels).mock.calls[0][0]).toBeGreaterThan(65536 + 4 * (2 * 4 * 3 * 2 + 6 * 2 * 3));
    expect(ws.kernel).toBe('js');
    expect(ws.wasm).toBeNull();
    expect(ws.z.length).toBe(6);
    expect(ws.histA.length).toBe(2 * 4 * 3);
    expect(ws.z.buffer).not.toBe(ws.histA.buffer);
    expect(ws.scratch.length).toBe(6);
    // byteLength counts the buffers themselves (no wasm memory).
    const f32 = 6 * 6 + 2 * 24;
    expect(ws.byteLength).toBe(4 * f32 + 8 * (6 + 5) + 42 * 2);
  });

  it('a js workspace never asks for wasm memory', () => {
    new SolverWorkspace('anderson', 1, 3, 2, 'js');
    expect(instantiateKernels).not.toHaveBeenCalled();
  });

  for (const method of ['broyden', 'anderson', 'fixed-point'] as const) {
    it(`${method}: solve() on the fallback reaches (I − W)⁻¹b`, async () => {
      const n = 6;
      const W = randomMatrix(n, 0.5, 3), b = randomVector(n, 4);
      const exact = linearFixedPoint(W, b, n);
      const ws = new SolverWorkspace(method, 2, n, 5);
      expect(ws.kernel).toBe('js');
      const z = new Float32Array(2 * n);
      const res = await solve(batchedMap(W, b, n, (x) => x), 2, n, z, { method, history: 5, tol: 1e-6, stopMode: 'abs', maxIter: 300 }, ws);
      expect(Array.from(res.converged)).toEqual([1, 1]);
      for (let i = 0; i < 2 * n; i++) expect(Math.abs(z[i] - exact[i % n])).toBeLessThan(1e-5);
    });
  }

  it('without the kernel module the default kernel is js', () => {
    state.moduleMissing = true;
    expect(defaultSolverKernel()).toBe('js');
    const ws = new SolverWorkspace('fixed-point', 1, 2, 1);
    expect(ws.kernel).toBe('js');
    expect(instantiateKernels).not.toHaveBeenCalled();
    state.moduleMissing = false;
    expect(defaultSolverKernel()).toBe('wasm');
  });
});
