/**
 * Mail notifications over SMTP (SPEC §3 `notifications.smtp`), for `mailto:` targets.
 */
import nodemailer from "nodemailer";
import { redactString } from "../config/redact.ts";
import { ConnectorError } from "../errors.ts";
import { type Notification, renderNotification } from "./render.ts";

export type { Notification } from "./render.ts";
export { renderNotification } from "./render.ts";

export type Mailer = {
  /** Resolves once the SMTP server accepted the message; rejects with nodemailer's error. */
  send(to: string, subject: string, text: string): Promise<void>;
  close(): void;
};

export type MailerOptions = {
  /**
   * Connection, greeting and socket timeout, so a dead SMTP server fails an attempt instead of
   * hanging it. Query parameters in the URL (`?connectionTimeout=…`) take precedence.
   * @default 10_000
   * @example { timeoutMs: 500 }
   */
  timeoutMs?: number;
};

/**
 * A mailer over nodemailer's SMTP transport.
 * @example createMailer("smtp://user:pass@mail.example.com:587", "stock-sync@example.com")
 */
export function createMailer(smtpUrl: string, from: string, options: MailerOptions = {}): Mailer {
  if (!/^smtps?:\/\/\S/i.test(smtpUrl) || !URL.canParse(smtpUrl)) {
    throw new ConnectorError(
      "CONFIG_INVALID",
      `notifications.smtp.url: expected smtp:// or smtps://, got "${redactString(smtpUrl)}"`,
    );
  }
  const timeout = options.timeoutMs ?? 10_000;
  const transport = nodemailer.createTransport({
    url: smtpUrl,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
  });
  return {
    async send(to, subject, text) {
      await transport.sendMail({ from, to, subject, text });
    },
    close() {
      transport.close();
    },
  };
}

/** Renders `n` and mails it: the title becomes the Subject. */
export async function mailNotification(mailer: Mailer, to: string, n: Notification): Promise<void> {
  const { title, text } = renderNotification(n);
  await mailer.send(to, title, text);
}
