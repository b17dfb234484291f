// #11: continuous batching must not change answers. Requests arrive at random
// iteration boundaries with their own tolerances, caps and methods, join running
// solves, leave when they stop; each must match its solo run exactly.
import { resolve } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { brownCorpusDir, encodeStream, readBrownSplits } from '../../src/eval/brown-corpus.js';
import { readFashionMnist } from '../../src/eval/fashion-mnist.js';
import { normalizePixels } from '../../src/preprocess/normalize.js';
import { DeqModel, Scheduler, type ExecutorResult, type InferRequest, type SchedulerOptions } from '../../src/runtime/index.js';
import { SOLVER_KERNELS, type SolverKernel, type SolverMethod } from '../../src/solver/index.js';
import { DeqError } from '../../src/errors.js';
import { FASHION_MNIST_SLICE, TINY_IMAGE, TINY_LM } from '../helpers/fixtures.js';
import { relDiffL2 } from '../helpers/float.js';

interface Arrival<R = Float32Array> {
  at: number;
  rows: R[];
  method: SolverMethod;
  tol: number;
  maxIter: number;
}


function request(a: Arrival): InferRequest {
  const per = a.rows[0].length;
  const input = new Float32Array(per * a.rows.length);
  a.rows.forEach((r, i) => input.set(r, i * per));
  return { input, batch: a.rows.length, returnState: true, solver: { method: a.method, tol: a.tol, maxIter: a.maxIter } };
}

/** Runs the arrivals through a scheduler, each submitted at its boundary; returns results and batching stats. */
async function schedule<R>(model: DeqModel, arrivals: Arrival<R>[], opts: Partial<SchedulerOptions>, toRequest: (a: Arrival<R>) => InferRequest = request as never) {
  let boundary = 0, joins = 0, maxRows = 0;
  const results: Promise<ExecutorResult>[] = new Array(arrivals.length);
  const sched = new Scheduler(model, opts, {
    onBoundary: () => {
      for (const [i, a] of arrivals.entries()) if (a.at === boundary && !results[i]) results[i] = sched.submit(toRequest(a)).result;
      boundary++;
    },
    onSolveEnd: (j) => { joins += j; },
    onRun: (rows) => { maxRows = Math.max(maxRows, rows); },
  });
  // The first arrival starts the loop; the rest come in at their boundaries.
  const first = arrivals.findIndex((a) => a.at === 0);
  results[first] = sched.submit(toRequest(arrivals[first])).result;
  arrivals[first] = { ...arrivals[first], at: -1 };
  // Arrivals whose boundary is never reached (everything finished before) are sent afterwards.
  const done = await Promise.all(arrivals.map(async (a, i) => {
    while (!results[i]) {
      if (sched.size === 0) results[i] = sched.submit(toRequest(a)).result;
      else await new Promise((r) => setTimeout(r, 1));
    }
    return results[i];
  }));
  return { done, joins, maxRows };
}

async function expectSolo<R>(model: DeqModel, arrivals: Arrival<R>[], results: ExecutorResult[], toRequest: (a: Arrival<R>) => InferRequest = request as never): Promise<void> {
  for (const [i, a] of arrivals.entries()) {
    const solo = await model.infer(toRequest(a));
    const got = results[i];
    const where = `request ${i} (${a.method}, tol ${a.tol}, cap ${a.maxIter}, ${a.rows.length} rows, at ${a.at})`;
    expect(Array.from(got.solver.iterations), `${where}: iterations`).toEqual(Array.from(solo.solver.iterations));
    expect(Array.from(got.solver.converged), `${where}: converged`).toEqual(Array.from(solo.solver.converged));
    expect(relDiffL2(got.state!.data as Float32Array, solo.state!.data as Float32Array), `${where}: z*`).toBeLessThanOrEqual(1e-5);
    for (const name of Object.keys(solo.outputs)) {
      expect(relDiffL2(got.outputs[name].data as Float32Array, solo.outputs[name].data as Float32Array), `${where}: ${name}`).toBeLessThanOrEqual(1e-5);
    }
  }
}

const TOLS = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5];

describe('Scheduler: continuous batching (property)', () => {
  let model: DeqModel;
  beforeAll(async () => { model = await DeqModel.load(TINY_IMAGE); });
  afterAll(async () => { await model.release(); });

  const image = fc.array(fc.float({ min: -2, max: 2, noNaN: true, noDefaultInfinity: true }), { minLength: 64, maxLength: 64 }).map((a) => Float32Array.from(a));
  const arrival = fc.record({
    at: fc.integer({ min: 0, max: 12 }),
    rows: fc.array(image, { minLength: 1, maxLength: 3 }),
    method: fc.constantFrom<SolverMethod>('broyden', 'anderson', 'fixed-point'),
    tol: fc.constantFrom(...TOLS),
    maxIter: fc.integer({ min: 1, max: 30 }),
  });
  const arrivals = fc.array(arrival, { minLength: 2, maxLength: 8 }).map((list) => [{ ...list[0], at: 0 }, ...list.slice(1)]);

  for (const mode of ['continuous', 'static'] as const) {
    it(`${mode}: every request's z*, outputs and iterations equal its solo run, whatever its company and arrival`, async () => {
      let joined = 0;
      await fc.assert(fc.asyncProperty(arrivals, fc.integer({ min: 2, max: 6 }), async (list, maxRows) => {
        const { done, joins } = await schedule(model, list, { mode, maxRows, maxQueueDelayMs: 0 });
        if (joins > 0) joined++;
        await expectSolo(model, list, done);
      }), { numRuns: 25, seed: 11 });
      if (mode === 'continuous') expect(joined).toBeGreaterThanOrEqual(5); // requests really joined running solves
      else expect(joined).toBe(0); // a static batch takes no one mid-solve
    }, 120_000);
  }

  it('requests that stop at the same boundary share one head run, each getting its own rows', async () => {
    // A static batch ends all at once: four requests (five rows, gathered by the queue delay), one head run of five rows.
    const reqs = [1, 2, 1, 1].map((b, k) => ({ input: Float32Array.from({ length: 64 * b }, (_, i) => Math.sin(i + 7 * k)), batch: b, returnState: true, solver: { tol: 1e-4, maxIter: 40 } }));
    const solo: Awaited<ReturnType<DeqModel['infer']>>[] = [];
    for (const r of reqs) solo.push(await model.infer(r));
    const finish = vi.spyOn(model, 'finish');
    try {
      const sched = new Scheduler(model, { mode: 'static', maxRows: 8, maxQueueDelayMs: 200 });
      const got = await Promise.all(reqs.map((r) => sched.submit(r).result));
      expect(finish.mock.calls.map(([prep]) => prep.batch)).toEqual([5]);
      got.forEach((g, k) => {
        expect(g.outputs.logits.dims).toEqual(solo[k].outputs.logits.dims);
        expect(relDiffL2(g.outputs.logits.data as Float32Array, solo[k].outputs.logits.data as Float32Array)).toBeLessThanOrEqual(1e-5);
        expect(Array.from(g.solver.iterations)).toEqual(Array.from(solo[k].solver.iterations));
      });
    } finally {
      finish.mockRestore();
    }
  });

  it('frees a cancelled request\'s rows at the next boundary; the others are unaffected', async () => {
    const never = { method: 'fixed-point' as const, tol: 1e-9, maxIter: 10_000 };
    const sched = new Scheduler(model, { maxRows: 4, maxQueueDelayMs: 0 });
    const x = new Float32Array(64).fill(0.3);
    const long = sched.submit({ input: x, batch: 1, solver: { ...never, stopMode: 'abs' } });
    const normal = { input: Float32Array.from(x, (v, i) => v + i / 100), batch: 1, returnState: true, solver: { tol: 1e-5, maxIter: 50 } };
    const short = sched.submit(normal);
    setTimeout(() => sched.cancel(long.id), 20);
    const err = await long.result.catch((e: unknown) => e);
    expect((err as DeqError).code).toBe('DEQ_ERR_CANCELLED');
    const got = await short.result;
    const solo = await model.infer(normal);
    expect(got.solver.iterations[0]).toBe(solo.solver.iterations[0]);
    expect(relDiffL2(got.state!.data as Float32Array, solo.state!.data as Float32Array)).toBeLessThanOrEqual(1e-5);
    expect(sched.size).toBe(0);
  });

  it('stops a request at its deadline and answers from its best iterate, marked stopped', async () => {
    const sched = new Scheduler(model, { maxRows: 4, maxQueueDelayMs: 0 });
    const r = await sched.submit({ input: new Float32Array(64).fill(0.1), batch: 1, deadline: Date.now() + 30, solver: { method: 'fixed-point', tol: 1e-9, stopMode: 'abs', maxIter: 1_000_000 } }).result;
    expect(r.solver.stopped).toBe(true);
    expect(r.solver.converged[0]).toBe(0);
    expect(r.solver.iterations[0]).toBeGreaterThan(0);
    expect(Number.isFinite((r.outputs.logits.data as Float32Array)[0])).toBe(true);
  });

  it('keeps one big request to its share of the rows, so a small one joins at the next boundary', async () => {
    let runs = 0;
    const rowsPerRun: number[] = [];
    const sched = new Scheduler(model, { maxRows: 4, maxQueueDelayMs: 0, requestShare: 0.5 }, { onRun: (rows) => { runs++; rowsPerRun.push(rows); } });
    const slow = { method: 'fixed-point' as const, tol: 1e-9, stopMode: 'abs' as const, maxIter: 40 };
    let bigDoneAt = 0, smallDoneAt = 0, smallSentAt = 0;
    const big = sched.submit({ input: new Float32Array(64 * 12).fill(0.2), batch: 12, solver: slow }).result.then((r) => { bigDoneAt = runs; return r; });
    while (runs < 5) await new Promise((r) => setTimeout(r, 0));
    smallSentAt = runs;
    const small = await sched.submit({ input: new Float32Array(64).fill(0.4), batch: 1, solver: slow }).result.then((r) => { smallDoneAt = runs; return r; });
    const b = await big;
    // 12 rows at most 2 at a time (half of 4 slots) take 6 × 40 runs; the small request joins
    // at once and is done 40 runs later, not after the big one.
    expect(Math.max(...rowsPerRun.slice(0, 5))).toBe(2);
    expect(smallDoneAt - smallSentAt).toBeLessThanOrEqual(40 + 3); // its 40 runs, plus a boundary or two while its inject runs
    expect(bigDoneAt).toBeGreaterThanOrEqual(240);
    expect(small.solver.iterations[0]).toBe(40);
    expect(Array.from(b.solver.iterations)).toEqual(new Array(12).fill(40));
  });
});

describe('Scheduler on the shipped fashion-mnist-jr', () => {
  it('matches solo runs on real images arriving mid-solve', async () => {
    const model = await DeqModel.load(resolve(import.meta.dirname, '..', '..', 'models', 'fashion-mnist-jr'));
    try {
      const set = await readFashionMnist('test', FASHION_MNIST_SLICE);
      const img = (k: number) => { const out = new Float32Array(784); normalizePixels(set.images.subarray(k * 784, (k + 1) * 784), model.manifest.preprocess!, out); return out; };
      const list: Arrival[] = [
        { at: 0, rows: [img(0), img(1)], method: 'broyden', tol: 1e-4, maxIter: 30 },
        { at: 1, rows: [img(2)], method: 'broyden', tol: 1e-3, maxIter: 30 },
        { at: 2, rows: [img(3), img(4), img(5)], method: 'broyden', tol: 1e-5, maxIter: 12 },
        { at: 3, rows: [img(6)], method: 'anderson', tol: 1e-3, maxIter: 30 },
      ];
      const { done, joins, maxRows } = await schedule(model, list, { maxRows: 8, maxQueueDelayMs: 0 });
      expect(joins).toBeGreaterThan(0);
      expect(maxRows).toBeGreaterThan(2);
      await expectSolo(model, list, done);
    } finally {
      await model.release();
    }
  }, 60_000);
});

// Language-model windows (state.pad "right"): windows of different lengths in one length bucket
// share cell runs, right-padded, and each must still match its unpadded solo run.

/** A request of language-model windows of one length, each given by its L target ids: input [bos, t₀ … t_{L−2}]. */
function lmRequest(bos: number) {
  return (a: Arrival<number[]>): InferRequest => {
    const L = a.rows[0].length, b = a.rows.length;
    const input = new BigInt64Array(b * L), targets = new BigInt64Array(b * L);
    a.rows.forEach((w, j) => {
      input[j * L] = BigInt(bos);
      for (let t = 0; t < L; t++) {
        targets[j * L + t] = BigInt(w[t]);
        if (t + 1 < L) input[j * L + t + 1] = BigInt(w[t]);
      }
    });
    return {
      input, batch: b, length: L, headInputs: { targets }, outputs: ['target_logprobs', 'topk_logprobs'], returnState: true,
      solver: { method: a.method, tol: a.tol, maxIter: a.maxIter },
    };
  };
}

/** Counts the cell runs whose active rows had different lengths of their own: padding really shared a run. */
function countMixedRuns(model: DeqModel): { mixed: number; restore(): void } {
  const original = model.cellBatch.bind(model);
  const spy = vi.spyOn(model, 'cellBatch').mockImplementation((prep, capacity, padding) => {
    const cells = original(prep, capacity, padding);
    const own = new Int32Array(capacity);
    const setRow = cells.setRow.bind(cells), run = cells.run.bind(cells);
    cells.setRow = (slot, args, row, length) => { own[slot] = length ?? 0; setRow(slot, args, row, length); };
    cells.run = (z, out, active) => {
      let first = -1;
      for (let i = 0; i < capacity; i++) {
        if (!active[i]) continue;
        if (first < 0) first = own[i];
        else if (own[i] !== first) { counter.mixed++; break; }
      }
      return run(z, out, active);
    };
    return cells;
  });
  const counter = { mixed: 0, restore: () => spy.mockRestore() };
  return counter;
}

/** Arrivals of 1–3 windows of one length in [1, context], their ids drawn by `ids(length)`. */
function lmArrivals(context: number, ids: (length: number) => fc.Arbitrary<number[]>, opts: { maxIter: number; tols: number[]; methods: SolverMethod[]; max: number }) {
  const arrival = fc.integer({ min: 1, max: context }).chain((L) => fc.record({
    at: fc.integer({ min: 0, max: 12 }),
    rows: fc.array(ids(L), { minLength: 1, maxLength: 3 }),
    method: fc.constantFrom(...opts.methods),
    tol: fc.constantFrom(...opts.tols),
    maxIter: fc.integer({ min: 1, max: opts.maxIter }),
  }));
  return fc.array(arrival, { minLength: 2, maxLength: opts.max }).map((list) => [{ ...list[0], at: 0 }, ...list.slice(1)]);
}

describe('Scheduler: padded language-model windows (state.pad, property)', () => {
  it('tiny-lm: windows of different lengths share cell runs; each matches its unpadded solo run', async () => {
    // A model's kernel is fixed at load: the bundle once per kernel.
    const models = new Map<SolverKernel, DeqModel>();
    for (const k of SOLVER_KERNELS) models.set(k, await DeqModel.load(TINY_LM, {}, { solverKernel: k }));
    const model = models.get(SOLVER_KERNELS[0])!;
    const counters = [...models.values()].map(countMixedRuns);
    const mixed = () => counters.reduce((n, c) => n + c.mixed, 0);
    try {
      expect(model.manifest.state.pad).toBe('right');
      const bos = model.bundle.vocab!.indexOf('<s>'), V = model.bundle.vocab!.length;
      const toRequest = lmRequest(bos);
      const list = lmArrivals(model.manifest.tokenizer!.context, (L) => fc.array(fc.integer({ min: 0, max: V - 1 }), { minLength: L, maxLength: L }),
        { maxIter: 30, tols: TOLS, methods: ['broyden', 'anderson', 'fixed-point'], max: 8 });
      let sharedProperties = 0;
      await fc.assert(fc.asyncProperty(list, fc.integer({ min: 2, max: 6 }), fc.constantFrom<SolverKernel>(...SOLVER_KERNELS), fc.constantFrom('continuous', 'static'), async (arrivals, maxRows, kernel, mode) => {
        const m = models.get(kernel)!;
        const before = mixed();
        const { done } = await schedule(m, arrivals, { mode, maxRows, maxQueueDelayMs: 0 }, toRequest);
        if (mixed() > before) sharedProperties++;
        await expectSolo(m, arrivals, done, toRequest);
      }), { numRuns: 30, seed: 11 });
      // The property is only worth something if windows of different lengths really ran together.
      expect(sharedProperties).toBeGreaterThanOrEqual(10);
    } finally {
      for (const c of counters) c.restore();
      await Promise.all([...models.values()].map((m) => m.release()));
    }
  }, 120_000);

  it('shipped brown-lm-jr on Brown test windows: different lengths share runs in buckets of 16; each matches its unpadded solo run', async () => {
    const model = await DeqModel.load(resolve(import.meta.dirname, '..', '..', 'models', 'brown-lm-jr'));
    const runs = countMixedRuns(model);
    try {
      const vocab = model.bundle.vocab!, tok = model.manifest.tokenizer!;
      const stream = encodeStream((await readBrownSplits(brownCorpusDir(), tok.eos)).test.slice(0, 5000), vocab, vocab.indexOf(tok.unk));
      const toRequest = lmRequest(vocab.indexOf(tok.bos));
      const window = (L: number) => fc.integer({ min: 0, max: stream.length - L }).map((a) => Array.from(stream.subarray(a, a + L)));
      const list = lmArrivals(tok.context, window, { maxIter: 20, tols: [1e-2, 1e-3, 1e-4], methods: ['broyden', 'anderson'], max: 6 });
      let sharedProperties = 0;
      await fc.assert(fc.asyncProperty(list, fc.integer({ min: 3, max: 8 }), async (arrivals, maxRows) => {
        const before = runs.mixed;
        const { done } = await schedule(model, arrivals, { maxRows, maxQueueDelayMs: 0 }, toRequest);
        if (runs.mixed > before) sharedProperties++;
        await expectSolo(model, arrivals, done, toRequest);
      }), { numRuns: 8, seed: 11 });
      expect(sharedProperties).toBeGreaterThanOrEqual(2);
    } finally {
      runs.restore();
      await model.release();
    }
  }, 240_000);
});
