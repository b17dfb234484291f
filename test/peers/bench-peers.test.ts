// Each peer of `bench compare --peers` (issue #29) answers as deq-serve does, at deq-serve's NFE, on a
// few inputs of each shipped kind: Fashion-MNIST images and Brown windows. Runs in the peers' venv
// (npm run test:peers sets DEQ_PEERS_PYTHON). torchdeq stops when the whole batch is under tol, so at
// batch > 1 it may only take more evaluations than deq-serve, never fewer; the other peers stop per
// sample and must agree exactly.
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';

const python = process.env.DEQ_PEERS_PYTHON;
if (!python) throw new Error('DEQ_PEERS_PYTHON is not set: run `npm run test:peers` (it makes the peers\' venv with models/recipes/make-bench-venv.sh)');

const MODELS = resolve(import.meta.dirname, '..', '..', 'models');

interface Cell { peer: string; nfe: number; nfe_differs: number; max_abs_diff: number }
interface Row { batch: number; nfe_deq_serve: number; samples: number; peers: Cell[] }

async function compare(bundle: string, peers: string, extra: string[]): Promise<{ peers: { peer: string }[]; unavailable: unknown[]; rows: Row[] }> {
  const r = await runCli(['bench', 'compare', resolve(MODELS, bundle), '--peers', peers, '--peers-python', python!, '--threads', '1', '--rounds', '1', '--json', ...extra], 600_000);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** `nfeOnly`: peers whose NFE must agree but whose answers may not (see the fashion-mnist-plain case). */
function expectSameAnswers(rows: Row[], tol: number, nfeOnly: string[] = []): void {
  for (const row of rows) {
    for (const c of row.peers) {
      const where = `${c.peer} at batch ${row.batch}`;
      if (c.peer === 'torchdeq' && row.batch > 1) {
        expect(c.nfe, where).toBeGreaterThanOrEqual(row.nfe_deq_serve);
        continue;
      }
      expect(c.nfe_differs, where).toBe(0);
      expect(c.nfe, where).toBe(row.nfe_deq_serve);
      if (!nfeOnly.includes(c.peer)) expect(c.max_abs_diff, where).toBeLessThan(tol);
    }
  }
}

describe('bench compare peers agree with deq-serve', () => {
  it('fashion-mnist-jr: PyTorch 2.x eager and compiled, torchdeq and ONNX Runtime + NumPy give its logits at its NFE', async () => {
    const r = await compare('fashion-mnist-jr', 'torch-eager,torch-compile,torchdeq,onnxruntime', ['--batches', '1,4', '--images', '4', '--data-dir', FASHION_MNIST_SLICE]);
    expect(r.unavailable).toEqual([]);
    expect(r.peers.map((p) => p.peer)).toEqual(['torch-eager', 'torch-compile', 'torchdeq', 'onnxruntime']);
    expectSameAnswers(r.rows, 1e-4);
    const compiled = r.rows[0].peers.find((c) => c.peer === 'torch-compile') as Cell & { compile_s?: number };
    expect(compiled.compile_s).toBeGreaterThan(0);
  });

  it('fashion-mnist-plain (a cell that needs more steps): eager, torchdeq and ONNX Runtime + NumPy at its NFE', async () => {
    const r = await compare('fashion-mnist-plain', 'torch-eager,torchdeq,onnxruntime', ['--batches', '1,4', '--images', '4', '--data-dir', FASHION_MNIST_SLICE]);
    expect(r.unavailable).toEqual([]);
    // plain's Broyden solve is ill-conditioned: one float32 ulp on the pixels moves its z* by 2.5e-4
    // (README, "Measured"). Test image 2 runs to the cap (30) unconverged, and float32 noise along
    // that trajectory moves its logits by up to 2.1e-2 between sides at equal NFE (4.5e-3 on the
    // others). Without deq-serve's restart guard that image ends 0.23 away (deq.py's Broyden with
    // restart 0, checked), which this bound catches. torchdeq's Broyden has no restart guard, so its
    // NFE must agree (both stop at the cap) but its answer there is reported, not tested (0.27 seen).
    expectSameAnswers(r.rows, 0.1, ['torchdeq']);
  });

  it('brown-lm-jr: eager, torchdeq and ONNX Runtime + NumPy score the same windows with the same log-probabilities', async () => {
    const r = await compare('brown-lm-jr', 'torch-eager,torchdeq,onnxruntime', ['--batches', '1,2', '--windows', '2']);
    expect(r.unavailable).toEqual([]);
    expectSameAnswers(r.rows, 1e-4);
  });
});
