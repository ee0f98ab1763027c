/**
 * After `engine.stop()` resolves, no delivery work of that engine goes on: no upload, rename,
 * temporary file removal or database query (the next owner may already be sending the same
 * message under the same temporary name). Here the engine is stopped while part N+1's staging is
 * in flight, its upload held by a stalled network; once stop resolved the network comes back,
 * and nothing of that engine may reach the server or the database any more.
 */
import { readdir } from "node:fs/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { sftpTrace } from "../../src/sftp/trace.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { type StallProxy, startStallProxy } from "../helpers/freeze-proxy.js";
import { expectedFiles } from "../helpers/sftp-drop.js";
import { gate, spyDb } from "../helpers/spy-db.js";
import { enqueueParts, fifoSftpYaml } from "../helpers/sftp-parts.js";
import { type Sshd, startSshd } from "../helpers/sshd.js";

const TIMEOUT_MS = 3000;

let sshd: Sshd;
let proxy: StallProxy;
beforeAll(async () => {
  sshd = await startSshd();
  proxy = await startStallProxy(sshd.port);
});
afterAll(async () => {
  sftpTrace.start = undefined;
  await proxy?.close();
  await sshd?.close();
});

const yaml = (name: string, dir: string, grace: string) =>
  fifoSftpYaml(sshd, name, dir, {
    via: proxy.port,
    timeout: `${TIMEOUT_MS}ms`,
    delivery: [`shutdown_grace: ${grace}`],
  });

async function attemptCount(db: Db, name: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    `select count(*) as n from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id
     where d.subscription = $1`,
    [name],
  );
  return Number(rows[0]!.n);
}

describeEachDb("sftp:// fifo staging, engine stopped while N+1 is staged", (t) => {
  // grace shorter than the stalled staging (it is aborted), and longer (it ends within the grace)
  for (const [label, grace] of [
    ["grace ends first", "500ms"],
    ["grace outlasts the staging", "10s"],
  ] as const) {
    it(`${label}: once stop resolved, nothing of the engine reaches the server or the database, even after the network is back`, async () => {
      const name = `stage-stop-${grace}-${t().backend}`;
      const dir = await sshd.folder(name);
      let order: string[] = [];
      let stopped = false;
      const late: string[] = [];
      const stalled = gate();
      const db = spyDb(t().db, {
        before: (text) => {
          if (stopped) late.push(`query: ${text.replace(/\s+/g, " ").slice(0, 80)}`);
          return undefined;
        },
      });
      sftpTrace.start = (phase, detail) => {
        if (stopped) late.push(`sftp ${phase} ${detail ?? ""}`);
        // part 2's staging starts: the network stalls before its first byte
        if (phase === "stage" && detail === order[1]) {
          proxy.stall();
          stalled.open();
        }
      };
      const engine = await startEngine(db, testConfig(yaml(name, dir, grace)), { start: false });
      try {
        await enqueueParts(engine, 3);
        order = (await expectedFiles(t().db, name)).map((f) => f.name);
        await engine.engine.start();
        await stalled.promise;
        // stop (and close the sender) while part 2's upload is held in the proxy
        await engine.stop();
        stopped = true;
        const accepted = proxy.accepted();
        const attempts = await attemptCount(t().db, name);
        const listing = (await readdir(dir)).sort();
        // the engine's connections are gone (its sender closed them) ...
        await waitUntil(async () => proxy.open() === 0, 15_000, "the engine's connections closed");
        // ... so the bytes it left in the proxy go nowhere once the network is back
        proxy.resume();
        // The event that would show a staging outliving stop: its next step (a query, a new
        // connection for the removal, an SFTP phase). A staging ends at the latest with its
        // upload's timeout and then its removal's, so that is as long as it can take to show;
        // the wait ends at once when it does (a fixed wait only on the passing side).
        await waitUntil(
          async () => late.length > 0 || proxy.accepted() > accepted || null,
          TIMEOUT_MS * 2,
          "late work",
        ).catch(() => undefined);
        expect(late).toEqual([]);
        expect(proxy.accepted()).toBe(accepted);
        expect(await attemptCount(t().db, name)).toBe(attempts);
        expect((await readdir(dir)).sort()).toEqual(listing);
      } finally {
        sftpTrace.start = undefined;
        proxy.resume();
        await engine.stop();
      }
    }, 60_000);
  }
});
