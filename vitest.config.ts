import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // two files at a time (the machine's two cores): most of a file's time is spent waiting on
    // child processes, servers and timers. The SFTP files each start their own sshd and user.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
