import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FIXTURES_DIR } from "../../src/app.js";
import { installCapture } from "../../src/inventory/capture-catalog.js";
import { seedDemoSource } from "../../src/inventory/seed.js";
import { runCli } from "../helpers/cli.js";
import { createTestDb } from "../helpers/db.js";
import { testConfig } from "../helpers/engine.js";

// Issues 17.2 and 12.6 through the command line, as an operator meets them.
(inject("pgTemplate") ? describe : describe.skip)("stock guard and stale replay, black box", () => {
  let t: Awaited<ReturnType<typeof createTestDb>>;
  let dir: string;
  let file: string;
  const cli = (...args: string[]) => runCli(["--config", file, ...args]);
  const q = (sql: string) => t.db.query(sql);
  const deliverAll = () => q("update stock_sync.deliveries set status = 'delivered', delivered_at = now()");

  beforeAll(async () => {
    t = await createTestDb("postgres");
    dir = await mkdtemp(join(tmpdir(), "stock-sync-guard-cli-"));
    const yaml = `database:\n  url: "${t.url}"\n  data_dir: "${dir}/data"\nsource:\n  url: "${t.url}"\nsubscriptions:\n  - name: oms\n    subjects: [stock.full, stock.delta]\n    url: "file://${dir}/out"\n`;
    file = join(dir, "c.yaml");
    await writeFile(file, yaml);
    await seedDemoSource(t.db, { fixturesDir: FIXTURES_DIR });
    await installCapture(t.db, testConfig(yaml).stock.capture);
  });
  afterAll(async () => {
    await t?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it("delta: refused (exit 1) while it would zero many keys; --force sends it", async () => {
    expect((await cli("snapshot")).code).toBe(0);
    await deliverAll();
    await q("delete from inventory.stock_on_hand where (hashtext(sku || location) & 1023) < 400");
    const refused = await cli("delta");
    expect(refused.stderr).toMatch(
      /^stock-sync: delta refused: it would zero \d+ keys, .* \(use --force to send it anyway\)\n$/m,
    );
    expect(refused.stdout).toMatch(/REFUSED by the shrink guard/);
    expect(refused.code).toBe(1);
    const forced = await cli("delta", "--force");
    expect(forced.stdout).toMatch(/^delta: \d+ rows, 1 part\(s\), .*enqueued for delivery/);
    expect(forced.code).toBe(0);
  });

  it("replay: stock older than delivered stock is refused (exit 1) unless --force", async () => {
    const { rows } = await t.db.query<{ id: number }>(
      "select max(id)::int as id from stock_sync.deliveries where subscription = 'oms'",
    );
    const old = rows[0]!.id;
    await q(`update stock_sync.deliveries set status = 'dead' where id = ${old}`);
    await q("update inventory.stock_on_hand set quantity = quantity + 1 where quantity > 40");
    expect((await cli("delta")).code).toBe(0);
    await q(`update stock_sync.deliveries set status = 'delivered' where id > ${old}`);
    const refused = await cli("replay", String(old));
    expect(refused.stderr).toMatch(
      new RegExp(
        `^stock-sync: delivery ${old} is stock sequence \\d+ of oms, older than stock sequence \\d+ already delivered: .*--force`,
      ),
    );
    expect(refused.code).toBe(1);
    const forced = await cli("replay", "--force", String(old));
    expect(forced.stdout).toBe(`replayed 1 delivery: ${old}\n`);
    expect(forced.code).toBe(0);
  });
});
