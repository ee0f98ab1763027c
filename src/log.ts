import { createRequire } from "node:module";
import pino, { type Logger } from "pino";
import type PinoPretty from "pino-pretty";
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
    ? loadPretty()({
        destination,
        colorize: true,
        translateTime: "SYS:HH:MM:ss.l",
        ignore: "pid,hostname,service",
      })
    : destination;
  return pino(options, stream as pino.DestinationStream);
}

/**
 * pino-pretty, loaded on first use: only a TTY or `format: pretty` asks for it, and loading it
 * costs a CLI command ~0.1-0.2 s of start (it pulls in colorette, dateformat, ...) that a JSON log
 * (cron, CI, the bench) never needs. require(), not import(): createLogger stays synchronous.
 */
let prettyModule: typeof PinoPretty | undefined;
function loadPretty(): typeof PinoPretty {
  prettyModule ??= createRequire(import.meta.url)("pino-pretty") as typeof PinoPretty;
  return prettyModule;
}

// ---------------------------------------------------------------- state database outages

export type OutageNews =
  | { say: "outage" | "reminder"; downMs: number; suppressed: number }
  | { say: "recovered"; downMs: number; suppressed: number };

/**
 * Which lines an outage of the state database is worth (issue 17.14): every worker and poll meets
 * it, so one line when it starts, a reminder every `reminderMs`, and one when it ends. Pure: the
 * caller passes the time and writes the lines.
 */
export function outageGate(reminderMs = 60_000) {
  let since: number | null = null;
  let lastSaid = 0;
  let suppressed = 0;
  return {
    get down() {
      return since !== null;
    },
    /** A failure at `now`: news to log, or null when it is one more line of a known outage. */
    failed(now: number): OutageNews | null {
      if (since === null) {
        since = lastSaid = now;
        suppressed = 0;
        return { say: "outage", downMs: 0, suppressed: 0 };
      }
      if (now - lastSaid < reminderMs) {
        suppressed++;
        return null;
      }
      lastSaid = now;
      const news = { say: "reminder" as const, downMs: now - since, suppressed };
      suppressed = 0;
      return news;
    },
    /** The database answered at `now`: the recovery, once. */
    recovered(now: number): OutageNews | null {
      if (since === null) return null;
      const news = { say: "recovered" as const, downMs: now - since, suppressed };
      since = null;
      return news;
    },
  };
}

export type OutageGate = ReturnType<typeof outageGate>;

/**
 * A logger whose warn and error lines about an unreachable state database (and its children's)
 * go through `gate` instead of out one by one; every other line is untouched.
 */
export function gateOutages(
  log: Logger,
  gate: OutageGate,
  opts: { isOutage: (err: unknown) => boolean; now: () => number },
): Logger {
  const about = (args: unknown[]): unknown => {
    const [first, msg] = args;
    if (first === null || typeof first !== "object") return undefined;
    const o = first as { err?: unknown; cause?: unknown };
    if (o.err !== undefined) return opts.isOutage(o.err) ? o.err : undefined;
    return msg === "state database unavailable" ? o.cause : undefined;
  };
  return new Proxy(log, {
    get(target, prop) {
      if (prop === "child")
        return (bindings: pino.Bindings, options?: pino.ChildLoggerOptions) =>
          gateOutages(target.child(bindings, options), gate, opts);
      const value = Reflect.get(target, prop, target);
      if ((prop !== "warn" && prop !== "error") || typeof value !== "function") {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return (...args: unknown[]) => {
        const err = about(args);
        if (err === undefined) return value.apply(target, args);
        const news = gate.failed(opts.now());
        if (news) sayOutage(target, news, err);
      };
    },
  });
}

/** Writes one line of outage news. */
export function sayOutage(log: Logger, news: OutageNews, err?: unknown): void {
  const down_s = Math.round(news.downMs / 1000);
  const cause = err === undefined ? undefined : String((err as Error).message ?? err).split("\n")[0];
  if (news.say === "outage")
    log.warn({ cause }, "state database unavailable; logged again every minute until it is back");
  else if (news.say === "reminder")
    log.warn({ down_s, suppressed: news.suppressed, cause }, "state database still unavailable");
  else log.info({ down_s, suppressed: news.suppressed }, "state database reachable again");
}
