import { defineConfig } from 'vitest/config';

// The exporter under current PyTorch from PyPI and the real torchdeq (issue #21): run by
// `npm run test:exporter-pypi`, which makes (or reuses) the venv with exporter/ci/make-venv.sh
// and sets DEQ_EXPORT_PYTHON to its python.
export default defineConfig({
  test: {
    include: ['test/exporter/field-models.test.ts', 'test/exporter-pypi/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    pool: 'forks',
    reporters: ['default', ['json', { outputFile: '.test-results/vitest-exporter-pypi.json' }]],
  },
});
