import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests run against the built package (dist/ and esm/), as users get it.
    server: { deps: { external: [/\/dist\//, /\/esm\//] } },
  },
});
