import { defineConfig } from 'vitest/config';

// `npm run test:contract`: schemathesis (PyPI, in a venv made by test/contract/setup-schemathesis.sh)
// against a live server, from its own /openapi.json. Kept out of `npm test` (needs PyPI);
// .ci/run runs it and adds this JSON report to the totals.
export default defineConfig({
  test: {
    include: ['test/contract/*.e2e.ts'],
    testTimeout: 420_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default', ['json', { outputFile: '.test-results/contract.json' }]],
  },
});
