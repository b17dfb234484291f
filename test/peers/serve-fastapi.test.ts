// The FastAPI peer of `bench http --peer fastapi` (issue #29) answers v2 requests as deq-serve does:
// same logits (to float32 noise) at the same NFE, per image; bad input gets a 400, not a crash.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeqModel } from '../../dist/index.js';
import { caseInputs } from '../../dist/runtime/index.js';

const python = process.env.DEQ_PEERS_PYTHON;
if (!python) throw new Error('DEQ_PEERS_PYTHON is not set: run `npm run test:peers`');

const ROOT = resolve(import.meta.dirname, '..', '..');
const JR = resolve(ROOT, 'models', 'fashion-mnist-jr');

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => done(port));
    });
  });
}


describe('serve_fastapi.py', () => {
  let child: ChildProcess;
  let url = '';
  let stderr = '';
  beforeAll(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    child = spawn(python!, [resolve(ROOT, 'models/recipes/serve_fastapi.py'), '--port', String(port), '--models-dir', resolve(ROOT, 'models')], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const deadline = Date.now() + 120_000;
    while (!(await fetch(`${url}/v2/health/ready`).then((r) => r.ok, () => false))) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`serve_fastapi.py did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });
  afterAll(() => { child?.kill('SIGTERM'); });

  it('gives deq-serve\'s logits at deq-serve\'s NFE for each parity input', async () => {
    const parity = JSON.parse(await readFile(resolve(JR, 'parity.json'), 'utf8')) as { cases: Parameters<typeof caseInputs>[1][] };
    const model = await DeqModel.load(JR);
    try {
      for (const c of parity.cases) {
        const x = caseInputs(model.manifest, c).x;
        const res = await fetch(`${url}/v2/models/fashion-mnist-jr/infer`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, ...x.shape], data: x.data }] }),
        });
        expect(res.status, stderr).toBe(200);
        const body = await res.json() as { outputs: { name: string; shape: number[]; data: number[] }[]; parameters: { iterations: number[] } };
        const ours = await model.infer({ input: Float32Array.from(x.data), batch: 1 });
        expect(body.parameters.iterations).toEqual(Array.from(ours.solver.iterations));
        const logits = ours.outputs[model.manifest.outputs.logits].data as Float32Array;
        expect(body.outputs[0].shape).toEqual([1, logits.length]);
        for (let i = 0; i < logits.length; i++) expect(Math.abs(body.outputs[0].data[i] - logits[i])).toBeLessThan(1e-4);
      }
    } finally {
      await model.release();
    }
  });

  it('answers a tensor of the wrong shape with 400 and keeps serving', async () => {
    const bad = await fetch(`${url}/v2/models/fashion-mnist-jr/infer`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] }),
    });
    expect(bad.status).toBe(400);
    const meta = await fetch(`${url}/v2/models/fashion-mnist-jr`);
    expect(meta.status).toBe(200);
    expect((await meta.json() as { inputs: { shape: number[] }[] }).inputs[0].shape).toEqual([-1, 1, 28, 28]);
    expect((await fetch(`${url}/v2/models/no-such-model`)).status).toBe(404);
  });
});
