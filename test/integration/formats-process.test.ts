import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { runCli, startCli } from "../helpers/cli.js";
import { useCleanup } from "../helpers/cleanup.js";
import { createTestDb, type TestDb } from "../helpers/db.js";
import { waitUntil } from "../helpers/engine.js";
import type { Recorded } from "../helpers/receiver.js";
import { stockFixture } from "../helpers/stock.js";

// Issue 14, as a user runs it: a running `stock-sync start` re-reads its code maps on SIGHUP, and
// `snapshot`/`delta --out - --subscription NAME` print exactly what that subscription would get.
const { cleanup, receiver } = useCleanup();

type Line = { sku: string; location: string; quantity: number };
const linesOf = (req: Recorded): Line[] =>
  req.body
    .toString("utf8")
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);

describe.skipIf(!inject("pgTemplate"))("formats in a running process and the CLI", () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  let dir: string;
  let failed = false;
  beforeAll(async () => {
    t = await createTestDb("postgres");
    dir = await mkdtemp(join(tmpdir(), "stock-sync-formats-process-"));
    await stockFixture(t.db); // the demo inventory with change capture, as the source
  });
  afterAll(async () => {
    await t?.drop(failed);
    await rm(dir, { recursive: true, force: true });
  });

  const locations = async () =>
    (
      await t.db.query<{ location: string }>("select distinct location from inventory.stock_on_hand")
    ).rows.map((r) => r.location);
  const writeMap = async (prefix: string) =>
    writeFile(
      join(dir, "locations.csv"),
      `ours,theirs\n${(await locations()).map((l) => `${l},${prefix}-${l}`).join("\n")}\n`,
    );
  const config = async (url: string, deltaEvery: string) => {
    const path = join(dir, "c.yaml");
    await writeFile(
      path,
      `database: { url: "${t.url}", data_dir: "${dir}/data" }\nsource: { url: "${t.url}" }\nserver: { port: 0 }\n` +
        `stock:\n  full: { schedule: "0 0 1 1 *" }\n  delta: { schedule: "${deltaEvery}" }\n` +
        `subscriptions:\n  - name: oms\n    subjects: [stock.full, stock.delta]\n    url: "${url}"\n` +
        "    body: { format: ndjson, columns: [sku, location, quantity], rows_per_message: 5000 }\n" +
        `    map: { location: { file: "${join(dir, "locations.csv")}", missing: fail } }\n`,
    );
    return path;
  };
  /** One row with room to change, and its changed quantity. */
  const bump = async (n: number) => {
    const { rows } = await t.db.query<Line>(
      `select sku, location, quantity from inventory.stock_on_hand where quantity > 40 order by sku, location offset $1 limit 1`,
      [n],
    );
    const row = rows[0]!;
    await t.db.query(
      "update inventory.stock_on_hand set quantity = quantity + 25 where sku = $1 and location = $2",
      [row.sku, row.location],
    );
    return row;
  };

  it("SIGHUP: a running start re-reads its code map files; the next delta carries the new codes", async () => {
    failed = true;
    await writeMap("A");
    const r = await receiver(() => ({ status: 204 }));
    const running = await startCli(["--config", await config(r.url, "*/2 * * * * *")]);
    cleanup.push(() => running.stop("SIGTERM"));
    /** The location the OMS got for this row in a delta. */
    const deltaLocation = (row: Line) =>
      waitUntil(
        async () =>
          r.requests
            .filter((q) => q.headers["stock-sync-kind"] === "delta")
            .flatMap(linesOf)
            .find((l) => l.sku === row.sku && l.location.endsWith(`-${row.location}`))?.location,
        60_000,
        `a delta with ${row.sku}`,
      );
    // the full at start first (a change made before it would be in the full, not in a delta)
    await waitUntil(
      async () => r.requests.some((q) => q.headers["stock-sync-kind"] === "full"),
      60_000,
      "the full",
    );
    const first = await bump(0);
    expect(await deltaLocation(first)).toBe(`A-${first.location}`);

    await writeMap("B");
    running.child.kill("SIGHUP");
    await waitUntil(async () => running.output().stderr.includes("code maps re-read"), 30_000, "the reload");
    const second = await bump(1);
    expect(await deltaLocation(second)).toBe(`B-${second.location}`);
    // the full at start had the old codes: every location in it was mapped with A
    const full = r.requests.filter((q) => q.headers["stock-sync-kind"] === "full").flatMap(linesOf);
    expect(full.length).toBeGreaterThan(0);
    expect(full.every((l) => l.location.startsWith("A-"))).toBe(true);
    expect(await running.stop("SIGTERM")).toBe(0);
    failed = false;
  }, 180_000);

  it("snapshot and delta --out - --subscription NAME print that subscription's bodies and enqueue nothing", async () => {
    failed = true;
    await writeMap("C");
    const path = await config("https://oms.example/unused", "0 0 1 1 *");
    const before = await t.db.query<{ n: number }>("select count(*)::int as n from stock_sync.messages");
    const snap = await runCli(["--config", path, "snapshot", "--out", "-", "--subscription", "oms"]);
    expect(snap.code, snap.stderr).toBe(0);
    const printed = snap.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Line);
    const truth = await t.db.query<{ n: number }>("select count(*)::int as n from inventory.stock_on_hand");
    expect(printed.length).toBeGreaterThan(0);
    expect(printed.length).toBeLessThanOrEqual(truth.rows[0]!.n);
    expect(printed.every((l) => l.location.startsWith("C-") && Object.keys(l).length === 3)).toBe(true);
    // a change, then the delta as the subscription would get it
    const row = await bump(2);
    const delta = await runCli(["--config", path, "delta", "--out", "-", "--subscription", "oms"]);
    expect(delta.code, delta.stderr).toBe(0);
    const deltaLines = delta.stdout
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Line);
    expect(deltaLines).toContainEqual({
      sku: row.sku,
      location: `C-${row.location}`,
      quantity: row.quantity + 25,
    });
    const after = await t.db.query<{ n: number }>("select count(*)::int as n from stock_sync.messages");
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);
    // a name that is not a subscription: exit 2 naming it, nothing printed
    const wrong = await runCli(["--config", path, "snapshot", "--out", "-", "--subscription", "nope"]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('no subscription "nope"');
    expect(wrong.stdout).toBe("");
    failed = false;
  }, 120_000);
});
