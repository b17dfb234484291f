// Issue 23 over HTTP: stop_mode "prediction" with its knobs and trace=true on classify,
// /predict and v2, in both batching modes; why each sample stopped in the solver block.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postJson, startTestServer, type TestServer } from './helpers.js';

const json = (r: Response): Promise<any> => r.json();
const pixels = (seed: number) => Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.37 + seed) * 0.8);

async function png(): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 20, g: 200, b: 90 } } }).png().toBuffer();
}

for (const batching of ['off', 'on'] as const) {
  describe(`early exit and traces over HTTP (batching ${batching})`, () => {
    let s: TestServer;
    beforeAll(async () => { s = await startTestServer({ batching }); });
    afterAll(async () => { await s?.cleanup(); });

    const classify = async (query: string) => fetch(`${s.url}/v1/models/tiny-image/classify${query}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: await png() });

    it('classify: trace=true returns the residual and top-1 of every iteration; the answer is the last top-1', async () => {
      const r = await json(await classify('?trace=true&tol=1e-5'));
      expect(r.solver.stop_reasons).toEqual(['converged']);
      const [t] = r.solver.trace;
      expect(t.residual).toHaveLength(r.solver.iterations);
      expect(t.top1).toHaveLength(r.solver.iterations);
      expect(t.residual.at(-1)).toBeLessThan(1e-5);
      expect(t.residual[0]).toBeGreaterThan(t.residual.at(-1));
      expect(t.top1.at(-1)).toBe(r.labels[0].index);
      const plain = await json(await classify('?tol=1e-5'));
      expect(plain.solver.trace).toBeUndefined();
      expect(plain.solver.iterations).toBe(r.solver.iterations);
    });

    it('classify: stop_mode=prediction stops before tol on a stable top-1, and says so', async () => {
      const full = await json(await classify('?tol=1e-6&trace=true'));
      const r = await json(await classify('?stop_mode=prediction&patience=2&prediction_tol=1&prediction_margin=0&tol=1e-6&trace=true'));
      expect(r.solver).toMatchObject({ stop_mode: 'prediction', patience: 2, prediction_tol: 1, prediction_margin: 0, stop_reasons: ['prediction'], converged: false });
      expect(r.solver.iterations).toBeLessThan(full.solver.iterations);
      const top1 = r.solver.trace[0].top1;
      expect(new Set(top1.slice(-3)).size).toBe(1);
      // The first iteration where the rule held: its top-1 agreed with the two before it, and no earlier one did.
      for (let it = 3; it < top1.length; it++) expect(new Set(top1.slice(it - 3, it)).size).toBeGreaterThan(1);
      expect(r.label).toBe(full.label);
    });

    it('/predict: a batch reports every sample\'s stop reason and trace', async () => {
      const inputs = { x: [0, 1, 2].map((k) => [pixels(k).reduce<number[][]>((rows, v, i) => { (rows[i >> 3] ??= []).push(v); return rows; }, [])]) };
      const r = await json(await postJson(`${s.url}/v1/models/tiny-image/predict`, { inputs, parameters: { stop_mode: 'prediction', patience: 3, trace: true } }));
      expect(r.solver.stop_reasons).toHaveLength(3);
      expect(r.solver.trace).toHaveLength(3);
      for (const reason of r.solver.stop_reasons) expect(['prediction', 'converged']).toContain(reason);
    });

    it('v2: parameters carry stop_mode prediction, and the reply reports stop_reason per sample', async () => {
      const body = { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 1, 8, 8], data: [...pixels(1), ...pixels(2)] }], parameters: { stop_mode: 'prediction', patience: 2 } };
      const r = await json(await postJson(`${s.url}/v2/models/tiny-image/infer`, { ...body, outputs: [{ name: 'logits' }, { name: 'solver_stop_reason' }] }));
      expect(r.parameters.stop_mode).toBe('prediction');
      expect(r.parameters.patience).toBe(2);
      expect(r.outputs[1]).toMatchObject({ name: 'solver_stop_reason', datatype: 'BYTES', shape: [2] });
      for (const why of r.outputs[1].data) expect(['prediction', 'converged', 'max_iter']).toContain(why);
      // trace=true adds the per-iteration residuals and top-1s as [batch, T] outputs (padded), not parameters.
      const t = await json(await postJson(`${s.url}/v2/models/tiny-image/infer`, { ...body, parameters: { ...body.parameters, trace: true } }));
      expect(t.outputs.map((o: any) => [o.name, o.datatype, o.shape.length])).toEqual([['logits', 'FP32', 2], ['solver_trace_residual', 'FP32', 2], ['solver_trace_top1', 'INT64', 2]]);
      expect(t.outputs[1].shape[0]).toBe(2);
      expect(t.outputs[1].shape[1]).toBeGreaterThan(0);
      for (const v of Object.values(t.parameters)) expect(['string', 'number', 'boolean']).toContain(typeof v);
    });

    it('refuses prediction knobs without stop_mode prediction, and stop_mode prediction on a language model', async () => {
      const a = await classify('?patience=2');
      expect(a.status).toBe(400);
      expect((await json(a)).code).toBe('DEQ_ERR_INVALID_SOLVER_OPTION');
      const b = await postJson(`${s.url}/v1/models/tiny-lm/score`, { text: 'the man said .', stop_mode: 'prediction' });
      expect(b.status).toBe(400);
      const e = await json(b);
      expect(e.code).toBe('DEQ_ERR_INVALID_SOLVER_OPTION');
      expect(e.error).toContain('classifier');
      const c = await classify('?stop_mode=prediction&prediction_margin=2');
      expect(c.status).toBe(400);
    });
  });
}
