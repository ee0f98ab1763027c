// @ts-check
// `npm run build` (and npm ci / npm install, through `prepare`): bundles src/ into dist/ with
// esbuild, so `stock-sync` starts without compiling TypeScript (tsx costs ~30 MB of RSS).
// Dependencies stay in node_modules (PGlite loads its wasm and data relative to its own module).
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { build } from "esbuild";
import { DIST, ENTRY, inputsOf, ROOT, readStamp, STAMP } from "../src/bundle.js";

/** @type {import("esbuild").BuildOptions} */
export const OPTIONS = {
  entryPoints: [join(ROOT, "src/cli.ts")],
  bundle: true,
  packages: "external",
  // Commands import their modules lazily (`snapshot` never loads fastify or PGlite): splitting
  // keeps those imports lazy instead of hoisting every dependency into the entry.
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // Not loaded at run time (--enable-source-maps costs memory, see docs/benchmarks.md); the code
  // is not minified, so stack traces stay readable, and NODE_OPTIONS=--enable-source-maps maps them.
  sourcemap: "linked",
  // Flat, like src/root.ts one level below the package root: `new URL("../", import.meta.url)`
  // finds the root from every output file.
  entryNames: "[name]",
  chunkNames: "[name]-[hash]",
  logLevel: "warning",
};

/**
 * Builds into dist/ without disturbing a process running from it: every file is written under
 * a temporary name and renamed, the stamp last, and the previous build's files are kept.
 * @param {string} [dist]
 */
export async function buildDist(dist = DIST) {
  const inputs = inputsOf(ROOT); // before reading the sources: an edit during the build makes it stale
  const result = await build({ ...OPTIONS, outdir: dist, write: false });
  mkdirSync(dist, { recursive: true });
  const files = result.outputFiles.map((f) => {
    if (dirname(f.path) !== dist) throw new Error(`${f.path}: build output must sit directly in ${dist}`);
    writeAtomically(f.path, f.contents);
    return basename(f.path);
  });
  const previous = readStamp(dist)?.files ?? [];
  writeAtomically(join(dist, STAMP), `${JSON.stringify({ inputs, files, previous }, null, 1)}\n`);
  const keep = new Set([STAMP, ...files, ...previous]);
  for (const name of readdirSync(dist)) {
    if (!keep.has(name)) rmSync(join(dist, name), { force: true });
  }
  return { files };
}

/**
 * @param {string} path
 * @param {string | Uint8Array} contents
 */
function writeAtomically(path, contents) {
  const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, path);
}

if (process.argv[1] === import.meta.filename) {
  const started = performance.now();
  const { files } = await buildDist();
  const ms = (performance.now() - started).toFixed(0);
  process.stdout.write(`stock-sync: built dist/${ENTRY} and ${files.length - 1} more files in ${ms} ms\n`);
}
