import { defineConfig } from 'vitest/config';

// The suites that guard src/solver/ and src/runtime/deq-model.ts, for `npm run test:mutation`
// (StrykerJS): each mutant runs only the tests that cover it, so these must be fast and local.
export default defineConfig({
  test: {
    include: ['test/solver/**/*.test.ts', 'test/runtime/deq-model.test.ts', 'test/runtime/batch-invariance.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
