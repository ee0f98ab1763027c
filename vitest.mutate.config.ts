import { defineConfig } from "vitest/config";

// The test files a mutation run uses: all of them, or those named in STRYKER_TESTS
// (comma-separated), so one module can be measured with its own fast tests. The database
// template (globalSetup) is made only when the integration tests are in.
const only = process.env.STRYKER_TESTS?.split(",").filter(Boolean);

export default defineConfig({
  test: {
    include: only ?? ["test/**/*.test.ts"],
    globalSetup: only?.every((f) => f.startsWith("test/unit/")) ? [] : ["test/helpers/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: ["dot"],
  },
});
