// A rank-one pair that is finite in float64 but overflows float32 storage is dropped, and the
// step is the plain one from the previous point (found by mutation testing: the check used to
// sum the float64 values, so it never fired and the sample ended as diverged).
import { describe, expect, it } from 'vitest';
import { SolverWorkspace, type SolverKernel } from '../../src/solver/index.js';
import { broydenNext } from '../../src/solver/broyden.js';
import { broydenNextWasm } from '../../src/solver/wasm-steps.js';

describe('Broyden update that overflows float32', () => {
  for (const kernel of ['js', 'wasm', 'wasm-f32'] as SolverKernel[]) {
    it(`${kernel}: the pair is zeroed, not counted, and z takes the plain step`, () => {
      for (const n of [1, 2, 5]) {
        const ws = new SolverWorkspace('broyden', 1, n, 2, kernel);
        expect(ws.kernel).toBe(kernel);
        // Δz = 1e-40 (subnormal in float32, nonzero), Δg = 1e12: vᵀΔg is tiny but above the
        // 1e-30 skip threshold, so u = (Δz + q)/vᵀΔg is about 1e40 — beyond FLT_MAX (3.4e38).
        ws.zPrev.fill(0); ws.z.fill(1e-40); ws.gPrev.fill(0); ws.g.fill(1e12); ws.alpha[0] = 1;
        const finite = kernel === 'js' ? (broydenNext(ws, 0, false), Number.isFinite(ws.z[0])) : Number.isFinite(broydenNextWasm(ws, 0, false));
        expect(finite).toBe(true);
        expect(ws.count[0]).toBe(0);
        expect(ws.head[0]).toBe(0);
        for (let k = 0; k < n; k++) {
          expect(ws.histA[k]).toBe(0);
          expect(ws.histB[k]).toBe(0);
          // J⁻¹ = −I with no pairs: z ← z + g
          expect(ws.z[k]).toBe(Math.fround(Math.fround(1e-40) + 1e12));
          expect(ws.zPrev[k]).toBe(Math.fround(1e-40));
          expect(ws.gPrev[k]).toBe(Math.fround(1e12));
        }
      }
    });
  }
});
