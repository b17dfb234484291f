import { defineConfig } from 'vitest/config';

// The exporter's end-to-end tests: PyTorch export → deq-serve inspect → HTTP (needs
// /usr/bin/python3 with python3-torch and python3-onnx; .ci/run installs them).
export default defineConfig({
  test: {
    include: ['test/exporter/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    pool: 'forks',
    reporters: ['default', ['json', { outputFile: '.test-results/vitest-exporter.json' }]],
  },
});
