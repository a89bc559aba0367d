import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Tests start real processes and pods, so they get generous timeouts and run files one at a time
    // on this 2-core machine to keep timing assertions meaningful.
    testTimeout: 60_000,
    hookTimeout: 300_000,
    fileParallelism: false,
  },
});
