import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadConfig } from "../../src/config/index.js";
import { enqueue } from "../../src/outbox/enqueue.js";
import { type Running, startConnector } from "../../src/main.js";
import { createTestDb, type TestDb } from "../helpers/db.js";
import { quietLog, waitUntil } from "../helpers/engine.js";
import { startReceiver, type Receiver } from "../helpers/receiver.js";
import { postgresRequired } from "../helpers/pg-admin.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = new URL("../artifacts/", import.meta.url).pathname;
const TOKEN = "status-page-test-token";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && postgresRequired)
  throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium`);
const reason = !haveChromium
  ? ` (SKIPPED: no chromium at ${CHROMIUM})`
  : !inject("pgTemplate")
    ? " (SKIPPED: no PostgreSQL)"
    : "";

describe.skipIf(reason !== "")(`status page in headless Chromium${reason}`, () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  let running: Running;
  let browser: Browser;
  let ok: Receiver;
  let bad: Receiver;
  let dir: string;
  /** crm-orders' receiver fails until the replay test repairs it. */
  let badUp = false;

  beforeAll(async () => {
    t = await createTestDb("postgres");
    dir = await mkdtemp(join(tmpdir(), "stock-sync-status-"));
    ok = await startReceiver(() => ({ status: 204 }));
    bad = await startReceiver(() => ({ status: badUp ? 204 : 500 }));
    const { config } = loadConfig(
      `database: { url: "${t.url}", data_dir: ${dir}/data }\nsource: { demo: true }\nserver: { port: 0, admin_token: ${TOKEN} }\n` +
        `stock: { delta: { schedule: "*/5 * * * *" } }\n` +
        `subscriptions:\n  - name: oms-stock\n    subjects: [stock.full, stock.delta]\n    url: "file://${dir}/out"\n` +
        `  - name: erp-orders\n    subjects: ["order.*"]\n    url: "${ok.url}"\n` +
        `  - name: crm-orders\n    subjects: ["order.*"]\n    url: "${bad.url}"\n    retry_intervals: [0.02]\n`,
      {},
    );
    running = await startConnector(config, quietLog);
    for (let i = 0; i < 5; i++) {
      await t.db.tx((tx) =>
        enqueue(tx, running.app.subscriptions, {
          subject: "order.created",
          payload: `{"n":${i}}`,
          contentType: "application/json",
        }),
      );
    }
    // crm-orders fails every attempt: its first message dies and the subscription is deactivated.
    await waitUntil(async () => {
      const { rows } = await t.db.query<{ n: number }>(
        "select count(*)::int as n from stock_sync.deliveries where status = 'dead'",
      );
      return rows[0]!.n >= 1;
    });
    await waitUntil(async () => ok.requests.length >= 5);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
      ],
    });
    await mkdir(ARTIFACTS, { recursive: true });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await running?.stop();
    await ok?.close();
    await bad?.close();
    await t?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  type Status = {
    subscriptions: {
      name: string;
      status: string;
      backlog: number;
      delivered_last_hour: number;
      failed_last_hour: number;
    }[];
  };
  const apiStatus = async () => (await (await fetch(`${running.url}/api/status`)).json()) as Status;

  it("shows the same subscriptions and numbers as /api/status, and works on a phone", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${running.url}/status`);
    const api = await apiStatus();
    for (const s of api.subscriptions) {
      const row = page.locator(`tr[data-subscription="${s.name}"]`);
      await expect(row.locator('[data-field="status"]').textContent()).resolves.toBe(s.status);
      await expect(row.locator('[data-field="backlog"]').textContent()).resolves.toBe(String(s.backlog));
      await expect(row.locator('[data-field="delivered_last_hour"]').textContent()).resolves.toBe(
        String(s.delivered_last_hour),
      );
      await expect(row.locator('[data-field="failed_last_hour"]').textContent()).resolves.toBe(
        String(s.failed_last_hour),
      );
    }
    expect(api.subscriptions.find((s) => s.name === "crm-orders")?.status).toBe("deactivated");
    await expect(page.locator("svg rect.ok").count()).resolves.toBeGreaterThan(0);
    await page.screenshot({ path: join(ARTIFACTS, "status-page.png"), fullPage: true });
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
    await phone.goto(`${running.url}/status`);
    const overflow = await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth");
    expect(overflow as number).toBeLessThanOrEqual(1); // no sideways scrolling
    await phone.screenshot({ path: join(ARTIFACTS, "status-page-phone.png"), fullPage: true });
  });

  it("pauses and resumes a subscription with the buttons (token asked once)", async () => {
    const page = await browser.newPage();
    let prompts = 0;
    page.on("dialog", (d) => {
      prompts++;
      void d.accept(TOKEN);
    });
    await page.goto(`${running.url}/status`);
    await page.locator('tr[data-subscription="erp-orders"] button', { hasText: "Pause" }).click();
    await waitUntil(
      async () => (await apiStatus()).subscriptions.find((s) => s.name === "erp-orders")?.status === "paused",
    );
    await page.waitForSelector('tr[data-subscription="erp-orders"] button:has-text("Resume")');
    await page.locator('tr[data-subscription="erp-orders"] button', { hasText: "Resume" }).click();
    await waitUntil(
      async () =>
        (await apiStatus()).subscriptions.find((s) => s.name === "erp-orders")?.status === "enabled",
    );
    expect(prompts).toBe(1);
  });

  it("replays a dead message from its button", async () => {
    const page = await browser.newPage();
    page.on("dialog", (d) => void d.accept(TOKEN));
    await page.goto(`${running.url}/status`);
    const dead = page.locator("tr[data-delivery]").first();
    const id = await dead.getAttribute("data-delivery");
    const before = bad.requests.length;
    // The receiver is fixed: resume (its backlog now goes through), then replay the dead one.
    badUp = true;
    await page.locator('tr[data-subscription="crm-orders"] button', { hasText: "Resume" }).click();
    await page.waitForSelector('tr[data-subscription="crm-orders"] button:has-text("Pause")');
    await page.locator(`tr[data-delivery="${id}"] button`, { hasText: "Replay" }).click();
    await waitUntil(async () => bad.requests.length > before, 10_000, "the replayed message is sent");
    const { rows } = await t.db.query<{ message_id: string }>(
      "select message_id from stock_sync.deliveries where id = $1",
      [Number(id)],
    );
    expect(bad.requests.map((r) => r.headers["webhook-id"])).toContain(rows[0]!.message_id);
  });

  it("works without JavaScript: the page renders and a form with the token pauses", async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    await page.goto(`${running.url}/status`);
    const form = page.locator('tr[data-subscription="erp-orders"] form');
    await form.locator('input[name="token"]').fill(TOKEN);
    await form.locator("button").click();
    await page.waitForURL(/done=/);
    expect((await apiStatus()).subscriptions.find((s) => s.name === "erp-orders")?.status).toBe("paused");
    await expect(page.locator(".flash").textContent()).resolves.toContain("erp-orders: paused");
    await context.close();
  });
});
