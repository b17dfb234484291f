import { defineConfig } from 'vitest/config';

// `npm run test:fuzz`: the hostile-client fuzz suite (minutes, so not in `npm test`).
export default defineConfig({
  test: {
    include: ['test/fuzz/**/*.fuzz.ts'],
    testTimeout: 600_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default', ['json', { outputFile: '.test-results/fuzz.json' }]],
  },
});
