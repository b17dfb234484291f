import { defineConfig } from 'vitest/config';

// `npm run test:image`: kept out of `npm test` (which must pass where only `npm ci` ran);
// .ci/run runs it after `npm test` and adds this JSON report to the totals.
export default defineConfig({
  test: {
    include: ['test/deploy/image.e2e.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default', ['json', { outputFile: '.test-results/image.json' }]],
  },
});
