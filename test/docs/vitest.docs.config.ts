import { defineConfig } from 'vitest/config';

// `npm run test:docs`: runs every shell block of README.md and docs/ that is not marked
// "# not run by the docs check: …", against a fresh build and a server on a loopback port.
// .ci/run runs it and adds this JSON report to the totals.
export default defineConfig({
  test: {
    include: ['test/docs/*.docs.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default', ['json', { outputFile: '.test-results/docs.json' }]],
  },
});
