import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Two files at a time on the 2-core CI machine (vitest's default there is one): most files wait
    // on processes, timers and leases rather than compute, so two halve the run (~25 -> ~15 min
    // with the SFTP, formats, jobs and fault tests). Waits are bounds, never speed checks.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
