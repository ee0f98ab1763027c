import { createServer as createTcpServer, type Server as TcpServer } from "node:net";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMailer, mailNotification, renderNotification } from "../../src/notifications/mail.ts";
import { classifyError } from "../../src/outbox/retry.ts";
import { REFUSED_PORT } from "../helpers/receiver.js";

type Received = { from: string; to: string[]; raw: string };

const FROM = "stock-sync@example.test";
const listen = (server: { listen(port: number, host: string, cb: () => void): unknown }) =>
  new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));

/** The value of header `name`, unfolded (RFC 5322 §2.2.3). */
function header(raw: string, name: string): string | undefined {
  const head = raw.slice(0, raw.indexOf("\r\n\r\n")).replace(/\r\n(?=[ \t])/g, "");
  return head
    .split("\r\n")
    .find((line) => line.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    ?.slice(name.length + 1)
    .trim();
}

/** The text body, decoded when the mailer chose quoted-printable for its long lines. */
function body(raw: string): string {
  const text = raw.slice(raw.indexOf("\r\n\r\n") + 4);
  if (header(raw, "content-transfer-encoding")?.toLowerCase() !== "quoted-printable") return text;
  const bytes = text.replace(/=\r\n/g, "").replace(/=([0-9A-F]{2})/g, (_, hex: string) => `%${hex}`);
  return decodeURIComponent(bytes.replace(/%(?![0-9A-F]{2})/g, "%25"));
}

describe("createMailer", () => {
  const received: Received[] = [];
  let smtp: SMTPServer;
  let mute: TcpServer;
  const closedPort = REFUSED_PORT; // refuses connections, and no parallel test can take it

  beforeAll(async () => {
    smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS"],
      logger: false,
      onData(stream, session, done) {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          const mailFrom = session.envelope.mailFrom;
          received.push({
            from: mailFrom ? mailFrom.address : "",
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks).toString("utf8"),
          });
          done();
        });
      },
    });
    mute = createTcpServer(() => {}); // accepts, never greets
    await Promise.all([listen(smtp), listen(mute)]);
  });

  afterAll(async () => {
    await new Promise<void>((ok) => smtp.close(() => ok()));
    await new Promise((ok) => mute.close(ok));
  });

  const smtpPort = () => (smtp.server.address() as AddressInfo).port;

  it("sends a rendered notification over SMTP", async () => {
    const mailer = createMailer(`smtp://127.0.0.1:${smtpPort()}`, FROM);
    const notification = {
      kind: "deactivated",
      subscription: "oms-stock",
      at: "2025-06-01T12:00:00.000Z",
      detail: "The last retry interval failed, so the subscription was paused.",
      consecutiveFailures: 7,
      lastStatus: 500,
    } as const;
    try {
      await mailNotification(mailer, "ops@example.test", notification);
    } finally {
      mailer.close();
    }

    expect(received).toHaveLength(1);
    const mail = received[0]!;
    const { title, text } = renderNotification(notification);
    expect(mail.to).toEqual(["ops@example.test"]);
    expect(mail.from).toBe(FROM);
    expect(header(mail.raw, "subject")).toBe(title);
    expect(title).toBe("stock-sync: subscription oms-stock was deactivated (last: HTTP 500)");
    expect(body(mail.raw).replace(/\r\n/g, "\n").trim()).toBe(text.trim());
    expect(text).toContain("`stock-sync resume oms-stock`");
  });

  it("rejects when nothing listens on the port", async () => {
    const mailer = createMailer(`smtp://127.0.0.1:${closedPort}`, FROM, { timeoutMs: 1_000 });
    const err = await mailer.send("ops@example.test", "x", "y").then(
      () => expect.unreachable(),
      (e: unknown) => e,
    );
    mailer.close();
    expect(String(err)).toMatch(/ECONNREFUSED/);
    expect(classifyError(err).errorClass).toBe("mail");
  });

  it("fails instead of hanging when the server never greets", async () => {
    const port = (mute.address() as AddressInfo).port;
    const mailer = createMailer(`smtp://127.0.0.1:${port}`, FROM, { timeoutMs: 300 });
    const started = Date.now();
    await expect(mailer.send("ops@example.test", "x", "y")).rejects.toThrow();
    mailer.close();
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("refuses a URL that is not smtp:// or smtps://, without echoing its password", () => {
    expect(() => createMailer("https://user:hunter2@mail.example.test", FROM)).toThrow(/smtp:\/\//);
    expect(() => createMailer("https://user:hunter2@mail.example.test", FROM)).not.toThrow(/hunter2/);
  });
});

describe("renderNotification", () => {
  const at = "2025-06-01T12:00:00.000Z";

  it("titles each kind on one line", () => {
    const title = (n: Parameters<typeof renderNotification>[0]) => renderNotification(n).title;
    expect(
      title({
        kind: "failing",
        subscription: "oms-stock",
        at,
        detail: "",
        consecutiveFailures: 3,
        lastStatus: 500,
      }),
    ).toBe("stock-sync: subscription oms-stock is failing (3 consecutive failures, last: HTTP 500)");
    expect(
      title({
        kind: "failing",
        subscription: "erp-orders",
        at,
        detail: "",
        consecutiveFailures: 1,
        lastStatus: null,
        lastError: "connect ECONNREFUSED\n127.0.0.1:9",
      }),
    ).toBe(
      "stock-sync: subscription erp-orders is failing (1 consecutive failure, last: connect ECONNREFUSED 127.0.0.1:9)",
    );
    expect(title({ kind: "recovered", subscription: "oms-stock", at, detail: "" })).toBe(
      "stock-sync: subscription oms-stock has recovered",
    );
    expect(title({ kind: "snapshot_refused", at, detail: "" })).toBe(
      "stock-sync: full stock snapshot refused",
    );
  });

  it("says what to do, and masks secrets in the error and detail", () => {
    const { text } = renderNotification({
      kind: "failing",
      subscription: "oms-stock",
      at,
      detail: "POST https://svc:hunter2@oms.example.test/stock failed",
      consecutiveFailures: 3,
      lastError: "getaddrinfo ENOTFOUND https://svc:hunter2@oms.example.test",
    });
    expect(text).not.toContain("hunter2");
    expect(text).toContain("`stock-sync deliveries --subscription oms-stock`");
    expect(text).toContain(at);
    expect(renderNotification({ kind: "snapshot_refused", at, detail: "600 rows, 40% fewer" }).text).toMatch(
      /max_drop_ratio/,
    );
  });
});
