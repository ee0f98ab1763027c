import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import { installCapture } from "../../src/inventory/capture-catalog.js";
import { runCli } from "../helpers/cli.js";
import { createTestDb } from "../helpers/db.js";
import { testConfig } from "../helpers/engine.js";
import { createShop, shopStockYaml } from "../helpers/shop.js";

// Issue 12.8 / 17.7: `stock-sync source check` on a schema the project has never seen.
(inject("pgTemplate") ? describe : describe.skip)("stock-sync source check", () => {
  let source: Awaited<ReturnType<typeof createTestDb>>;
  let dir: string;
  const check = async (stockYaml: string) => {
    const file = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(
      file,
      `source:\n  url: "${source.url}"\ndatabase:\n  data_dir: "${dir}/data"\n${stockYaml}`,
    );
    return runCli(["--config", file, "source", "check"]);
  };

  beforeAll(async () => {
    source = await createTestDb("postgres");
    dir = await mkdtemp(join(tmpdir(), "stock-sync-source-check-"));
    await createShop(source.db);
    await installCapture(source.db, testConfig(shopStockYaml()).stock.capture);
  });
  afterAll(async () => {
    await source?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("a sound configuration: every check ok, exit 0", async () => {
    const r = await check(shopStockYaml());
    expect(r.stderr).toBe("");
    expect(r.stdout).not.toMatch(/^problem:/m);
    expect(r.stdout).toMatch(/^ok: stock\.queries\.sellable runs: 200 rows sampled/m);
    expect(r.stdout).toMatch(/^ok: stock\.queries\.sellable_keys agrees with sellable on 200 sampled keys/m);
    expect(r.stdout).toMatch(
      /^ok: change capture watches every table the queries read \(shop\.holds, shop\.stock_levels\)/m,
    );
    expect(r.stdout).toMatch(/source check: no problems found\n$/);
    expect(r.code).toBe(0);
  });

  it("says in plain words what is wrong: duplicate keys, disagreeing keys query, unwatched table, unknown column", async () => {
    // Holds joined row by row (no sum): a key with two holds appears twice. The keys query
    // forgets the holds. Capture watches only the stock levels.
    await source.db.query("insert into shop.holds values ('SKU-001', 'ST-1', 1, now() + interval '2 days')");
    const dup = `select l.sku, l.store as location, l.qty - coalesce(h.qty, 0) as quantity
      from shop.stock_levels l left join shop.holds h using (sku, store)`;
    const keys = `select sku, store as location, qty as quantity from shop.stock_levels
      where (sku, store) in (select * from unnest($2::text[], $3::text[]))`;
    const yaml = `stock:
  queries:
    sellable: "${dup.replace(/\s+/g, " ")}"
    sellable_keys: "${keys.replace(/\s+/g, " ")}"
    time_candidates: none
  capture:
    tables:
      - { table: shop.stock_levels, sku: sku, location: store }
`;
    const r = await check(yaml);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("stock-sync: source check: 3 problems found\n");
    expect(r.stdout).toMatch(
      /^problem: stock\.queries\.sellable returns some keys more than once, e\.g\. SKU-001 at ST-1 \(2 rows\): group by sku and location/m,
    );
    expect(r.stdout).toMatch(
      /^problem: stock\.queries\.sellable_keys and sellable disagree on 1 of \d+ keys \(e\.g\. SKU-001 at ST-1: /m,
    );
    expect(r.stdout).toMatch(
      /^problem: change capture does not watch shop\.holds, read by stock\.queries\.sellable: a write there would never reach a delta/m,
    );

    const unknown = await check(
      shopStockYaml().replace(
        "columns: [sku, location, quantity]",
        "columns: [sku, location, quantity, warehouse]",
      ),
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toMatch(
      /^problem: stock\.format\.columns lists "warehouse", but stock\.queries\.sellable has no column "warehouse" \(its columns: sku, location, quantity\)/m,
    );
  });
});

// Issue 12.8: overriding only `sellable` passed `config check`, then the delta failed on inventory.*.
describe("stock-sync config check", () => {
  it("refuses a partial override of stock.queries (exit 2, naming the missing ones)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "stock-sync-config-check-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, "partial.yaml");
    await writeFile(
      file,
      'stock:\n  queries:\n    sellable: "select sku, store as location, qty as quantity from shop.stock_levels"\n',
    );
    const r = await runCli(["--config", file, "config", "check"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/stock\.queries\.sellable_keys: set all three stock\.queries/);
    expect(r.stderr).toMatch(/stock\.queries\.time_candidates: set all three stock\.queries/);
  });
});
