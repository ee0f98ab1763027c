import { defineConfig } from "vitest/config";

// Read by stock-tempdirs.test.ts through test/helpers/stock.ts, whose afterAll is registered when
// the module is first imported: that file needs a module graph of its own.
const OWN_GRAPH = ["test/unit/stock-tempdirs.test.ts"];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Three files at a time on the machine's two cores: most of a file's time is spent waiting
    // on child processes, servers and timers (a whole run: ~400 s of CPU in its own processes,
    // PostgreSQL's not counted, in ~850 s with two at a time: under a quarter of two cores).
    // Whole suite, same branch, shared machine: 846 s with 2, 679 s with 3, all green.
    // The SFTP files each start their own sshd and user.
    maxWorkers: 3,
    reporters: ["default"],
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          exclude: OWN_GRAPH,
          // Pure functions, no module state: one module graph per worker instead of one per file.
          // Importing a file's modules cost more than running its tests (24 s against 7 s for
          // the 35 files).
          isolate: false,
        },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts", ...OWN_GRAPH],
          globalSetup: ["test/helpers/global-setup.ts"],
        },
      },
    ],
  },
});
