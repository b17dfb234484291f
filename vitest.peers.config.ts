import { defineConfig } from 'vitest/config';

// The benchmark peers of issue #29 (bench compare --peers, bench http --peer fastapi) give deq-serve's
// answers at deq-serve's NFE: run by `npm run test:peers`, which makes (or reuses) the peers' venv with
// models/recipes/make-bench-venv.sh and sets DEQ_PEERS_PYTHON to its python.
export default defineConfig({
  test: {
    include: ['test/peers/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default', ['json', { outputFile: '.test-results/vitest-peers.json' }]],
  },
});
