// The field's DEQ constructs, exported with no glue (issue #21): test/exporter/field_models.py
// rebuilds each construct of locuslab/deq and torchdeq that broke the exporter (a class named
// WeightNorm that is not PyTorch's, a torchdeq-style norm that recomputes .weight in forward, a
// BatchNorm head, a list-valued state, a channels-first sequence state, a float32 cell whose
// residual floor is above 1e-5, …); field_cases.py exports each as docs/exporting.md says.
// Every bundle must pass `deq-serve inspect` and serve the user's own model's outputs within
// 1e-4; a deliberately stale weight must fail parity; bad bundles must leave nothing behind.
//
// Needs Debian's python3-torch, python3-onnx and python3-jsonschema (/usr/bin/python3), like
// byo-deq.test.ts: run by `npm run test:exporter`; it fails (never skips) when they are missing.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { postJson, ROOT } from '../server/helpers.js';
import { loadConfig, startServer, type RunningServer } from '../../dist/server/index.js';

const PYTHON = process.env.DEQ_EXPORT_PYTHON ?? '/usr/bin/python3';

type Nested = number | Nested[];
const flat = (v: Nested): number[] => (Array.isArray(v) ? v.flatMap(flat) : [v]);

interface CaseResult {
  ok: boolean;
  detail: string;
  written?: boolean;
  reference?: { inputs: Record<string, Nested>; outputs: Record<string, Nested> };
}

function run(cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { cwd: ROOT, timeout: 600_000, env: { ...process.env, ...env }, maxBuffer: 32 << 20 }, (err, _out, stderr) => {
      done({ code: err ? 1 : 0, stderr });
    });
  });
}

// bundle → the case in field_cases.py whose "reference" (the user's own model's outputs) it serves
const SERVED: [string, string][] = [
  ['locuslab-weightnorm', 'locuslab_weightnorm'],
  ['torchdeq-in-place', 'torchdeq_norm_in_place'],
  ['stale-weight-reference', 'stale_weight_with_reference'],
  ['batchnorm-head', 'batchnorm_head_and_dropout_inject'],
  ['batchnorm-head-train', 'batchnorm_head_and_dropout_inject'],
  ['list-state', 'list_state'],
  ['channels-first', 'channels_first_sequence'],
  ['pitfalls', 'upstream_export_pitfalls'],
];

describe('the field\'s DEQ constructs export with no glue', () => {
  let work: string;
  let results: Record<string, CaseResult>;
  let server: RunningServer | undefined;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'deq-field-'));
    const r = await run(PYTHON, ['test/exporter/field_cases.py', work], { PYTHONPATH: 'exporter:test/exporter' });
    if (r.code !== 0 || !existsSync(join(work, 'results.json'))) throw new Error(`field_cases.py failed:\n${r.stderr.slice(-4000)}`);
    results = JSON.parse(await readFile(join(work, 'results.json'), 'utf8'));
    const config = loadConfig(['--models-dir', join(work, 'models'), '--port', '0', '--host', '127.0.0.1', '--workers', '1'], {}, { logLevel: 'silent' });
    server = await startServer(config);
  }, 600_000);

  afterAll(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it.each([
    'locuslab_weightnorm', 'torchdeq_norm_in_place', 'stale_weight_fails_parity', 'stale_weight_with_reference',
    'unknown_computed_weight_refused', 'batchnorm_head_and_dropout_inject', 'list_state', 'list_state_no_head',
    'channels_first_sequence', 'sequence_without_state_shape', 'float32_floor', 'invalid_graph_leaves_bundle_intact',
    'manifest_values_validated', 'upstream_export_pitfalls', 'history_in_stability_search',
  ])('%s', (name) => {
    const r = results[name];
    expect(r, `no result for ${name}`).toBeDefined();
    expect(r.ok, r.detail).toBe(true);
  });

  it('a deliberately stale weight fails parity at export, names the weight and writes nothing', () => {
    const r = results.stale_weight_fails_parity;
    expect(r.detail).toMatch(/^PARITY FAIL: the exported graphs' outputs differ from your model's by [0-9.e-]+/);
    expect(r.detail).toContain('cell.lin.weight');
    expect(r.written).toBe(false);
    expect(existsSync(join(work, 'models', 'stale-weight'))).toBe(false);
  });

  it.each([...SERVED.map(([b]) => b), 'list-state-no-head', 'float32-floor'])('deq-serve inspect passes %s', async (bundle) => {
    const r = await runCli(['inspect', join(work, 'models', bundle)]);
    expect(r.stdout).toMatch(/parity\s+PASS/);
    expect(r.stdout).toMatch(/stability\s+ok/);
    expect(r.code).toBe(0);
  });

  it('inspect fails a bundle whose graph was swapped for a stale one (parity holds the model\'s outputs)', async () => {
    // The stale-weight model's bundle, exported with reference= (its own forward), is right. Put
    // the stale-weight-free torchdeq-in-place cell graph in its place: the graphs no longer match
    // the outputs parity.json recorded from the model, and inspect must say FAIL.
    const { copyFile, writeFile } = await import('node:fs/promises');
    const { createHash } = await import('node:crypto');
    const dir = join(work, 'models', 'stale-weight-reference');
    const swapped = join(work, 'swapped');
    await run('cp', ['-r', dir, swapped], {});
    await copyFile(join(work, 'models', 'torchdeq-in-place', 'cell.onnx'), join(swapped, 'cell.onnx'));
    const manifest = JSON.parse(await readFile(join(swapped, 'manifest.json'), 'utf8'));
    manifest.graphs.cell.sha256 = createHash('sha256').update(await readFile(join(swapped, 'cell.onnx'))).digest('hex');
    await writeFile(join(swapped, 'manifest.json'), JSON.stringify(manifest));
    const r = await runCli(['inspect', swapped]);
    expect(r.stdout).toMatch(/parity\s+FAIL/);
    expect(r.code).toBe(1);
  });

  it.each(SERVED)('%s: served outputs match the user\'s own model to 1e-4, converged', async (bundle, name) => {
    const ref = results[name].reference!;
    const res = await postJson(`${server!.url}/v1/models/${bundle}/predict`, { inputs: ref.inputs });
    expect(res.status).toBe(200);
    const body = await res.json() as { outputs: Record<string, Nested>; solver: { converged: boolean } };
    expect(body.solver.converged).toBe(true);
    for (const [k, want] of Object.entries(ref.outputs)) {
      const got = flat(body.outputs[k]), w = flat(want);
      expect(got.length).toBe(w.length);
      let d = 0;
      for (let i = 0; i < w.length; i++) d = Math.max(d, Math.abs(got[i] - w[i]));
      expect(d).toBeLessThanOrEqual(1e-4);
    }
  });
});
