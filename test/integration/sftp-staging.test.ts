/**
 * fifo stages the part behind the one it sends (issue 13: uploaded under its temporary name while
 * the part before it is renamed and recorded) and makes it visible only as its own attempt, once
 * every part before it is recorded delivered. What an importer polling the folder sees must stay
 * what one-part-at-a-time delivery gives: complete files, in order, once.
 */
import { mkdir, readdir, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { setSubscriptionStatus } from "../../src/outbox/admin.js";
import { sftpTrace } from "../../src/sftp/trace.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { dropContents, expectedFiles } from "../helpers/sftp-drop.js";
import { gate, spyDb } from "../helpers/spy-db.js";
import { enqueueParts, fifoSftpYaml } from "../helpers/sftp-parts.js";
import { type Sshd, startSshd } from "../helpers/sshd.js";

let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  sftpTrace.on = undefined;
  sftpTrace.start = undefined;
  await sshd?.close();
});

const yaml = (name: string, dir: string) => fifoSftpYaml(sshd, name, dir, { timeout: "10s", retries: 30 });

/** `n` stock parts of ~200 KB, each with its own bytes. */

/**
 * An importer polling `dir`: regular files only, dotfiles (temporary names) skipped. Each poll's
 * names, and the temporary names seen.
 */
function poll(dir: string) {
  const polls: string[][] = [];
  const temps = new Set<string>();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const names = (await readdir(dir).catch(() => [] as string[])).sort();
      const files: string[] = [];
      for (const n of names) {
        if (n.startsWith(".")) temps.add(n);
        else if ((await stat(join(dir, n)).catch(() => null))?.isFile()) files.push(n);
      }
      polls.push(files);
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return {
    polls,
    temps,
    /** Polls whose files are not the first ones of `order`. */
    outOfOrder: (order: string[]) => polls.filter((p) => p.some((n, i) => order[i] !== n)),
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** Attempts per delivery (in delivery order): their outcomes. */
async function attempts(db: Db, name: string): Promise<string[][]> {
  const { rows } = await db.query<{ id: string; outcomes: string[] }>(
    `select d.id, array_agg(coalesce(a.error_class, 'ok') order by a.id) as outcomes
     from stock_sync.deliveries d join stock_sync.attempts a on a.delivery_id = d.id
     where d.subscription = $1 group by d.id order by d.id`,
    [name],
  );
  return rows.map((r) => r.outcomes);
}

describeEachDb("sftp:// fifo staging", (t) => {
  it("part N fails at its rename: N+1 never appears before N, nothing of it waits on the server, then all arrive once, in order", async () => {
    const { db } = t();
    const name = `stage-fail-${t().backend}`;
    const dir = await sshd.folder(name);
    const engine = await startEngine(db, testConfig(yaml(name, dir)), { start: false });
    const watch = poll(dir);
    try {
      await enqueueParts(engine, 4);
      const files = await expectedFiles(db, name);
      const order = files.map((f) => f.name);
      // part 2's final name is taken by a folder: its rename fails (the bytes went up fine)
      await mkdir(join(dir, order[1]!));
      await engine.engine.start();
      await waitUntil(
        async () => ((await attempts(db, name))[1]?.length ?? 0) >= 3,
        30_000,
        "part 2 failing",
      );
      // while part 2 fails, part 3 is neither visible nor left staged on the server
      const now = (await readdir(dir)).sort();
      expect(now.filter((n) => n.includes(order[2]!))).toEqual([]);
      await rmdir(join(dir, order[1]!));
      await waitUntil(
        async () => {
          const all = await attempts(db, name);
          return all.length === 4 && all.every((o) => o.includes("ok"));
        },
        30_000,
        "four parts delivered",
      );
      const got = await dropContents(dir);
      expect([...got.keys()].sort()).toEqual(order);
      for (const f of files) expect(got.get(f.name)!.equals(f.body)).toBe(true);
      await watch.stop();
      expect(watch.outOfOrder(order)).toEqual([]);
      // once: one delivered attempt each, the failures all on part 2
      const outcomes = await attempts(db, name);
      expect(outcomes.map((o) => o.filter((c) => c === "ok").length)).toEqual([1, 1, 1, 1]);
      expect(outcomes[0]).toEqual(["ok"]);
      expect(outcomes[2]).toEqual(["ok"]);
      expect(outcomes[3]).toEqual(["ok"]);
      expect((await readdir(dir)).filter((n) => n.startsWith("."))).toEqual([]);
    } finally {
      await watch.stop();
      await engine.stop();
    }
  });

  it("a part becomes visible only after every part before it is recorded delivered, even when records are slow", async () => {
    const name = `stage-order-${t().backend}`;
    const dir = await sshd.folder(name);
    const parts = 5;
    // deliveries by id, and which parts' staging has ended (by file name)
    let order: string[] = [];
    let ids: number[] = [];
    const stagedEnded = new Set<string>();
    const stageWaiters: (() => void)[] = [];
    const recorded = new Set<number>();
    const violations: string[] = [];
    const renamed: string[] = [];
    // every success record is held until the part behind it is staged (or there is none): a slow
    // state database, so that a part published before the record before it would show
    const db = spyDb(t().db, {
      before: async (text, values) => {
        if (!text.includes("status = 'delivered'") || !values) return;
        const id = Number((values[0] as (string | number)[])[0]);
        const next = order[ids.indexOf(id) + 1];
        if (!next) return;
        while (!stagedEnded.has(next)) {
          const g = gate();
          stageWaiters.push(g.open);
          await g.promise;
        }
      },
    });
    sftpTrace.on = (phase, _s, _e, detail) => {
      if (phase !== "stage" || !detail) return;
      stagedEnded.add(detail);
      for (const w of stageWaiters.splice(0)) w();
    };
    sftpTrace.start = (phase, detail) => {
      if (phase !== "rename" || !detail) return;
      const i = order.findIndex((n) => detail.endsWith(`/${n}`));
      renamed.push(order[i]!);
      for (let k = 0; k < i; k++)
        if (!recorded.has(ids[k]!)) violations.push(`${order[i]} before ${order[k]} was recorded`);
    };
    const engine = await startEngine(db, testConfig(yaml(name, dir)), {
      start: false,
      onAttempt: (_s, row, outcome) => {
        if (outcome === "delivered") recorded.add(row.id);
      },
    });
    const watch = poll(dir);
    try {
      await enqueueParts(engine, parts);
      const files = await expectedFiles(db, name);
      order = files.map((f) => f.name);
      ids = (
        await db.query<{ id: string }>(
          "select id from stock_sync.deliveries where subscription = $1 order by id",
          [name],
        )
      ).rows.map((r) => Number(r.id));
      await engine.engine.start();
      await waitUntil(async () => recorded.size === parts, 60_000, "every part recorded");
      await watch.stop();
      expect(violations).toEqual([]);
      expect(renamed).toEqual(order); // each published once, in order
      // parts 2..n went up staged (their staging ended before their record's predecessor let go)
      expect(order.slice(1).every((n) => stagedEnded.has(n))).toBe(true);
      expect(watch.outOfOrder(order)).toEqual([]);
      const got = await dropContents(dir);
      for (const f of files) expect(got.get(f.name)!.equals(f.body)).toBe(true);
      expect((await readdir(dir)).filter((n) => n.startsWith("."))).toEqual([]);
    } finally {
      sftpTrace.on = undefined;
      sftpTrace.start = undefined;
      await watch.stop();
      await engine.stop();
    }
  });

  it("a pause while part N+1 is staged: its temporary file is removed, nothing of it appears, and after the resume all arrive in order", async () => {
    const name = `stage-pause-${t().backend}`;
    const dir = await sshd.folder(name);
    let order: string[] = [];
    let firstId = 0;
    const stagedEnded = new Set<string>();
    const stageWaiters: (() => void)[] = [];
    // part 1's record is held until part 2 is staged; the subscription is paused meanwhile
    const db = spyDb(t().db, {
      before: async (text, values) => {
        if (!text.includes("status = 'delivered'") || !values) return;
        if (Number((values[0] as (string | number)[])[0]) !== firstId) return;
        while (!stagedEnded.has(order[1]!)) {
          const g = gate();
          stageWaiters.push(g.open);
          await g.promise;
        }
        await setSubscriptionStatus(t().db, name, "paused", new Date(), "test");
      },
    });
    sftpTrace.on = (phase, _s, _e, detail) => {
      if (phase !== "stage" || !detail) return;
      stagedEnded.add(detail);
      for (const w of stageWaiters.splice(0)) w();
    };
    const engine = await startEngine(db, testConfig(yaml(name, dir)), { start: false });
    try {
      await enqueueParts(engine, 3);
      order = (await expectedFiles(db, name)).map((f) => f.name);
      const { rows } = await db.query<{ id: string }>(
        "select min(id) as id from stock_sync.deliveries where subscription = $1",
        [name],
      );
      firstId = Number(rows[0]!.id);
      await engine.engine.start();
      // part 2 was staged (its temporary file whole), then the pause: the staging is abandoned
      const temp = `.${order[1]}.tmp`;
      await waitUntil(async () => stagedEnded.has(order[1]!), 30_000, "part 2 staged");
      await waitUntil(
        async () => !(await readdir(dir)).includes(temp),
        30_000,
        "part 2's temporary file removed",
      );
      expect((await readdir(dir)).filter((n) => !n.startsWith("."))).toEqual([order[0]]);
      expect((await attempts(t().db, name)).length).toBe(1); // no attempt of part 2 while paused
      await setSubscriptionStatus(t().db, name, "enabled", new Date(), "test");
      await waitUntil(
        async () => {
          const all = await attempts(t().db, name);
          return all.length === 3 && all.every((o) => o.includes("ok"));
        },
        30_000,
        "three parts delivered",
      );
      expect([...(await dropContents(dir)).keys()].sort()).toEqual(order);
      expect((await readdir(dir)).filter((n) => n.startsWith("."))).toEqual([]);
    } finally {
      sftpTrace.on = undefined;
      await engine.stop();
    }
  });
});
