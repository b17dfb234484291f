// The field's DEQ constructs, exported with no glue (issue #21): test/exporter/field_models.py
// rebuilds each construct of locuslab/deq and torchdeq that broke the exporter (a class named
// WeightNorm that is not PyTorch's, a torchdeq-style norm that recomputes .weight in forward, a
// BatchNorm head, a list-valued state, a channels-first sequence state, a float32 cell whose
// residual floor is above 1e-5, …); field_cases.py exports each as docs/guides/export-your-deq.md says.
// Every bundle must pass `deq-serve inspect` and serve the user's own model's outputs within
// 1e-4; a deliberately stale weight must fail parity; bad bundles must leave nothing behind.
//
// Runs with Debian's python3-torch 1.13 (`npm run test:exporter`, python3-onnx and
// python3-jsonschema too) and with current PyTorch from PyPI (`npm run test:exporter-pypi`,
// DEQ_EXPORT_PYTHON set to exporter/ci/make-venv.sh's python). It fails, never skips, when
// they are missing.
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { describeExportCases } from './export-cases.js';

describeExportCases({
  title: `the field's DEQ constructs export with no glue (${process.env.DEQ_EXPORT_PYTHON ?? '/usr/bin/python3'})`,
  python: process.env.DEQ_EXPORT_PYTHON ?? '/usr/bin/python3',
  script: 'test/exporter/field_cases.py',
  cases: [
    'locuslab_weightnorm', 'torchdeq_norm_in_place', 'stale_weight_fails_parity', 'stale_weight_with_reference',
    'unknown_computed_weight_refused', 'batchnorm_head_and_dropout_inject', 'list_state', 'list_state_inject_first', 'list_state_no_head',
    'channels_first_sequence', 'deq_transformer_adapter', 'sequence_without_state_shape', 'float32_floor', 'invalid_graph_leaves_bundle_intact',
    'manifest_values_validated', 'upstream_export_pitfalls', 'tuple_state', 'tuple_injection', 'pytorch_hook_norms', 'history_in_stability_search',
  ],
  served: [
    ['locuslab-weightnorm', 'locuslab_weightnorm'],
    ['torchdeq-in-place', 'torchdeq_norm_in_place'],
    ['stale-weight-reference', 'stale_weight_with_reference'],
    ['batchnorm-head', 'batchnorm_head_and_dropout_inject'],
    ['batchnorm-head-train', 'batchnorm_head_and_dropout_inject'],
    ['list-state', 'list_state'],
    ['list-state-inject-first', 'list_state_inject_first'],
    ['channels-first', 'channels_first_sequence'],
    ['deq-transformer-like', 'deq_transformer_adapter'],
    ['pitfalls', 'upstream_export_pitfalls'],
    ['tuple-injection', 'tuple_injection'],
  ],
  inspected: ['list-state-no-head', 'float32-floor', 'tuple-state', 'torch-hook-norms'],
  more: ({ results, work }) => {
    it('a deliberately stale weight fails parity at export, names the weight and writes nothing', () => {
      const r = results().stale_weight_fails_parity;
      expect(r.detail).toMatch(/^PARITY FAIL: the exported graphs' outputs differ from your model's by [0-9.e-]+/);
      expect(r.detail).toContain('cell.lin.weight');
      expect(r.written).toBe(false);
      expect(existsSync(join(work(), 'models', 'stale-weight'))).toBe(false);
    });

    it('inspect fails a bundle whose cell graph is not the model parity.json recorded', async () => {
      // stale-weight-reference is right (exported with reference= its own forward). Put another
      // model's cell graph of the same shapes in its place: the outputs parity.json holds are
      // the model's, so inspect must say FAIL.
      const dir = join(work(), 'models', 'stale-weight-reference');
      const swapped = join(work(), 'swapped');
      const { cp } = await import('node:fs/promises');
      await cp(dir, swapped, { recursive: true });
      await copyFile(join(work(), 'models', 'torchdeq-in-place', 'cell.onnx'), join(swapped, 'cell.onnx'));
      const manifest = JSON.parse(await readFile(join(swapped, 'manifest.json'), 'utf8'));
      manifest.graphs.cell.sha256 = createHash('sha256').update(await readFile(join(swapped, 'cell.onnx'))).digest('hex');
      await writeFile(join(swapped, 'manifest.json'), JSON.stringify(manifest));
      const r = await runCli(['inspect', swapped]);
      expect(r.stdout).toMatch(/parity\s+FAIL/);
      expect(r.code).toBe(1);
    });
  },
});
