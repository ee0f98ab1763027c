/**
 * A part's data is on the server's disk before its name appears (issue 13): fsync@openssh.com of
 * its temporary file has answered before the rename is sent, for a whole upload (the first part)
 * and for a staged part (fifo), whose rename is its own later attempt. An importer would otherwise
 * get a short or empty stock file after the server lost power (see writeTemp in
 * src/sftp/upload.ts). What goes over the wire is read from the destination's trace.
 */
import { posix } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { sftpTrace } from "../../src/sftp/trace.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { dropContents, expectedFiles } from "../helpers/sftp-drop.js";
import { enqueueParts, fifoSftpYaml } from "../helpers/sftp-parts.js";
import { type Sshd, startSshd } from "../helpers/sshd.js";

let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  sftpTrace.on = undefined;
  await sshd?.close();
});

type Phase = { phase: string; start: number; end: number; detail?: string };

/** Enqueues `n` parts, starts the engine, and waits until every part is in `dir`. */
async function deliverParts(engine: TestEngine, db: Db, name: string, dir: string, n: number) {
  await enqueueParts(engine, n, 20_000);
  const files = await expectedFiles(db, name);
  await engine.engine.start();
  await waitUntil(async () => (await dropContents(dir)).size === files.length, 30_000, "all parts");
  return files;
}

describeEachDb("sftp:// durability before publication", (t) => {
  it("every part's temporary file is fsynced, and the fsync answered, before the rename that publishes it", async () => {
    const { db } = t();
    const name = `fsync-${t().backend}`;
    const dir = await sshd.folder(name);
    const phases: Phase[] = [];
    sftpTrace.on = (phase, start, end, detail) => phases.push({ phase, start, end, detail });
    const engine = await startEngine(db, testConfig(fifoSftpYaml(sshd, name, dir, { timeout: "10s" })), {
      start: false,
    });
    try {
      const files = await deliverParts(engine, db, name, dir, 4);
      // staging ran: some parts were published from their temporary file, not uploaded whole
      expect(phases.filter((p) => p.phase === "stage").length).toBeGreaterThan(0);
      for (const f of files) {
        const final = posix.join(dir, f.name);
        const temp = posix.join(dir, `.${f.name}.tmp`);
        const rename = phases.filter((p) => p.phase === "rename" && p.detail === final).at(-1);
        expect(rename, `${f.name} renamed`).toBeDefined();
        const synced = phases.filter(
          (p) => p.phase === "fsync" && p.detail === temp && p.end <= rename!.start,
        );
        expect(synced.length, `${f.name}: an fsync of ${temp} answered before its rename`).toBeGreaterThan(0);
      }
    } finally {
      sftpTrace.on = undefined;
      await engine.stop();
    }
  });
});
