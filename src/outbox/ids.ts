import { randomBytes } from "node:crypto";

/**
 * Message ids: `msg_` + 48-bit millisecond time + 80 random bits, base32hex (sorts by time).
 * They become `webhook-id`, which Standard Webhooks forbids to contain ".".
 */
export function newMessageId(now: Date = new Date()): string {
  const time = BigInt(now.getTime()).toString(32).padStart(10, "0");
  const rand = BigInt(`0x${randomBytes(10).toString("hex")}`)
    .toString(32)
    .padStart(16, "0");
  return `msg_${time}${rand}`;
}
