/**
 * The words of an operator notification, shared by every channel (mail subject and body, JSON
 * webhook text). Pure: the caller decides when to notify and whom.
 */
import { redactString } from "../config/redact.ts";

export type NotificationKind =
  | "failing"
  | "deactivated"
  | "recovered"
  | "snapshot_refused"
  | "snapshot_failed"
  | "import_rejected";

export type Notification = {
  kind: NotificationKind;
  /** The subscription concerned; absent for connector-wide events such as a refused snapshot. */
  subscription?: string;
  /** ISO 8601 time of the event. */
  at: string;
  /** One or two sentences from the caller: the cause, the numbers. */
  detail: string;
  consecutiveFailures?: number;
  lastStatus?: number | null;
  lastError?: string | null;
};

const MAX_ERROR = 200;

/**
 * A one-line title and a few lines of text saying what happened and what to do.
 * @example renderNotification({ kind: "failing", subscription: "oms-stock", at, detail, consecutiveFailures: 3, lastStatus: 500 }).title
 *   // "stock-sync: subscription oms-stock is failing (3 consecutive failures, last: HTTP 500)"
 */
export function renderNotification(n: Notification): { title: string; text: string } {
  const name = n.subscription ?? "(unnamed)";
  const last = lastOutcome(n);
  const detail = redactString(n.detail.trim());
  const lines = (...parts: (string | false)[]) =>
    [...parts.filter((p): p is string => p !== false && p !== ""), `Time: ${n.at}`].join("\n");
  switch (n.kind) {
    case "failing":
      return {
        title: oneLine(
          `stock-sync: subscription ${name} is failing (${failures(n)}${last ? `, last: ${last}` : ""})`,
        ),
        text: lines(
          `Deliveries to subscription ${name} are failing: ${failures(n)}.`,
          last !== "" && `Last result: ${last}.`,
          detail,
          "stock-sync keeps retrying on the subscription's retry intervals. If the last one fails too, " +
            "the subscription is deactivated; its messages are kept.",
          `To do: check the receiver; \`stock-sync deliveries --subscription ${name}\` lists the messages.`,
        ),
      };
    case "deactivated":
      return {
        title: oneLine(`stock-sync: subscription ${name} was deactivated${last ? ` (last: ${last})` : ""}`),
        text: lines(
          `Subscription ${name} was deactivated: nothing more is sent to it until it is resumed.`,
          last !== "" && `Last result: ${last}.`,
          detail,
          `To do: fix the receiver, then \`stock-sync resume ${name}\`; its messages are kept and flow again in order.`,
        ),
      };
    case "recovered":
      return {
        title: oneLine(`stock-sync: subscription ${name} has recovered`),
        text: lines(
          `Subscription ${name} is delivering again` +
            (n.consecutiveFailures ? ` after ${failures(n)}.` : "."),
          detail,
          "Nothing to do.",
        ),
      };
    case "snapshot_refused":
      return {
        // A refused delta says so in its detail (export/guard.ts); the same guard, the same event.
        title: oneLine(
          `stock-sync: ${n.detail.startsWith("stock delta") ? "stock delta" : "full stock snapshot"} refused${n.subscription ? ` for ${name}` : ""}`,
        ),
        text: lines(
          "A stock run was refused by the shrink guard and not sent: the OMS keeps the stock it had.",
          detail,
          "To do: check the inventory source. If the drop is real, run the command above with --force " +
            "or raise stock.guard.max_drop_ratio in the config; the next scheduled run is checked again " +
            "(a refused delta is held until then).",
        ),
      };
    case "import_rejected":
      return {
        title: oneLine(`stock-sync: the OMS rejected records of ${name}'s import`),
        text: lines(
          `The OMS finished an import job of subscription ${name} but rejected some of its records.`,
          detail,
          "The other records were applied. The rejected ones stay as they were at the OMS until they " +
            "change again or the next full stock snapshot sends them.",
          "To do: `stock-sync deliveries --id <id>` lists the rejected records and the OMS's reasons.",
        ),
      };
    case "snapshot_failed":
      return {
        title: "stock-sync: a due full stock snapshot did not run",
        text: lines(
          "A full stock snapshot that was due did not run: the OMS has not been reset to the truth.",
          detail,
          "stock-sync retries it every stock.full.retry; deltas go on meanwhile. " +
            "To do: look at the log for the error; `stock-sync status` shows whether the full is overdue.",
        ),
      };
  }
}

const failures = (n: Notification) =>
  n.consecutiveFailures === 1
    ? "1 consecutive failure"
    : `${n.consecutiveFailures ?? "several"} consecutive failures`;

/** "HTTP 500", or the error text (masked and shortened), or "" when neither is known. */
function lastOutcome(n: Notification): string {
  if (n.lastStatus !== undefined && n.lastStatus !== null) return `HTTP ${n.lastStatus}`;
  if (n.lastError) return oneLine(redactString(n.lastError)).slice(0, MAX_ERROR);
  return "";
}

// A title becomes a mail Subject header: keep it on one line.
const oneLine = (s: string) => s.replace(/\s+/g, " ").trim();
