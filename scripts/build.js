// @ts-check
// `npm run build` (and npm ci / npm install, through `prepare`): bundles src/ into dist/ with
// esbuild, so `stock-sync` starts without compiling TypeScript (tsx costs ~30 MB of RSS).
// The dependencies of the snapshot/delta path are bundled in (BUNDLED below); the others stay in
// node_modules (PGlite loads its wasm and data relative to its own module).
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { build } from "esbuild";
import { DIST, ENTRY, inputsOf, ROOT, readStamp, STAMP } from "../src/bundle.js";

/**
 * Packages bundled into dist/ with everything they import: those every command, and `snapshot` and
 * `delta` in particular, load at start. Node resolves, reads and links each file of an ESM or
 * CommonJS package on its own (zod alone is 95 files, pg ~40), which was most of a CLI command's
 * start: `snapshot --out` of 0 rows 950 ms -> 562 ms with these bundled (medians of 15 rounds,
 * docs/benchmarks.md "Full snapshot"), and ~10 MB less RSS. Pure JavaScript only, nothing that finds files
 * beside its own module at run time: pino is bundled, but its transports (worker files found by
 * path) would not work from the bundle, and the log uses none (pino-pretty is an in-process
 * stream, external since it is loaded on demand); node-cron stays external, since its background
 * tasks fork a daemon.js found beside its own module (the scheduler passes functions, but a path
 * would break silently).
 */
export const BUNDLED = new Set([
  "commander",
  "zod",
  "yaml",
  "jsonata",
  "pino",
  "pg",
  "pg-copy-streams",
  "pg-query-stream",
  "@fast-csv/format",
  "csv-parse",
]);

const packageOf = (/** @type {string} */ spec) =>
  spec
    .split("/")
    .slice(0, spec.startsWith("@") ? 2 : 1)
    .join("/");

/** @type {import("esbuild").Plugin} */
const externalUnlessBundled = {
  name: "external-unless-bundled",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      // pg's optional native binding: required only when asked for (pg.native), never installed here.
      if (args.path === "pg-native") return { external: true };
      // A bundled package's own imports are bundled with it.
      if (args.importer.includes("/node_modules/")) return undefined;
      return BUNDLED.has(packageOf(args.path)) ? undefined : { external: true };
    });
  },
};

/**
 * pg asks at load whether it runs on Cloudflare Workers by building a `Response` when there is no
 * `navigator` (Node 20 has none): that first touch of `Response` loads Node's whole fetch
 * implementation, 30-330 ms of every command's start on this machine (median ~65 ms), for an
 * answer that is always "no" here. The bundled copy answers it without: the same code path.
 */
const CLOUDFLARE_PROBE = "typeof Response === 'function'";

/** @type {import("esbuild").Plugin} */
const pgWithoutFetch = {
  name: "pg-without-fetch",
  setup(build) {
    build.onLoad({ filter: /[/\\]node_modules[/\\]pg[/\\]lib[/\\]stream\.js$/ }, async (args) => {
      const source = await readFile(args.path, "utf8");
      if (!source.includes(CLOUDFLARE_PROBE)) {
        // Another pg version: bundle it unchanged (correct, only slower to start), and say so.
        return {
          contents: source,
          loader: "js",
          warnings: [{ text: `${args.path}: no Cloudflare probe to skip` }],
        };
      }
      return { contents: source.replace(CLOUDFLARE_PROBE, "false"), loader: "js" };
    });
  },
};

/** @type {import("esbuild").BuildOptions} */
export const OPTIONS = {
  entryPoints: [join(ROOT, "src/cli.ts")],
  bundle: true,
  plugins: [externalUnlessBundled, pgWithoutFetch],
  // Bundled CommonJS packages call require() for Node's own modules; an ES module has none.
  banner: {
    js: 'import { createRequire as __stockSyncCreateRequire } from "node:module";\nconst require = __stockSyncCreateRequire(import.meta.url);',
  },
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
