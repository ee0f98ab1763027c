/**
 * What of a receiver's reply body goes into the attempt log (pure). Only failures keep one (a
 * 2xx body tells an operator nothing), with secrets masked (an echoing receiver sends back our
 * Authorization header and signatures), cut to REPLY_CAP characters, and always storable: a
 * PostgreSQL `text` refuses NUL, and a binary or gzip body read as UTF-8 is noise, so it is
 * replaced by a note saying what it was.
 */
import { redactString } from "../config/redact.js";
import type { AttemptResult } from "./retry.js";

/** Characters kept of a failure's reply (the start of an error page or JSON problem), "…" included. */
export const REPLY_CAP = 1024;

// C0 controls but tab, newline and carriage return; DEL; U+FFFD is what invalid UTF-8 decoded to.
const UNPRINTABLE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufffd]/g;
// Echoed secrets the generic redaction does not know: signatures, keys, cookies. A header line
// ("webhook-signature: v1,… v1,…") is masked to its end; a JSON or form field to its delimiter.
// (The name prefix is bounded: an unbounded `[\w-]*` makes a long word cost quadratic time.)
const SECRET_NAME =
  "\\b(?:(?:proxy-)?authorization|set-cookie|cookie|x-api-key|api[_-]?key|[\\w-]{0,40}(?:secret|token|signature|password))";
const SECRET_HEADER_LINE = new RegExp(`^([ \\t]*(?:${SECRET_NAME})[ \\t]*:[ \\t]*)\\S.*$`, "gim");
const SECRET_FIELD = new RegExp(`((?:${SECRET_NAME})["']?\\s*[:=]\\s*["']?)[^\\s"'&,;}]+`, "gi");
const REDACTED = "[redacted]";

/**
 * The reply body to store for an attempt, or null.
 * @example storedReply({ kind: "response", status: 500 }, "oops\u0000") // "oops\ufffd"
 */
export function storedReply(result: AttemptResult, body: string | null): string | null {
  if (body === null || body === "") return null;
  if (result.kind === "response" && result.status < 300) return null;
  // what can be kept, with room for a secret that straddles the cut (masked before cutting)
  const head = body.slice(0, 2 * REPLY_CAP);
  const unprintable = head.match(UNPRINTABLE)?.length ?? 0;
  // More than a stray byte or two: a binary body (gzip, an image), not text with a glitch.
  if (unprintable > 2 && unprintable * 20 > head.length) {
    return `[binary reply of ${body.length} characters, not stored]`;
  }
  const text = redactString(head.replace(UNPRINTABLE, "\ufffd"))
    .replace(SECRET_HEADER_LINE, `$1${REDACTED}`)
    .replace(SECRET_FIELD, (m, name: string) => (m.endsWith(REDACTED) ? m : `${name}${REDACTED}`));
  return text.length > REPLY_CAP ? `${text.slice(0, REPLY_CAP - 1)}…` : text;
}
