// @ts-check
// Whether dist/ (the esbuild bundle of src/) was built from the sources that are here now.
// Plain JavaScript: src/bin.js reads it before anything can compile TypeScript.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../", import.meta.url));
export const DIST = join(ROOT, "dist");
export const STAMP = "stamp.json";
export const ENTRY = "cli.js";

/**
 * What the bundle is made from: everything under src/, the build script, tsconfig.json, and the
 * lockfile (the build bundles some dependencies: another version installed makes it stale).
 */
const INPUTS = ["src", "scripts/build.js", "tsconfig.json", "package-lock.json"];

/**
 * One line per input file, `path size mtime`, sorted: an edited, added or removed file changes
 * it. About 100 stat calls (~1 ms), cheap enough for every start.
 * @param {string} root
 * @returns {string[]}
 */
export function inputsOf(root) {
  /** @type {string[]} */
  const lines = [];
  const visit = (/** @type {string} */ path) => {
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) {
      for (const name of readdirSync(path)) visit(join(path, name));
    } else {
      lines.push(`${relative(root, path)} ${st.size} ${st.mtimeMs}`);
    }
  };
  for (const input of INPUTS) visit(join(root, input));
  return lines.sort();
}

/**
 * @typedef {{ inputs: string[]; files: string[]; previous?: string[] }} Stamp
 * `files`: what the build wrote to dist/; `previous`: what the build before it wrote (kept, so a
 * process started from that build still finds its lazily imported chunks).
 */

/**
 * @param {string} dist
 * @returns {Stamp | null}
 */
export function readStamp(dist) {
  try {
    return JSON.parse(readFileSync(join(dist, STAMP), "utf8"));
  } catch {
    return null;
  }
}

/**
 * The bundle's entry when dist/ was built from the current inputs, else why not.
 * @param {string} [root]
 * @returns {{ fresh: true; entry: string } | { fresh: false; reason: string }}
 */
export function distFreshness(root = ROOT) {
  const dist = join(root, "dist");
  const stamp = readStamp(dist);
  if (!stamp) return { fresh: false, reason: "no build in dist/ (npm run build makes one)" };
  const built = new Set(stamp.inputs);
  const now = inputsOf(root);
  const changed = now.find((line) => !built.has(line));
  if (changed) return { fresh: false, reason: `${changed.split(" ")[0]} changed since the build` };
  if (now.length !== built.size) return { fresh: false, reason: "a source file was removed since the build" };
  return { fresh: true, entry: join(dist, ENTRY) };
}
