import { fileURLToPath } from "node:url";

// This file sits one level below the package root, and so does every file of the bundle in
// dist/ (scripts/build.js writes them flat): the same relative URL finds the root from both.
const ROOT = new URL("../", import.meta.url);

/** An absolute path inside the package, e.g. `fromRoot("src/db/migrations/")`. */
export const fromRoot = (path: string): string => fileURLToPath(new URL(path, ROOT));
