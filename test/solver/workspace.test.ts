// SolverWorkspace: buffer sizes per method (docs/solver.md: Broyden 2·m·n + 6·n float32 per
// sample, Anderson 2·m·n + 3·n, fixed point 3·n), byteLength, fits, and the wasm layout
// (one memory, buffers disjoint, aligned, inside it, page 0 left to the module).
import { describe, expect, it } from 'vitest';
import { defaultSolverKernel, SolverWorkspace, type SolverKernel, type SolverMethod } from '../../src/solver/index.js';

const KERNELS: SolverKernel[] = ['js', 'wasm'];
const METHODS: SolverMethod[] = ['broyden', 'anderson', 'fixed-point'];

/** Bytes of the per-sample bookkeeping: count, head (int32); alpha, resPrev, gNorm, abs0 (float64); active, restart (uint8). */
const PER_SAMPLE_BYTES = 4 + 4 + 8 + 8 + 8 + 8 + 1 + 1;

function expectedLengths(method: SolverMethod, batch: number, n: number, m: number) {
  const bn = batch * n;
  const broyden = method === 'broyden', anderson = method === 'anderson', hist = broyden || anderson;
  return {
    z: bn, fz: bn, g: bn,
    zPrev: broyden ? bn : 0, gPrev: broyden ? bn : 0, p: broyden ? bn : 0,
    histA: hist ? batch * m * n : 0, histB: hist ? batch * m * n : 0,
    gram: anderson ? batch * m * m : 0,
    system: anderson ? (m + 1) * (m + 2) : 0,
    coeff: hist ? m + 1 : 0,
  };
}

describe('SolverWorkspace', () => {
  it('needs batch, n and history ≥ 1', () => {
    for (const [b, n, m] of [[0, 4, 2], [1, 0, 2], [1, 4, 0], [-1, 4, 2], [NaN, 4, 2], [1, NaN, 2], [1, 4, NaN]]) {
      expect(() => new SolverWorkspace('broyden', b, n, m, 'js')).toThrow(/workspace needs batch, n, history ≥ 1/);
    }
    for (const kernel of KERNELS) expect(new SolverWorkspace('broyden', 1, 1, 1, kernel).z.length).toBe(1);
  });

  it('is wasm by default here (the build compiled the kernels), js when asked', () => {
    expect(defaultSolverKernel()).toBe('wasm');
    const w = new SolverWorkspace('anderson', 2, 3, 4);
    expect(w.kernel).toBe('wasm');
    expect(w.wasm).not.toBeNull();
    const j = new SolverWorkspace('anderson', 2, 3, 4, 'js');
    expect(j.kernel).toBe('js');
    expect(j.wasm).toBeNull();
    expect(j.z.buffer).not.toBe(j.fz.buffer);
  });

  for (const kernel of KERNELS) {
    for (const method of METHODS) {
      for (const [batch, n, m] of [[1, 1, 1], [3, 5, 4], [2, 7, 9]]) {
        it(`${kernel}/${method}, batch ${batch}, n ${n}, m ${m}: buffer sizes as documented`, () => {
          const ws = new SolverWorkspace(method, batch, n, m, kernel);
          expect([ws.method, ws.batch, ws.n, ws.history, ws.kernel]).toEqual([method, batch, n, m, kernel]);
          const want = expectedLengths(method, batch, n, m);
          for (const [name, len] of Object.entries(want)) expect(ws[name as keyof typeof want].length, name).toBe(len);
          expect(ws.scratch.length).toBe(method === 'fixed-point' ? 0 : 2 * n);
          for (const a of [ws.count, ws.head, ws.alpha, ws.resPrev, ws.gNorm, ws.active, ws.restart, ws.abs0]) expect(a.length).toBe(batch);
          // Float32 values per sample, as docs/solver.md gives them.
          const f32 = [ws.z, ws.fz, ws.g, ws.zPrev, ws.gPrev, ws.p, ws.histA, ws.histB].reduce((s, a) => s + a.length, 0);
          expect(f32 / batch).toBe({ broyden: 2 * m * n + 6 * n, anderson: 2 * m * n + 3 * n, 'fixed-point': 3 * n }[method]);

          const own = 8 * (ws.gram.length + ws.system.length + ws.coeff.length) + PER_SAMPLE_BYTES * batch;
          if (kernel === 'js') {
            expect(ws.byteLength).toBe(4 * f32 + 8 * ws.scratch.length + own);
          } else {
            // The whole wasm memory counts once, plus what lives outside it.
            expect(ws.byteLength).toBe(ws.z.buffer.byteLength + own);
          }
        });
      }
    }
  }

  for (const method of METHODS) {
    it(`wasm/${method}: one memory; buffers disjoint, 16-byte aligned, past page 0, and where WasmState says`, () => {
      const batch = 3, n = 5, m = 4;
      const ws = new SolverWorkspace(method, batch, n, m, 'wasm');
      const w = ws.wasm!;
      const mem = ws.z.buffer;
      expect(mem.byteLength % 65536).toBe(0);
      const views: [string, ArrayBufferView, number][] = [
        ['z', ws.z, w.z], ['fz', ws.fz, w.fz], ['g', ws.g, w.g], ['zPrev', ws.zPrev, w.zPrev], ['gPrev', ws.gPrev, w.gPrev], ['p', ws.p, w.p],
        ['histA', ws.histA, w.histA], ['histB', ws.histB, w.histB], ['scratch', ws.scratch, w.scratch],
        ['zBest', w.zBestView, w.zBest], ['out', w.outView, w.out], ['coef', w.coefView, w.coef],
      ];
      expect(w.zBestView.length).toBe(batch * n);
      expect(w.outView.length).toBe(16);
      expect(w.coefView.length).toBe(method === 'fixed-point' ? 1 : 2 * m);
      let used = 0;
      for (const [name, v, offset] of views) {
        expect(v.buffer, name).toBe(mem);
        expect(v.byteOffset, name).toBe(offset);
        expect(v.byteOffset % 16, name).toBe(0);
        expect(v.byteOffset, name).toBeGreaterThanOrEqual(65536);
        expect(v.byteOffset + v.byteLength, name).toBeLessThanOrEqual(mem.byteLength);
        used += Math.ceil(v.byteLength / 16) * 16;
      }
      const live = views.filter(([, v]) => v.byteLength > 0).sort((a, b) => a[1].byteOffset - b[1].byteOffset);
      for (let i = 1; i < live.length; i++) {
        const [prev, p] = live[i - 1], [name, v] = live[i];
        expect(p.byteOffset + p.byteLength, `${prev} overlaps ${name}`).toBeLessThanOrEqual(v.byteOffset);
      }
      // No more memory than page 0, the buffers and the rounding up to a whole page.
      expect(mem.byteLength).toBeLessThan(65536 + used + 65536);
      // Writing every buffer leaves every other one alone.
      for (const [name, v] of live) {
        (v as Float32Array).fill(1);
        for (const [other, o] of live) if (other !== name) expect(Array.from(o as Float32Array).every((x) => x === 0), `${name} wrote into ${other}`).toBe(true);
        (v as Float32Array).fill(0);
      }
    });
  }

  it('fits exactly its own method, batch, n and history', () => {
    for (const kernel of KERNELS) {
      const ws = new SolverWorkspace('anderson', 2, 6, 3, kernel);
      expect(ws.fits('anderson', 2, 6, 3)).toBe(true);
      expect(ws.fits('broyden', 2, 6, 3)).toBe(false);
      expect(ws.fits('anderson', 1, 6, 3)).toBe(false);
      expect(ws.fits('anderson', 2, 5, 3)).toBe(false);
      expect(ws.fits('anderson', 2, 6, 4)).toBe(false);
    }
  });

  it('history grows histories, not anything sized by an iteration cap', () => {
    for (const kernel of KERNELS) {
      const a = new SolverWorkspace('broyden', 2, 100, 8, kernel);
      const b = new SolverWorkspace('broyden', 2, 100, 16, kernel);
      expect(b.histA.length - a.histA.length).toBe(2 * 8 * 100);
      expect(b.coeff.length - a.coeff.length).toBe(8);
    }
  });
});
