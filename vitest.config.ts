import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/exporter needs Debian's python3-torch/python3-onnx: `npm run test:exporter` (.ci/run runs it);
    // test/exporter-pypi needs the PyPI venv: `npm run test:exporter-pypi`.
    // test/peers needs the benchmark peers' venv: `npm run test:peers`.
    exclude: ['test/exporter/**', 'test/exporter-pypi/**', 'test/peers/**', '**/node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The JSON report gives CI its "N passed, N failed" line (.ci/run).
    reporters: ['default', ['json', { outputFile: '.test-results/vitest.json' }]],
  },
});
