// Mutation testing of the modules that carry a guarantee (docs/testing.md). Not in CI: on two
// shared cores the whole run takes hours. `npm run mutate` runs it all; one module with its own
// unit tests, e.g.:
//   STRYKER_TESTS=test/unit/limiter.test.ts npx stryker run --mutate src/outbox/limiter.ts
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.mutate.config.ts", related: false },
  checkers: ["typescript"],
  tsconfigFile: "tsconfig.json",
  mutate: [
    "src/outbox/worker.ts",
    "src/outbox/limiter.ts",
    "src/outbox/outcome.ts",
    "src/outbox/retry.ts",
    "src/outbox/health.ts",
    "src/export/delta.ts",
    "src/export/snapshot.ts",
    "src/export/exporter.ts",
    "src/scheduler/*.ts",
    "src/inbound/verify.ts",
  ],
  coverageAnalysis: "perTest",
  concurrency: 1,
  timeoutMS: 60_000,
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: "reports/mutation/mutation.html" },
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
  thresholds: { high: 90, low: 80, break: null },
};
