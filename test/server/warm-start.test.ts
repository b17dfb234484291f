// Issue 23 over HTTP: a client-supplied initial state (deq_state) and return_state on /predict
// and v2, with the state's shape and datatype checked (400 on a mismatch).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postJson, startTestServer, type TestServer } from './helpers.js';

const json = (r: Response): Promise<any> => r.json();
const image = (k: number) => [Array.from({ length: 8 }, (_, r) => Array.from({ length: 8 }, (_, c) => Math.cos(r * 8 + c + k)))];

for (const batching of ['off', 'on'] as const) {
  describe(`warm starts over HTTP (batching ${batching})`, () => {
    let s: TestServer;
    beforeAll(async () => { s = await startTestServer({ batching }); });
    afterAll(async () => { await s?.cleanup(); });
    const predict = (body: unknown) => postJson(`${s.url}/v1/models/tiny-image/predict`, body);
    const infer = (body: unknown) => postJson(`${s.url}/v2/models/tiny-image/infer`, body);

    it('/predict: return_state gives z*; sending it back as deq_state converges in one evaluation with the same answer', async () => {
      const cold = await json(await predict({ inputs: { x: [image(0), image(1)] }, return_state: true, parameters: { tol: 1e-4 } }));
      expect(cold.shapes.deq_state).toEqual([2, 4, 4, 4]);
      const warm = await json(await predict({ inputs: { x: [image(0), image(1)], deq_state: cold.outputs.deq_state }, parameters: { tol: 1e-4 } }));
      expect(warm.solver.iterations).toBe(1);
      expect(warm.solver.converged).toBe(true);
      for (let i = 0; i < 2; i++) for (let k = 0; k < 3; k++) expect(warm.outputs.logits[i][k]).toBeCloseTo(cold.outputs.logits[i][k], 5);
      expect(cold.solver.iterations).toBeGreaterThan(1);
      // Unbatched works the same way.
      const one = await json(await predict({ inputs: { x: image(0), deq_state: cold.outputs.deq_state[0] }, parameters: { tol: 1e-4 }, return_state: true }));
      expect(one.solver.iterations).toBe(1);
      expect(one.shapes.deq_state).toEqual([4, 4, 4]);
    });

    it('/predict: a state of the wrong shape, or not numbers, is a 400 naming deq_state', async () => {
      const bad = [
        { inputs: { x: [image(0)], deq_state: [[[[1, 2, 3, 4]]]] } },
        { inputs: { x: [image(0), image(1)], deq_state: [Array.from({ length: 4 }, () => Array.from({ length: 4 }, () => [0, 0, 0, 0]))] } },
        { inputs: { x: [image(0)], deq_state: [Array.from({ length: 4 }, () => Array.from({ length: 4 }, () => [0, 0, 0, 'a']))] } },
      ];
      for (const body of bad) {
        const r = await predict(body);
        expect(r.status).toBe(400);
        const e = await json(r);
        expect(e.code).toBe('DEQ_ERR_INVALID_INPUT');
        expect(e.error).toContain('deq_state');
      }
    });

    it('/score: warm_start solves each window from the previous one, with the cold scores', async () => {
      const text = Array.from({ length: 40 }, (_, i) => ['the', 'man', 'said', 'it', 'was', '.'][(i * 5) % 6]).join(' ');
      const body = { text, tol: 1e-5, max_iter: 100 };
      const cold = await json(await postJson(`${s.url}/v1/models/tiny-lm/score`, body));
      const warm = await json(await postJson(`${s.url}/v1/models/tiny-lm/score`, { ...body, warm_start: true }));
      expect(cold.results[0].windows).toBeGreaterThan(1);
      expect(warm.results[0].windows).toBe(cold.results[0].windows);
      expect(Math.abs(warm.results[0].total_logprob - cold.results[0].total_logprob)).toBeLessThan(1e-2);
    });

    it('v2: input deq_state warm-starts, output deq_state returns z*; a wrong datatype or shape is a 400', async () => {
      const x = { name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: image(3).flat(2) };
      const cold = await json(await infer({ inputs: [x], outputs: [{ name: 'logits' }, { name: 'deq_state' }], parameters: { tol: 1e-4 } }));
      const state = cold.outputs.find((o: any) => o.name === 'deq_state');
      expect(state).toMatchObject({ datatype: 'FP32', shape: [1, 4, 4, 4] });
      const warm = await json(await infer({ inputs: [x, { name: 'deq_state', datatype: 'FP32', shape: [1, 4, 4, 4], data: state.data }], parameters: { tol: 1e-4, return_state: true } }));
      expect(warm.parameters.iterations).toBe(1);
      expect(warm.outputs.map((o: any) => o.name)).toEqual(['logits', 'deq_state']);
      for (const bad of [{ datatype: 'FP64', shape: [1, 4, 4, 4] }, { datatype: 'FP32', shape: [1, 64] }, { datatype: 'FP32', shape: [2, 4, 4, 4] }]) {
        const r = await infer({ inputs: [x, { name: 'deq_state', data: state.data, ...bad }] });
        expect(r.status).toBe(400);
        expect(JSON.stringify(await json(r))).toContain('deq_state');
      }
    });
  });
}
