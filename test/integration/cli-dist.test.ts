import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildDist } from "../../scripts/build.js";
import { DIST, distFreshness, inputsOf, STAMP } from "../../src/bundle.js";
import { ROOT, runCli } from "../helpers/cli.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "stock-sync-dist-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("stock-sync from the bundle in dist/", () => {
  beforeAll(async () => {
    // What `npm ci` leaves; after an edit to src/ the tests would otherwise run tsx only.
    if (!distFreshness().fresh) await buildDist();
  }, 60_000);

  it("bin.js runs dist/, which finds the migrations and the demo fixtures from there", async () => {
    const shipped = await readFile(join(ROOT, "config/stock-sync.yaml"), "utf8");
    const path = join(dir, "embedded.yaml");
    await writeFile(path, shipped.replace("data_dir: ./data", `data_dir: ${join(dir, "data")}`));
    // One process: opening the app migrates the new embedded database and seeds the demo source
    // (a sending snapshot: --out and --dry-run never load the demo).
    const r = await runCli(["--config", path, "snapshot"], {
      env: { NODE_DEBUG: "stock-sync" },
    });
    expect(r.stderr).toContain(`running ${join(DIST, "cli.js")}`);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/"applied":\["0001_init.sql",.*"state schema migrated"/);
    expect(r.stderr).toContain("demo inventory loaded");
    expect(r.stdout).toMatch(/full snapshot: \d{4} rows.*enqueued/);
  }, 120_000); // a new embedded database takes seconds to initialise, more on a busy machine
});

describe("distFreshness: dist/ counts only when built from the sources that are here", () => {
  let root: string;
  const stamp = () =>
    writeFile(join(root, "dist", STAMP), JSON.stringify({ inputs: inputsOf(root), files: [] }));

  beforeAll(async () => {
    root = join(dir, "pkg");
    await mkdir(join(root, "src/db"), { recursive: true });
    await mkdir(join(root, "dist"));
    await writeFile(join(root, "src/cli.ts"), "export {};\n");
    await writeFile(join(root, "src/db/migrate.ts"), "export {};\n");
    await writeFile(join(root, "tsconfig.json"), "{}\n");
  });

  it("no stamp: not built", async () => {
    expect(distFreshness(root)).toMatchObject({ fresh: false, reason: expect.stringContaining("no build") });
    await stamp();
    expect(distFreshness(root)).toEqual({ fresh: true, entry: join(root, "dist", "cli.js") });
  });

  it("an edited, an added and a removed source file each make it stale", async () => {
    await stamp();
    await writeFile(join(root, "src/db/migrate.ts"), "export const edited = 1;\n");
    expect(distFreshness(root)).toEqual({
      fresh: false,
      reason: "src/db/migrate.ts changed since the build",
    });

    await stamp();
    await writeFile(join(root, "src/db/new.ts"), "export {};\n");
    expect(distFreshness(root)).toEqual({ fresh: false, reason: "src/db/new.ts changed since the build" });

    await stamp();
    await rm(join(root, "src/db/new.ts"));
    expect(distFreshness(root)).toMatchObject({ fresh: false, reason: expect.stringContaining("removed") });

    await stamp();
    expect(distFreshness(root).fresh).toBe(true);
  });
});
