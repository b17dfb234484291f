import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The JSON report gives CI its "N passed, N failed" line (.ci/run).
    reporters: ['default', ['json', { outputFile: '.test-results/vitest.json' }]],
  },
});
