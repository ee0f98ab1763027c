import pino, { type Logger } from "pino";
import pretty from "pino-pretty";
import { originOnly, redactString } from "./config/redact.js";

export type { Logger };

export type LogOptions = {
  /** @default "info" */
  level?: string;
  /** "auto" = pretty on a TTY, JSON otherwise. @default "auto" */
  format?: "auto" | "json" | "pretty";
  /** Where JSON lines go. @default process.stderr (stdout stays free for command output) */
  destination?: NodeJS.WritableStream;
};

// Keys whose values never reach a log line, wherever they appear in a logged object.
const SECRET_KEYS = [
  "admin_token",
  "token",
  "secret",
  "secrets",
  "password",
  "authorization",
  "headers.authorization",
  "*.admin_token",
  "*.token",
  "*.secret",
  "*.secrets",
  "*.password",
  "*.authorization",
  "*.headers.authorization",
];

// Fields that name where something is sent: logged as their origin only (a chat webhook's path is its token).
const DESTINATION_KEYS = new Set(["url", "target", "destination"]);

/** Masks `whsec_…` and URL passwords in any string value of a log object (one level deep). */
function scrub(obj: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(obj)) {
    if (typeof v === "string") obj[k] = DESTINATION_KEYS.has(k) ? originOnly(v) : redactString(v);
  }
  return obj;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const destination = opts.destination ?? process.stderr;
  const wantPretty =
    opts.format === "pretty" ||
    (opts.format !== "json" && (destination as { isTTY?: boolean }).isTTY === true);
  const options: pino.LoggerOptions = {
    level: opts.level ?? "info",
    base: { service: "stock-sync" },
    redact: { paths: SECRET_KEYS, censor: "[redacted]" },
    formatters: { log: scrub },
    hooks: {
      logMethod(args, method) {
        method.apply(
          this,
          args.map((a) => (typeof a === "string" ? redactString(a) : a)) as Parameters<typeof method>,
        );
      },
    },
    serializers: { err: (err: Error) => scrub({ ...pino.stdSerializers.err(err) }) },
  };
  const stream = wantPretty
    ? pretty({ destination, colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,service" })
    : destination;
  return pino(options, stream as pino.DestinationStream);
}
