// CellBatch with right padding (state.pad): what the graph is fed and what the solver gets back,
// checked with a stand-in graph that records its feeds and answers 1 everywhere.
import { describe, expect, it } from 'vitest';
import { CellBatch, padLength, PAD_MULTIPLE } from '../../src/runtime/cell-batch.js';
import type { Prepared } from '../../src/runtime/infer-types.js';
import { createTensor, type OnnxGraph, type Tensor } from '../../src/runtime/onnx.js';

const D = 2, P = 4, CAP = 3;

/** A graph that records each run's feeds (copied) and writes 1 into every output value. */
function recordingGraph() {
  const feeds: Record<string, number[]>[] = [];
  const graph = {
    async run(f: Record<string, Tensor>, fetches: Record<string, Tensor>) {
      feeds.push(Object.fromEntries(Object.entries(f).map(([k, t]) => [k, Array.from(t.data as ArrayLike<number | bigint>, Number)])));
      for (const t of Object.values(fetches)) (t.data as Float32Array).fill(1);
      return fetches;
    },
  };
  return { graph: graph as unknown as OnnxGraph, feeds };
}

/** A padded batch with a float input u [P, D] (padded) and an int64 input ids [2] (not padded). */
function paddedBatch() {
  const { graph, feeds } = recordingGraph();
  const cells = new CellBatch(graph, { z: 'z', out: 'z_next', args: ['u', 'ids'] }, CAP, [P, D],
    [{ type: 'float32', tail: [P, D] }, { type: 'int64', tail: [2] }], { length: P, args: [true, false] });
  return { cells, feeds };
}

/** A request prepared at its own length L, its cell inputs u = 10·row + position + 1 everywhere, ids = [7, 8]. */
function args(batch: number, L: number): Prepared {
  const u = new Float32Array(batch * L * D);
  for (let r = 0; r < batch; r++) for (let k = 0; k < L * D; k++) u[r * L * D + k] = 10 * r + Math.floor(k / D) + 1;
  const ids = new BigInt64Array(batch * 2);
  for (let r = 0; r < batch; r++) { ids[r * 2] = 7n; ids[r * 2 + 1] = 8n; }
  return { cellArgs: [createTensor('float32', u, [batch, L, D]), createTensor('int64', ids, [batch, 2])] } as Prepared;
}

describe('CellBatch with right padding', () => {
  it('feeds each slot its own positions, then zeros, even where a longer sample sat before', async () => {
    const { cells, feeds } = paddedBatch();
    cells.setRow(0, args(1, 4), 0, 4);
    cells.setRow(0, args(2, 1), 1, 1); // a length-1 sample takes the slot over
    cells.setRow(1, args(1, 3), 0, 3);
    const z = new Float32Array(CAP * P * D), out = new Float32Array(CAP * P * D);
    await cells.run(z, out, Uint8Array.from([1, 1, 0]));
    expect(feeds[0].u).toEqual([11, 11, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 0, 0]);
    expect(feeds[0].ids).toEqual([7, 8, 7, 8]); // not padded: copied as is
  });

  it('sets the output past each active sample\'s length to 0 and leaves inactive rows alone', async () => {
    const { cells } = paddedBatch();
    cells.setRow(0, args(1, 1), 0, 1);
    cells.setRow(1, args(1, 4), 0, 4);
    cells.setRow(2, args(1, 2), 0, 2);
    const z = new Float32Array(CAP * P * D);
    for (const active of [[1, 1, 1], [1, 0, 1]]) {
      const out = new Float32Array(CAP * P * D).fill(-5);
      await cells.run(z, out, Uint8Array.from(active)); // every slot (unpacked), then two of three (packed)
      const row = (i: number) => Array.from(out.subarray(i * P * D, (i + 1) * P * D));
      expect(row(0)).toEqual([1, 1, 0, 0, 0, 0, 0, 0]);
      expect(row(1)).toEqual(active[1] ? new Array(P * D).fill(1) : new Array(P * D).fill(-5));
      expect(row(2)).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
      expect(cells.lastRows).toBe(active[1] ? 3 : 2);
      expect(cells.lastPositions).toBe(cells.lastRows * P);
      expect(cells.lastPadPositions).toBe(3 + 2);
    }
  });

  it('rejects a sample longer than the padded length', () => {
    const { cells } = paddedBatch();
    expect(() => cells.setRow(0, args(1, 5), 0, 5)).toThrow(RangeError);
  });
});

describe('padLength', () => {
  it('rounds up to a multiple of PAD_MULTIPLE, capped at the context, never below the length', () => {
    expect(PAD_MULTIPLE).toBe(16);
    expect([1, 15, 16, 17, 33, 48, 49, 64].map((L) => padLength(L, 64))).toEqual([16, 16, 16, 32, 48, 48, 64, 64]);
    expect([1, 9, 16].map((L) => padLength(L, 16))).toEqual([16, 16, 16]);
    expect(padLength(10, 12)).toBe(12);
    expect(padLength(70, 64)).toBe(70);
    expect(padLength(70)).toBe(80);
  });
});
