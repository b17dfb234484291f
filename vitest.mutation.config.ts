import { defineConfig } from 'vitest/config';

// The suites that guard src/solver/ and src/runtime/deq-model.ts, for `npm run test:mutation`
// (StrykerJS): each mutant runs only the tests that cover it, so these must be fast and local.
export default defineConfig({
  test: {
    include: ['test/solver/**/*.test.ts', 'test/runtime/deq-model.test.ts', 'test/runtime/batch-invariance.test.ts', 'test/runtime/scheduler.test.ts', 'test/runtime/cell-batch.test.ts', 'test/runtime/solve-plan.test.ts', 'test/runtime/spare-pool.test.ts'],
    testTimeout: 180_000, // instrumented code runs several times slower
    // Leave out the two heaviest cases (a shipped 6,272-element state, a 1,000-iteration memory probe):
    // under instrumentation they cost minutes per mutant, and the fixture cases cover the same code.
    testNamePattern: /^(?!.*(shipped fashion-mnist-jr|constant memory)).*$/,
    hookTimeout: 60_000,
  },
});
