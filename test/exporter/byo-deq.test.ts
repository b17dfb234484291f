// Bring your own DEQ, end to end (issue #13): two small DEQs defined in byo_models.py (not
// the recipes' code) are exported with the deq_serve_export package (installed with pip
// into a temp folder), checked with `deq-serve inspect`, served, and asked over v2 infer and
// /predict; the HTTP outputs must match PyTorch's own fixed point to 1e-4. A third model,
// whose default solver fails, must fail parity and make the exporter warn.
//
// Needs Debian's python3-torch and python3-onnx (/usr/bin/python3): run by
// `npm run test:exporter`, which .ci/run runs after installing them. It is not part of
// `npm test`, and it fails (never skips) when torch is missing.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { postJson, ROOT } from '../server/helpers.js';
import { loadConfig, startServer, type RunningServer } from '../../dist/server/index.js';

const PYTHON = '/usr/bin/python3';
// Response.json() is typed unknown; these tests read fields freely.
const json = (r: Response): Promise<any> => r.json();

function run(cmd: string, args: string[], env: Record<string, string> = {}, timeout = 300_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { cwd: ROOT, timeout, env: { ...process.env, ...env }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

type Nested = number | Nested[];
const flat = (v: Nested): number[] => (Array.isArray(v) ? v.flatMap(flat) : [v]);

function maxDiff(got: Nested, want: Nested): number {
  const g = flat(got), w = flat(want);
  expect(g.length).toBe(w.length);
  let d = 0;
  for (let i = 0; i < w.length; i++) d = Math.max(d, Math.abs(g[i] - w[i]));
  return d;
}

interface Reference {
  inputs: Record<string, Nested>;
  outputs: Record<string, Nested>;
}

describe('bring your own DEQ: export → inspect → serve', () => {
  let work: string;
  let exportRun: { code: number; stdout: string; stderr: string };
  let reference: Record<string, Reference>;
  let server: RunningServer | undefined;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'deq-byo-'));
    // Offline install of the package, the way docs/guides/export-your-deq.md says.
    const pip = await run(PYTHON, ['-m', 'pip', 'install', '--no-build-isolation', '--no-deps', '--no-index', '--target', join(work, 'site'), './exporter']);
    if (pip.code !== 0) throw new Error(`pip install ./exporter failed (are python3-torch, python3-onnx and python3-pip installed?):\n${pip.stderr}`);
    exportRun = await run(PYTHON, ['test/exporter/byo_models.py', work], { PYTHONPATH: join(work, 'site') });
    if (exportRun.code !== 0) throw new Error(`exporting the test models failed:\n${exportRun.stderr}`);
    reference = JSON.parse(await readFile(join(work, 'reference.json'), 'utf8'));
    const config = loadConfig(['--models-dir', join(work, 'models'), '--port', '0', '--host', '127.0.0.1', '--workers', '1'], {}, { logLevel: 'silent' });
    server = await startServer(config);
  }, 600_000);

  afterAll(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('the package imports from a checkout by PYTHONPATH too', async () => {
    const r = await run(PYTHON, ['-c', 'import deq_serve_export as d; print(d.export_bundle.__module__)'], { PYTHONPATH: 'exporter' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('deq_serve_export.export');
  });

  it.each(['vec-tanh', 'fzx-two-input', 'uv-inject'])('deq-serve inspect passes parity for %s', async (name) => {
    const r = await runCli(['inspect', join(work, 'models', name)]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/parity\s+PASS/);
    expect(r.stdout).toMatch(/stability\s+ok/);
    expect(r.stdout).not.toContain('NOT CONVERGED');
    expect(r.code).toBe(0);
  });

  it('inspect shows the f(z, x) bundle as one graph with two inputs and sliced outputs', async () => {
    const r = await runCli(['inspect', join(work, 'models', 'fzx-two-input')]);
    expect(r.stdout).toMatch(/inputs\s+x float32\[6\], ids int64\[3\]/);
    expect(r.stdout).toMatch(/outputs\s+first float32\[4\], rest float32\[2, 4\]/);
    expect(r.stdout).toMatch(/graphs\s+cell\n/);
  });

  it('vec-tanh over v2 infer and /predict matches PyTorch to 1e-4', async () => {
    const ref = reference['vec-tanh'];
    const x = ref.inputs.x as number[][];
    const meta = await json(await fetch(`${server!.url}/v2/models/vec-tanh`));
    expect(meta.inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, 20] }]);
    expect(meta.outputs).toEqual([{ name: 'y', datatype: 'FP32', shape: [-1, 3] }]);

    const v2 = await postJson(`${server!.url}/v2/models/vec-tanh/infer`, {
      id: 'byo-1', inputs: [{ name: 'x', datatype: 'FP32', shape: [x.length, 20], data: x.flat() }],
    });
    expect(v2.status).toBe(200);
    const body = await json(v2);
    expect(body.id).toBe('byo-1');
    expect(body.parameters.all_converged).toBe(true);
    expect(body.outputs[0].shape).toEqual([x.length, 3]);
    expect(maxDiff(body.outputs[0].data, ref.outputs.y)).toBeLessThanOrEqual(1e-4);

    const batched = await postJson(`${server!.url}/v1/models/vec-tanh/predict`, { inputs: { x } });
    expect(batched.status).toBe(200);
    const b = await json(batched);
    expect(b.shapes.y).toEqual([x.length, 3]);
    expect(b.solver.converged).toBe(true);
    expect(maxDiff(b.outputs.y, ref.outputs.y)).toBeLessThanOrEqual(1e-4);

    const single = await json(await postJson(`${server!.url}/v1/models/vec-tanh/predict`, { inputs: { x: x[2] } }));
    expect(single.shapes.y).toEqual([3]);
    expect(maxDiff(single.outputs.y, (ref.outputs.y as number[][])[2])).toBeLessThanOrEqual(1e-4);
  });

  it('fzx-two-input (no inject, no head; float32 + int64 inputs) matches PyTorch to 1e-4', async () => {
    const ref = reference['fzx-two-input'];
    const x = ref.inputs.x as number[][], ids = ref.inputs.ids as number[][];
    const v2 = await postJson(`${server!.url}/v2/models/fzx-two-input/infer`, {
      inputs: [
        { name: 'ids', datatype: 'INT64', shape: [ids.length, 3], data: ids },
        { name: 'x', datatype: 'FP32', shape: [x.length, 6], data: x.flat() },
      ],
    });
    expect(v2.status).toBe(200);
    const body = await json(v2);
    const out = Object.fromEntries(body.outputs.map((o: { name: string }) => [o.name, o]));
    expect(out.first.shape).toEqual([3, 4]);
    expect(out.rest.shape).toEqual([3, 2, 4]);
    expect(maxDiff(out.first.data, ref.outputs.first)).toBeLessThanOrEqual(1e-4);
    expect(maxDiff(out.rest.data, ref.outputs.rest)).toBeLessThanOrEqual(1e-4);

    const p = await json(await postJson(`${server!.url}/v1/models/fzx-two-input/predict`, { inputs: { x, ids }, outputs: ['rest'] }));
    expect(Object.keys(p.outputs)).toEqual(['rest']);
    expect(maxDiff(p.outputs.rest, ref.outputs.rest)).toBeLessThanOrEqual(1e-4);
  });

  it('uv-inject (inject with two inputs and two outputs of other shapes than z) matches PyTorch to 1e-4', async () => {
    const ref = reference['uv-inject'];
    const x = ref.inputs.x as number[][], ids = ref.inputs.ids as number[][];
    const r = await postJson(`${server!.url}/v2/models/uv-inject/versions/1/infer`, {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 5], data: x }, { name: 'ids', datatype: 'INT64', shape: [3, 2], data: ids.flat() }],
    });
    expect(r.status).toBe(200);
    const body = await json(r);
    expect(body.parameters.all_converged).toBe(true);
    expect(maxDiff(body.outputs[0].data, ref.outputs.y)).toBeLessThanOrEqual(1e-4);
  });

  it('refuses bad tensor requests with clear errors, and image routes refuse tensor models', async () => {
    const url = server!.url;
    const wrongShape = await postJson(`${url}/v1/models/vec-tanh/predict`, { inputs: { x: [[1, 2, 3]] } });
    expect(wrongShape.status).toBe(400);
    expect((await json(wrongShape)).error).toMatch(/shape/);
    const ragged = await postJson(`${url}/v1/models/vec-tanh/predict`, { inputs: { x: [Array(20).fill(0), [1]] } });
    expect(ragged.status).toBe(400);
    const missing = await postJson(`${url}/v1/models/fzx-two-input/predict`, { inputs: { x: [Array(6).fill(0)] } });
    expect(missing.status).toBe(400);
    expect((await json(missing)).error).toMatch(/missing input ids/);
    const fractionalId = await postJson(`${url}/v2/models/fzx-two-input/infer`, {
      inputs: [{ name: 'ids', datatype: 'INT64', shape: [1, 3], data: [1, 2.5, 3] }, { name: 'x', datatype: 'FP32', shape: [1, 6], data: Array(6).fill(0) }],
    });
    expect(fractionalId.status).toBe(400);
    const classify = await fetch(`${url}/v1/models/vec-tanh/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array([0x89, 0x50, 0x4e, 0x47]) });
    expect(classify.status).toBe(400);
    const err = await json(classify);
    expect(err.code).toBe('DEQ_ERR_WRONG_TASK');
    expect(err.error).toContain('/v1/models/vec-tanh/predict');
  });

  it('strict=True refuses to write a bundle whose reference solve does not converge; fold_norms leaves the caller\'s modules intact', async () => {
    const script = [
      'import sys, torch',
      'import byo_models as b',
      'torch.manual_seed(1)',
      'from deq_serve_export import ExportError, export_bundle, fold_norms',
      'cell = b.VecCell().eval(); z = torch.randn(2, 16); u = torch.randn(2, 16); before = cell(z, u)',
      'folded = fold_norms(cell)',
      'print("intact", float((cell(z, u) - before).abs().max()), float((folded(z, u) - before).abs().max()))',
      'try:',
      '    export_bundle(sys.argv[1], b.SmallInject().eval(), b.SlowCell().eval(), torch.nn.Linear(4, 2).eval(),',
      '                  parity_inputs={"x": torch.randn(2, 8)}, name="slow", task="tensor", head_outputs=["y"],',
      '                  solver={"method": "fixed-point", "tol": 1e-4, "stop_mode": "rel", "max_iter": 30}, strict=True,',
      // 50 plain steps at spectral radius 0.97 leave the residual at about 0.97^50 = 0.2 of its start
      '                  parity_solver={"method": "fixed-point", "tol": 1e-5, "stop_mode": "rel", "max_iter": 50})',
      '    print("exported")',
      'except ExportError as e:',
      '    print("refused:", str(e)[:60])',
    ].join('\n');
    const r = await run(PYTHON, ['-c', script, join(work, 'strict')], { PYTHONPATH: `${join(work, 'site')}:test/exporter` });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^intact 0\.0 0\.0$/m);
    expect(r.stdout).toContain('refused: PARITY FAIL');
    expect(r.stdout).not.toContain('exported');
  });

  it('state_pad="right" is written for a cell causal along the sequence axis and refused for one that is not', async () => {
    const script = [
      'import json, os, sys, torch',
      'from deq_serve_export import ExportError, export_bundle',
      'class PerPosition(torch.nn.Module):  # causal: each position on its own',
      '    def forward(self, z, u): return torch.tanh(0.5 * z + u)',
      'class WholeSequence(torch.nn.Module):  # not causal: every position sees the mean of all',
      '    def forward(self, z, u): return torch.tanh(0.5 * z + 0.3 * z.mean(1, keepdim=True) + u)',
      'for name, cell in (("per-position", PerPosition()), ("whole-sequence", WholeSequence())):',
      '    try:',
      '        export_bundle(os.path.join(sys.argv[1], name), None, cell.eval(), None, parity_inputs={"u": torch.randn(2, 6, 4)},',
      '                      name=name, task="tensor", state_shape=[-1, 4], seq_dynamic=True, state_pad="right")',
      '        print(name, "state", json.dumps(json.load(open(os.path.join(sys.argv[1], name, "manifest.json")))["state"]))',
      '    except ExportError as e:',
      '        print(name, "refused:", str(e)[:60])',
    ].join('\n');
    const r = await run(PYTHON, ['-c', script, join(work, 'pad')], { PYTHONPATH: join(work, 'site') });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('per-position state {"shape": [-1, 4], "pad": "right"}');
    expect(r.stdout).toContain("whole-sequence refused: state_pad='right' needs a cell that is causal");
  });

  it('a model whose default solver fails: the exporter warns and parity fails', async () => {
    expect(exportRun.stderr).toContain('WARNING (stability): the default solver (fixed-point');
    expect(exportRun.stderr).toMatch(/Suggested manifest solver: \{[^}]*"method": "broyden"/);
    expect(exportRun.stderr).toContain('PARITY FAIL');
    const manifest = JSON.parse(await readFile(join(work, 'failing', 'slow-fixed-point', 'manifest.json'), 'utf8'));
    expect(manifest.provenance.stability.default.converged).toBeLessThan(manifest.provenance.stability.default.of);
    expect(manifest.provenance.parity_selection).toMatch(/none left out/);
    const r = await runCli(['inspect', join(work, 'failing', 'slow-fixed-point')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/parity\s+FAIL/);
    expect(r.stdout).toContain('default solver NOT CONVERGED');
    expect(r.stdout).toMatch(/default solver WARNING: the manifest's solver converges on 0 of 4/);
    expect(r.stdout).toMatch(/stability\s+WARNING/);
  });
});
