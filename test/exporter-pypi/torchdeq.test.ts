// The real torchdeq from PyPI (issue #21): a model built with get_deq, apply_norm and
// reset_norm (weight norm, spectral norm), loaded from a checkpoint so that its stored .weight
// is stale, exports naming only inject, f and head with reference= the model itself (torchdeq's
// own solver); served outputs match torchdeq's to 1e-4. Without reference= parity fails,
// naming the weight. Runs in the PyPI venv (npm run test:exporter-pypi sets DEQ_EXPORT_PYTHON).
import { describeExportCases } from '../exporter/export-cases.js';

const python = process.env.DEQ_EXPORT_PYTHON;
if (!python) throw new Error('DEQ_EXPORT_PYTHON is not set: run `npm run test:exporter-pypi` (it makes the PyPI venv with exporter/ci/make-venv.sh)');

describeExportCases({
  title: 'the real torchdeq package exports with no glue',
  python,
  script: 'test/exporter/torchdeq_cases.py',
  cases: ['torchdeq_weight_norm', 'torchdeq_spectral_norm', 'torchdeq_stale_fails_parity'],
  served: [['torchdeq-weight-norm', 'torchdeq_weight_norm'], ['torchdeq-spectral-norm', 'torchdeq_spectral_norm']],
});
