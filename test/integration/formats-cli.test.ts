import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { runCli } from "../helpers/cli.js";

// Issue 14: a body or map that cannot work is a config error (exit 2, naming the path) for
// `config check`, and `start` refuses to start; the printed config loads again.
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "stock-sync-formats-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const config = async (name: string, sub: string) => {
  const file = join(dir, `${name}.yaml`);
  await writeFile(
    file,
    `database: { data_dir: ${join(dir, "data")} }\nsubscriptions:\n  - name: a\n    subjects: [stock.full]\n    url: "file://${dir}/a"\n  - name: b\n    subjects: ["order.*"]\n    url: "file://${dir}/b"\n  - name: oms\n    subjects: [stock.full, stock.delta]\n    url: "https://oms.example/{{kind}}"\n${sub}`,
  );
  return file;
};

describe("stock-sync config check and start with body: and map:", () => {
  it("a JSONata syntax error, an unknown field, an unreadable map file: exit 2 naming the path; start refuses", async () => {
    const cases = [
      [
        "syntax",
        "    body: { format: json, template: 'rows.{' }\n",
        "subscriptions[2].body.template: JSONata syntax error",
      ],
      [
        "field",
        "    body: { format: ndjson, columns: [sku, {qty: quantiy}] }\n",
        'subscriptions[2].body.columns[1]: unknown field "quantiy"',
      ],
      [
        "map",
        `    map: { location: { file: ${dir}/nope.csv, missing: skip } }\n`,
        "subscriptions[2].map.location.file: cannot read",
      ],
    ] as const;
    const files = await Promise.all(cases.map(([name, block]) => config(name, block)));
    const checks = await Promise.all(files.map((file) => runCli(["--config", file, "config", "check"])));
    checks.forEach((check, i) => {
      expect(check.code, check.stderr).toBe(2);
      expect(check.stderr).toContain(cases[i]![2]);
    });
    // start reads the map files before it opens anything
    const start = await runCli(["--config", files[2]!, "start"]);
    expect(start.code, start.stderr).toBe(2);
    expect(start.stderr).toContain(cases[2][2]);
  }, 60_000);

  it("a valid body and map: the printed config is itself a valid config", async () => {
    await writeFile(join(dir, "loc.csv"), "ours,theirs\nL1,S1\n");
    const file = await config(
      "ok",
      `    body: { format: csv, columns: [sku, {store: location}], delimiter: ";", rows_per_message: 100, max_bytes: 1mb }\n    map: { location: { file: ${dir}/loc.csv, missing: keep } }\n`,
    );
    const check = await runCli(["--config", file, "config", "check"]);
    expect(check.code, check.stderr).toBe(0);
    const printed = join(dir, "printed.yaml");
    await writeFile(printed, check.stdout);
    const again = await runCli(["--config", printed, "config", "check"]);
    expect(again.code, again.stderr).toBe(0);
    const oms = (out: string) => parse(out).subscriptions[2];
    expect(oms(again.stdout)).toEqual(oms(check.stdout));
    expect(oms(check.stdout).body.columns).toEqual(["sku", { store: "location" }]);
  }, 60_000);
});
