import { defineConfig } from 'vitest/config';

// `npm run test:clients`: tritonclient (HTTP + gRPC), the KServe SDK and a grpcio-tools client
// (PyPI, in a venv made by test/clients/make-venv.sh) against a live server with gRPC on.
// Kept out of `npm test` (needs PyPI); .ci/run runs it and adds this JSON report to the totals.
export default defineConfig({
  test: {
    include: ['test/clients/*.e2e.ts'],
    testTimeout: 300_000,
    hookTimeout: 900_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default', ['json', { outputFile: '.test-results/clients.json' }]],
  },
});
