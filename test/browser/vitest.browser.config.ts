import { defineConfig } from 'vitest/config';

// `npm run test:browser`: kept out of `npm test` (which must pass where only `npm ci` ran, with no
// browser); .ci/run installs Debian's chromium, runs it, and adds this JSON report to the totals.
export default defineConfig({
  test: {
    include: ['test/browser/*.e2e.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default', ['json', { outputFile: '.test-results/browser.json' }]],
  },
});
