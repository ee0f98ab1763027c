import { randomBytes, randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";

/** A new Standard Webhooks secret (whsec_…), as an OMS would be given. */
export const newSecret = () => `whsec_${randomBytes(24).toString("base64")}`;

/**
 * The headers of an inbound event as an independent Standard Webhooks implementation (the
 * `standardwebhooks` package) signs it: a fresh `msg_` id and the current time unless given.
 */
export function signedHeaders(
  secret: string,
  body: string,
  opts: { id?: string; at?: Date } = {},
): Record<string, string> {
  const id = opts.id ?? `msg_${randomUUID()}`;
  const at = opts.at ?? new Date();
  return {
    "content-type": "application/json",
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": new Webhook(secret).sign(id, at, body),
  };
}
