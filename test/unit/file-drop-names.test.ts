/**
 * Issue 18 §2: a file:// destination writes inside its drop folder and nowhere else, whatever the
 * stored subject, message id or stock headers say, and never with a name too long to create.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { DeliveryRow } from "../../src/outbox/queries.js";
import { fileName } from "../../src/outbox/request.js";
import { createSender, dropTarget } from "../../src/outbox/send.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

const row = (over: Partial<DeliveryRow>): DeliveryRow =>
  ({
    id: 7,
    message_id: "evt_1",
    subject: "order.created",
    sequence: null,
    content_type: "application/json",
    headers: {},
    ...over,
  }) as DeliveryRow;

const hostile: Partial<DeliveryRow>[] = [
  { subject: "order.x/../../../../tmp/escape", message_id: "/../daemon" },
  { subject: "order.created", message_id: "../../etc/cron.d/x" },
  { subject: "..", message_id: ".." },
  { subject: `order.${"t".repeat(100)}`, message_id: "i".repeat(200) },
  { sequence: 1, headers: { "stock-sync-kind": "../../x", "stock-sync-part": "../1/../2" } },
  { sequence: 2, headers: { "stock-sync-kind": "full", "stock-sync-part": "1/../../../x" } },
];

describe("file:// names", () => {
  it.each(hostile)("stay plain names inside the folder: %j", (over) => {
    const name = fileName(row(over));
    expect(name).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]*$/);
    expect(name).not.toContain("..");
    expect(Buffer.byteLength(name)).toBeLessThanOrEqual(200);
    expect(dirname(resolve("/drop", name))).toBe("/drop");
  });

  it("keeps the readable names of ordinary messages", () => {
    expect(fileName(row({}))).toBe("000000000007-order.created-evt_1.json");
    const part = { "stock-sync-kind": "full", "stock-sync-part": "2/3" };
    expect(fileName(row({ sequence: 42, content_type: "text/csv", headers: part }))).toBe(
      "000042-full-part-0002-of-0003.csv",
    );
  });

  it("the sender refuses a name that would leave the folder, and writes nothing", async () => {
    const root = await mkdtemp(join(tmpdir(), "stock-sync-drop-"));
    dirs.push(root);
    const folder = join(root, "a", "drop");
    const sender = createSender({ smtp: { url: "", from: "x@y" }, cwd: root });
    try {
      for (const name of ["../escaped.json", "../../escaped.json", ".hidden", "x".repeat(300)]) {
        const out = await sender.send({
          url: `file://${folder}`,
          method: "POST",
          headers: {},
          body: Buffer.from("{}"),
          timeoutMs: 1000,
          fileName: name,
        });
        expect(out.result, name).toMatchObject({ kind: "error", errorClass: "file" });
      }
      const ok = await sender.send({
        url: `file://${folder}`,
        method: "POST",
        headers: {},
        body: Buffer.from("{}"),
        timeoutMs: 1000,
        fileName: fileName(row({ subject: `order.${"t".repeat(100)}`, message_id: "i".repeat(200) })),
      });
      expect(ok.result).toMatchObject({ kind: "response", status: 200 });
    } finally {
      await sender.close();
    }
    expect(await readdir(join(root, "a"))).toEqual(["drop"]);
    expect(await readdir(root)).toEqual(["a"]);
    expect(() => dropTarget("/drop", "../x")).toThrow(/unsafe file name/);
  });
});
