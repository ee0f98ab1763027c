/**
 * kill -9 between staging part N+1 and recording part N (issue 13): N is in place but its record
 * never committed, N+1's bytes are under their temporary name. N+1 must not be visible then (after
 * a restart N is sent again, and an importer would take it after N+1); after the restart every
 * file is complete, in order, once, and no temporary file is left.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { notifyOutbox } from "../../src/outbox/queries.js";
import { createTestDb } from "../helpers/db.js";
import { waitUntil } from "../helpers/engine.js";
import { type EngineProcess, startEngineProcess } from "../helpers/engine-process.js";
import { startFreezeProxy } from "../helpers/freeze-proxy.js";
import { type Sshd, startSshd } from "../helpers/sshd.js";

let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.close();
});

const SIZE = 256 * 1024;
const body = (c: string) => JSON.stringify({ fill: c.repeat(SIZE - 12) });

describe("kill -9 between staging part N+1 and part N's record", () => {
  it.skipIf(!inject("pgTemplate"))(
    "N+1 is not visible at the kill; after the restart both are complete, in order, once, no temp left",
    async () => {
      const testDb = await createTestDb("postgres");
      const proxy = await startFreezeProxy(testDb.url!);
      const drop = await sshd.folder("staging-crash");
      const yaml =
        'subscriptions:\n  - name: drop\n    subjects: ["order.*"]\n    ordering: fifo\n' +
        `    url: "${sshd.url(drop)}"\n    timeout: 10s\n    retry_intervals: [100ms, 100ms, 100ms]\n` +
        `    sftp:\n      host_key: "${sshd.hostKey}"\n      private_key: ${JSON.stringify(sshd.clientKey)}\n`;
      let first: EngineProcess | undefined;
      let second: EngineProcess | undefined;
      try {
        // the first success record hangs (a cut connection): N is in place, its record never commits
        proxy.freezeOn("status = 'delivered'");
        first = await startEngineProcess(proxy.url, yaml);
        const { db } = testDb;
        await db.query(
          `insert into stock_sync.messages (id, subject, payload, content_type) values
             ('msg_a', 'order.created', convert_to($1, 'UTF8'), 'application/json'),
             ('msg_b', 'order.created', convert_to($2, 'UTF8'), 'application/json')`,
          [body("a"), body("b")],
        );
        await db.query(
          "insert into stock_sync.deliveries (message_id, subscription) values ('msg_a', 'drop'), ('msg_b', 'drop')",
        );
        await notifyOutbox(db, ["drop"]);
        const visible = async () => (await readdir(drop)).filter((n) => !n.startsWith(".")).sort();
        // A in place, its record hung, B's bytes whole under B's temporary name: staged (or, were
        // B published behind an unrecorded A, B visible)
        const staged = await waitUntil(
          async () => {
            const names = await visible();
            if (names.length < 1 || proxy.frozen() < 1) return undefined;
            if (names.some((n) => n.includes("msg_b"))) return "B visible";
            for (const n of await readdir(drop)) {
              if (!n.startsWith(".") || !n.includes("msg_b")) continue;
              const s = await stat(join(drop, n)).catch(() => null);
              if (s?.size === Buffer.byteLength(body("b"))) return n;
            }
            return undefined;
          },
          60_000,
          "A in place and B staged",
        );
        first.child.kill("SIGKILL");
        await first.stop();
        expect(staged).toMatch(/^\..*msg_b\.json\.tmp$/);
        const atKill = await visible();
        expect(atKill).toHaveLength(1);
        expect(atKill[0]).toContain("msg_a"); // B was never published behind an unrecorded A
        second = await startEngineProcess(testDb.url!, yaml);
        await waitUntil(
          async () => {
            const { rows } = await db.query<{ n: string }>(
              "select count(*) as n from stock_sync.deliveries where subscription = 'drop' and status = 'delivered'",
            );
            return Number(rows[0]!.n) === 2;
          },
          60_000,
          "both delivered",
        );
        const names = (await readdir(drop)).sort();
        expect(names.filter((n) => n.startsWith("."))).toEqual([]); // B's staging was overwritten and renamed
        expect(names).toHaveLength(2);
        expect(names[0]).toContain("msg_a");
        expect(names[1]).toContain("msg_b");
        expect(await readFile(join(drop, names[0]!), "utf8")).toBe(body("a"));
        expect(await readFile(join(drop, names[1]!), "utf8")).toBe(body("b"));
      } finally {
        await second?.stop();
        await first?.stop("SIGKILL");
        await proxy.close();
        await testDb.drop();
      }
    },
    180_000,
  );
});
