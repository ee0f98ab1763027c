import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/index.js";
import { mapRow, type MapTally, parseCodeMap } from "../../src/formats/maps.js";
import { loadFormats } from "../../src/formats/registry.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { configError } from "../helpers/engine.js";
import { testDir } from "../helpers/cleanup.js";

const PLAIN = `  - name: plain\n    subjects: [stock.full]\n    url: "file:///tmp/x"\n`;
const yaml = (sub: string) => `subscriptions:\n${PLAIN}${PLAIN.replace("plain", "other")}${sub}`;
describe("body: and map: config", () => {
  it("without a body block a subscription is as before", () => {
    const { config } = loadConfig(yaml(""), {});
    expect(config.subscriptions[0]).not.toHaveProperty("body");
  });

  it("columns as plain fields or output name -> field; defaults filled in", () => {
    const y = yaml(
      `  - name: x\n    subjects: [stock.full]\n    url: "https://h/"\n    body: { columns: [sku, {store: location}, {qty: quantity}] }\n`,
    );
    expect(loadConfig(y, {}).config.subscriptions[2]!.body).toEqual({
      format: "csv",
      columns: ["sku", { store: "location" }, { qty: "quantity" }],
      header: true,
      delimiter: ",",
      template: null,
      rows_per_message: null,
      max_bytes: null,
      multipart: null,
    });
  });

  it.each([
    [
      "body: { format: json, template: 'rows.{\"q\": quantiy}' }",
      'subscriptions[2].body.template: unknown field "quantiy"',
    ],
    [
      "body: { format: json, template: 'rows.{' }",
      "subscriptions[2].body.template: JSONata syntax error at character 6",
    ],
    [
      "body: { columns: [sku, {store: locaton}] }",
      'subscriptions[2].body.columns[1]: unknown field "locaton" for "store"',
    ],
    ["body: { rows_per_message: 0 }", "subscriptions[2].body.rows_per_message: expected at least 1"],
    [
      "body: { rows_per_message: 1000001 }",
      "subscriptions[2].body.rows_per_message: expected at most 1000000",
    ],
    ["body: { max_bytes: lots }", 'subscriptions[2].body.max_bytes: expected a size like "1mb"'],
    ["body: { format: xml }", "subscriptions[2].body.format: expected one of"],
    ["body: { delimiter: ';;' }", "subscriptions[2].body.delimiter: expected one character"],
    [
      "body: { format: ndjson, columns: [sequence] }",
      'subscriptions[2].body.columns[0]: "sequence" is known only',
    ],
    ["body: { formt: csv }", "subscriptions[2].body.formt: unknown key"],
    [
      "map: { location: { file: x.csv, missing: drop } }",
      "subscriptions[2].map.location.missing: expected one of",
    ],
  ])("%s -> %s", (block, message) => {
    expect(
      configError(yaml(`  - name: x\n    subjects: [stock.full]\n    url: "https://h/"\n    ${block}\n`)),
    ).toContain(message);
  });

  it("placeholders: known fields only, row fields only with rows_per_message: 1, stock only", () => {
    const sub = (url: string, extra = "") =>
      yaml(
        `  - name: x\n    subjects: [stock.full]\n    url: "${url}"\n    headers: { x-part: "{{part}}" }\n${extra}`,
      );
    expect(configError(sub("https://h/{{sku}}"))).toContain("subscriptions[2].url: {{sku}}: unknown field");
    expect(configError(sub("https://h/{{skew}}", "    body: { rows_per_message: 1 }\n"))).toContain(
      "{{skew}}: unknown field",
    );
    expect(configError(sub("https://h/{{sku}}/{{location}}", "    body: { rows_per_message: 1 }\n"))).toBe(
      "no error",
    );
    const orders = yaml(`  - name: x\n    subjects: ["order.*"]\n    url: "https://h/{{kind}}"\n`);
    expect(configError(orders)).toContain(
      "subscriptions[2].url: {{kind}}: placeholders are for stock subscriptions",
    );
  });

  it("order events: a template over the event (its fields are not known in advance)", () => {
    const y = yaml(
      `  - name: x\n    subjects: ["order.*"]\n    url: "https://h/"\n    body: { format: json, template: '{"order": data.order_id}' }\n`,
    );
    expect(configError(y)).toBe("no error");
    const mixed = yaml(
      `  - name: x\n    subjects: ["*"]\n    url: "https://h/"\n    body: { format: ndjson }\n`,
    );
    expect(configError(mixed)).toContain("subscriptions[2].body: a body applies to stock or to order events");
  });

  it("an unreadable or malformed map file is a config error naming the path", async () => {
    const dir = await testDir("stock-sync-maps-");
    const y = (file: string) =>
      yaml(
        `  - name: x\n    subjects: [stock.full]\n    url: "https://h/"\n    map: { location: { file: ${file} } }\n`,
      );
    const load = (file: string) =>
      loadFormats(buildSubscriptions(loadConfig(y(file), {}).config), { partRows: 10, cwd: dir });
    await expect(load("missing.csv")).rejects.toThrow(
      /^subscriptions\[2\]\.map\.location\.file: cannot read .*missing\.csv: ENOENT/,
    );
    await writeFile(join(dir, "dup.csv"), "L1,A\nL1,B\n");
    await expect(load("dup.csv")).rejects.toThrow(
      'subscriptions[2].map.location.file: dup.csv record 2: "L1" is mapped twice',
    );
    await writeFile(join(dir, "ok.csv"), "ours,theirs\nL1,store-1\n");
    expect((await load("ok.csv")).stock("x")!.maps.location!.codes.get("L1")).toBe("store-1");
  });
});

describe("code mapping", () => {
  const maps = (missing: "skip" | "keep" | "fail") => ({
    location: { file: "l.csv", missing, codes: parseCodeMap("L1,store-1\n", "l.csv") },
  });
  const row = (location: string) => ({ sku: "S", location, quantity: 1 });

  it("maps, and skip / keep / fail a code without a mapping", () => {
    const tally: MapTally = { skipped: 0, unmapped: [] };
    expect(mapRow(row("L1"), maps("skip"), tally)).toEqual(row("store-1"));
    expect(mapRow(row("L2"), maps("skip"), tally)).toBeNull();
    expect(tally.skipped).toBe(1);
    expect(mapRow(row("L2"), maps("keep"), tally)).toEqual(row("L2"));
    expect(mapRow(row("L2"), maps("fail"), tally)).toBeNull();
    expect(mapRow(row("L2"), maps("fail"), tally)).toBeNull();
    expect(tally.unmapped).toEqual([{ field: "location", code: "L2" }]);
  });
});
