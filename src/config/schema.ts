/**
 * The config contract (SPEC §3) as one zod schema: defaults, types and cross-field rules in one
 * place. Durations come out in milliseconds and sizes in bytes, so no other module parses units.
 * Messages are written to follow "path: " in load.ts (`expected a duration like "1s"`).
 */
import cron from "node-cron";
import { z } from "zod";
import { bodySchema, checkBody, mapSchema } from "../formats/config.ts";
import { checkJob, jobSchema } from "../jobs/config.ts";
import { DEFAULT_CAPTURE_TABLES } from "../inventory/queries.ts";
import { isSftpUrl, SftpBlock, sftpIssues } from "../sftp/options.ts";
import { durationMs, formatDuration, sizeBytes } from "./duration.ts";

// ---------------------------------------------------------------- building blocks

// Interpolation yields strings ("${PORT:-8080}"), so numbers and booleans also accept their spelling.
const NUMERIC = /^\s*-?\d+(?:\.\d+)?\s*$/;
const toNumber = (v: unknown) => (typeof v === "string" && NUMERIC.test(v) ? Number(v) : v);
const toBoolean = (v: unknown) => (v === "true" ? true : v === "false" ? false : v);

const integer = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.preprocess(
    toNumber,
    // zod reports a non-number as "expected number"; the user should read "integer" either way
    z
      .int({ error: (iss) => (iss.code === "invalid_type" ? "expected an integer" : undefined) })
      .min(min)
      .max(max),
  );
const flag = z.preprocess(toBoolean, z.boolean());

const duration = z.unknown().transform((v, ctx) => {
  const ms = durationMs(v);
  if (ms !== undefined) return ms;
  ctx.addIssue({ code: "custom", message: 'expected a duration like "1s"' });
  return z.NEVER;
});
// For waits where zero would mean a busy loop or an instant timeout.
const positiveDuration = duration.refine((ms) => ms > 0, 'expected a duration longer than 0, like "1s"');

const size = z.unknown().transform((v, ctx) => {
  const bytes = sizeBytes(v);
  if (bytes !== undefined) return bytes;
  ctx.addIssue({ code: "custom", message: 'expected a size like "1mb"' });
  return z.NEVER;
});

const cronExpression = z
  .string()
  .refine((s) => cron.validate(s), 'expected a cron expression like "*/2 * * * *"');

/**
 * A block the user may leave out or leave empty: a YAML key whose children are all commented out
 * reads as null, and should mean "the defaults", not a type error.
 */
function optionalBlock<T extends z.ZodType>(schema: T, fallback: z.input<T>) {
  return z.preprocess((v) => (v === null ? undefined : v), schema.prefault(fallback as never));
}

/** A strict object whose every field has a default, so `{}` is a complete input. */
function section<S extends z.ZodRawShape>(shape: S) {
  return optionalBlock(z.strictObject(shape), {} as never);
}

// ---------------------------------------------------------------- secrets and URLs

const WHSEC = /^whsec_[A-Za-z0-9+/]+={0,2}$/;
const secretList = optionalBlock(z.array(z.string()), []);
// "${OMS_WEBHOOK_SECRET:-}" is how the shipped config says "optional secret": drop the empties.
const dropEmpty = (secrets: readonly string[]) => secrets.filter((s) => s !== "");

/** Checks Standard Webhooks secrets; the message names the index and never the secret itself. */
function checkWhsec(secrets: readonly string[], ctx: z.RefinementCtx, at: PropertyKey[]): void {
  secrets.forEach((secret, i) => {
    if (secret !== "" && !WHSEC.test(secret)) {
      ctx.addIssue({ code: "custom", path: [...at, i], message: 'expected "whsec_" followed by base64' });
    }
  });
}

// Standard Webhooks keys are 24 to 64 bytes; below 16 a key that lets events in can be guessed.
const MIN_INBOUND_KEY_BYTES = 16;
const MIN_ADMIN_TOKEN = 16;
// A captured signed request can be replayed for as long as its timestamp is accepted.
const MAX_TOLERANCE_MS = 3_600_000;
const DAY_MS = 86_400_000;

function checkKeyLength(secrets: readonly string[], ctx: z.RefinementCtx, at: PropertyKey[]): void {
  secrets.forEach((secret, i) => {
    if (WHSEC.test(secret) && Buffer.from(secret.slice(6), "base64").length < MIN_INBOUND_KEY_BYTES) {
      const message = `expected a key of at least ${MIN_INBOUND_KEY_BYTES} bytes (whsec_ and 24 base64 characters or more)`;
      ctx.addIssue({ code: "custom", path: [...at, i], message });
    }
  });
}

const whsecList = secretList.superRefine((secrets, ctx) => checkWhsec(secrets, ctx, [])).transform(dropEmpty);

const isHttpUrl = (s: string) => /^https?:\/\/[^\s/]/i.test(s) && URL.canParse(s);
// file://./out is relative to the working directory, file:///srv/out is absolute.
const isDestination = (s: string) => isHttpUrl(s) || /^file:\/\/(?:\.{1,2})?\/\S/.test(s) || isSftpUrl(s);
const isTarget = (s: string) => isHttpUrl(s) || /^mailto:[^@\s]+@[^@\s]+$/.test(s);

// ---------------------------------------------------------------- sections

const Stock = section({
  // a full that failed, was refused or waited that long for the stock lock is retried (and notified)
  full: section({ schedule: cronExpression.default("0 * * * *"), retry: positiveDuration.prefault("5m") }),
  delta: section({ schedule: cronExpression.default("*/2 * * * *") }),
  sellable: section({ include_future_days: integer(0).default(0) }),
  format: section({
    columns: z
      .array(z.string().min(1))
      .min(1)
      .superRefine(checkUnique("column"))
      .superRefine(checkKeyColumns)
      .default(["sku", "location", "quantity"]),
    gzip: flag.default(false),
    part_rows: integer(1).default(50_000),
  }),
  guard: section({ max_drop_ratio: z.preprocess(toNumber, z.number().min(0).max(1)).default(0.2) }),
  // SQL against the source; "" = the shipped queries for the reference schema (src/inventory/queries.ts).
  queries: section({
    sellable: z.string().default(""),
    sellable_keys: z.string().default(""),
    time_candidates: z.string().default(""),
    // Optional: the sellable rows of whole items ($2 skus) or locations ($3), for an item or
    // location change; "" = the shipped one with the shipped queries, else the whole sellable filtered.
    sellable_matching: z.string().default(""),
  }),
  capture: section({
    // triggers: xid8 change capture installed on the source (`stock-sync source install`);
    // full_diff: no triggers allowed, every delta compares the whole sellable stock with what was sent.
    mode: z.enum(["triggers", "full_diff"]).default("triggers"),
    // This deployment's name among the readers of the source's capture table (each has its own
    // position; rows are pruned below the slowest). Two deployments on one source need two names.
    consumer: z
      .string()
      .regex(/^[a-z0-9_.-]{1,63}$/, 'expected lowercase letters, digits, "_", "." or "-"')
      .default("stock-sync"),
    // Install the triggers ENABLE ALWAYS: they also fire under session_replication_role = replica.
    enable_always: flag.default(false),
    tables: optionalBlock(
      z.array(
        z
          .strictObject({
            table: z.string().min(1),
            sku: z.string().min(1).optional(),
            location: z.string().min(1).optional(),
          })
          .refine(
            (t) => t.sku || t.location,
            "expected sku, location or both: the key columns a row affects",
          ),
      ),
      DEFAULT_CAPTURE_TABLES,
    ),
  }),
  simulator: section({
    enabled: flag.default(false),
    interval: positiveDuration.prefault("20s"),
    changes: integer(1).default(5),
  }),
});

// How a OneStock tenant signs: its docs leave both open, so an operator checks one real delivery
// (docs/operations.md). A signature over the timestamp alone ("t") covers no body: refused.
const OnestockSigning = section({
  signed: z
    .enum(["t.body", "t", "body"])
    .refine(
      (v) => v !== "t",
      'expected "t.body" or "body": a signature over the timestamp alone would vouch for any body',
    )
    .default("t.body"),
  encoding: z.enum(["hex", "base64"]).default("hex"),
});

const Inbound = z
  .strictObject({
    path: z
      .string()
      .regex(/^\/\S*$/, 'expected a path starting with "/"')
      .default("/webhooks/oms"),
    scheme: z.enum(["standard", "onestock"]).default("standard"),
    secrets: secretList,
    tolerance: positiveDuration
      .refine(
        (ms) => ms <= MAX_TOLERANCE_MS,
        "expected at most 1h: a captured request stays replayable this long",
      )
      .prefault("5m"),
    max_body: size.prefault("1mb"),
    order_id_field: z.string().min(1).default("data.order_id"),
    // 2: a batch's statement overlaps the previous batch's commit (intake.ts); see docs
    batches_in_flight: integer(1, 2).default(1),
    onestock: OnestockSigning,
  })
  // onestock keys are free-form; only Standard Webhooks secrets have a format to check
  .superRefine((v, ctx) => {
    if (v.scheme !== "standard") return;
    checkWhsec(v.secrets, ctx, ["secrets"]);
    checkKeyLength(v.secrets, ctx, ["secrets"]);
  })
  .transform((v) => ({ ...v, secrets: dropEmpty(v.secrets) }));

const Server = section({
  host: z.string().min(1).default("127.0.0.1"),
  port: integer(0, 65_535).default(8080),
  admin_token: z
    .string()
    .refine(
      (t) => t === "" || t.length >= MIN_ADMIN_TOKEN,
      `expected at least ${MIN_ADMIN_TOKEN} characters (or empty: admin API off)`,
    )
    .default(""),
  inbound: optionalBlock(Inbound, {}),
});

const NAME = /^[a-z0-9][a-z0-9_.-]*$/;
const SUBJECT = /^(?:[A-Za-z0-9_-]+|\*)(?:\.(?:[A-Za-z0-9_-]+|\*))*$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const Ordering = z.enum(["fifo", "key", "none"]);

// Stock messages must reach the OMS in sequence (SPEC §6), so they default to fifo.
const defaultOrdering = (subjects: readonly string[]): z.output<typeof Ordering> =>
  subjects.some((s) => s.startsWith("stock.")) ? "fifo" : "none";

const Subscription = z
  .strictObject({
    name: z.string().regex(NAME, 'expected lowercase letters, digits, "_", "." or "-", like "oms-stock"'),
    subjects: z.array(z.string().regex(SUBJECT, 'expected a subject like "stock.full" or "order.*"')).min(1),
    url: z
      .string()
      .refine(
        isDestination,
        "expected an http:// or https:// URL, file://./dir or file:///dir, or sftp://user@host/dir",
      ),
    method: z.enum(["POST", "PUT", "PATCH"]).default("POST"),
    headers: optionalBlock(
      z.record(
        z.string().regex(HEADER_NAME, "expected an HTTP header name"),
        // `x-api-version: 2` reads as a number in YAML; a header value is text either way
        z.preprocess((v) => (typeof v === "number" || typeof v === "boolean" ? String(v) : v), z.string()),
      ),
      {},
    ),
    secrets: whsecList,
    rate_limit: z
      .strictObject({ requests: integer(1), per: positiveDuration })
      .nullable()
      .default(null),
    concurrency: integer(1).default(4),
    timeout: positiveDuration.prefault("15s"),
    retry_intervals: z.array(duration).min(1).prefault(["30s", "60s", "120s", "240s", "480s", "840s"]),
    retries_until_failure: integer(1).default(3),
    ordering: Ordering.optional(),
    status: z.enum(["enabled", "paused"]).default("enabled"),
    sftp: SftpBlock.optional(),
    // per-subscription payloads and code mapping (src/formats/config.ts); absent = today's CSV
    body: bodySchema(size, integer).optional(),
    map: mapSchema.optional(),
    // an OMS's asynchronous import, followed to its end (src/jobs/config.ts)
    job: jobSchema(positiveDuration).optional(),
  })
  .superRefine((s, ctx) => {
    for (const issue of sftpIssues(s.url, s.sftp)) ctx.addIssue({ code: "custom", ...issue });
  })
  .transform((s) => ({ ...s, ordering: s.ordering ?? defaultOrdering(s.subjects) }));

const targets = optionalBlock(
  z.array(z.string().refine(isTarget, "expected an http:// or https:// URL, or mailto:address")),
  [],
);

const Notifications = section({
  on_failure: targets,
  on_deactivation: targets,
  on_failure_recovered: targets,
  smtp: section({ url: z.string().default(""), from: z.string().min(1).default("stock-sync@localhost") }),
  min_interval: duration.prefault("1h"),
});

const Delivery = section({
  poll_interval: positiveDuration.prefault("1s"),
  lease: positiveDuration.prefault("60s"),
  retention: duration.prefault("30d"),
  shutdown_grace: duration.prefault("10s"),
});

const Log = section({
  level: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
  format: z.enum(["auto", "json", "pretty"]).default("auto"),
});

export const ConfigSchema = z
  .strictObject({
    database: section({
      url: z.string().default(""),
      data_dir: z.string().min(1).default("./data"),
      pool_size: integer(1).default(10),
    }),
    source: section({ url: z.string().default(""), demo: flag.default(false) }),
    stock: Stock,
    server: Server,
    subscriptions: optionalBlock(z.array(Subscription).superRefine(checkUniqueNames), []),
    notifications: Notifications,
    delivery: Delivery,
    log: Log,
  })
  .superRefine(checkAcrossSections);

/** The validated config: durations in milliseconds, sizes in bytes, every default filled in. */
export type Config = z.output<typeof ConfigSchema>;
export type SubscriptionConfig = Config["subscriptions"][number];

// ---------------------------------------------------------------- cross-field rules

function checkUnique(what: string) {
  return (items: readonly string[], ctx: z.RefinementCtx) =>
    items.forEach((item, i) => {
      if (items.indexOf(item) !== i)
        ctx.addIssue({ code: "custom", path: [i], message: `duplicate ${what} "${item}"` });
    });
}

// The OMS applies a row by its key and quantity; a file without them cannot be applied.
function checkKeyColumns(columns: readonly string[], ctx: z.RefinementCtx): void {
  const missing = ["sku", "location", "quantity"].filter((c) => !columns.includes(c));
  if (missing.length)
    ctx.addIssue({
      code: "custom",
      message: `must include sku, location and quantity; missing ${missing.join(", ")}`,
    });
}

/**
 * The three source queries are one set: overriding only `sellable` left the others on the
 * reference schema (inventory.*), which passed here and failed at the first delta.
 */
function checkQuerySet(config: Config, ctx: z.RefinementCtx): void {
  const q = config.stock.queries;
  const names = ["sellable", "sellable_keys", "time_candidates"] as const;
  const set = names.filter((n) => q[n].trim() !== "");
  if (set.length === 0 || set.length === names.length) return;
  for (const n of names.filter((n) => !set.includes(n))) {
    const message =
      `set all three stock.queries (sellable, sellable_keys, time_candidates: "none" when nothing changes with time) or none; ` +
      `with only ${set.join(" and ")} set, this one would be the reference schema's (inventory.*)`;
    ctx.addIssue({ code: "custom", path: ["stock", "queries", n], message });
  }
}

function checkUniqueNames(subs: readonly { name: string }[], ctx: z.RefinementCtx): void {
  subs.forEach((sub, i) => {
    const first = subs.findIndex((s) => s.name === sub.name);
    if (first !== i) {
      const message = `duplicate name "${sub.name}" (also subscriptions[${first}].name)`;
      ctx.addIssue({ code: "custom", path: [i, "name"], message });
    }
  });
}

function checkAcrossSections(config: Config, ctx: z.RefinementCtx): void {
  checkDemo(config, ctx);
  checkQuerySet(config, ctx);
  const lease = config.delivery.lease;
  config.subscriptions.forEach((sub, i) => {
    checkBody(sub, ctx, ["subscriptions", i]);
    checkJob(sub, ctx, ["subscriptions", i]);
    // a lease that ends mid-request lets a second worker deliver the same message concurrently
    if (sub.timeout >= lease) {
      const message = `must be shorter than delivery.lease (${formatDuration(lease)}), got ${formatDuration(sub.timeout)}`;
      ctx.addIssue({ code: "custom", path: ["subscriptions", i, "timeout"], message });
    }
  });
  // the inbox remembers ids for duplicate detection until the retention purge: a signed request
  // must not become new again while its timestamp is still accepted (nor within a day of a retry)
  const keep = Math.max(config.server.inbound.tolerance, DAY_MS);
  if (config.delivery.retention < keep) {
    const message = `must be at least ${formatDuration(keep)} (inbound ids are kept this long to catch replays), got ${formatDuration(config.delivery.retention)}`;
    ctx.addIssue({ code: "custom", path: ["delivery", "retention"], message });
  }
  const n = config.notifications;
  if (n.smtp.url !== "") return;
  for (const list of ["on_failure", "on_deactivation", "on_failure_recovered"] as const) {
    const i = n[list].findIndex((t) => t.startsWith("mailto:"));
    if (i >= 0) {
      const message = "mailto: targets need notifications.smtp.url (an smtp:// URL)";
      ctx.addIssue({ code: "custom", path: ["notifications", list, i], message });
      return;
    }
  }
}

/**
 * The demo inventory must never reach a real OMS by accident (issue 17.1): a real state database
 * with no source is a forgotten SOURCE_DATABASE_URL, not a request for the demo.
 */
function checkDemo(config: Config, ctx: z.RefinementCtx): void {
  const { url, demo } = config.source;
  if (url !== "" && demo) {
    const message = "expected false when source.url is set (the demo inventory replaces a real source)";
    ctx.addIssue({ code: "custom", path: ["source", "demo"], message });
  }
  if (url === "" && !demo && config.database.url !== "") {
    const message =
      "required when database.url is set (SOURCE_DATABASE_URL in the shipped config); the demo inventory goes into a PostgreSQL state database only with source.demo: true";
    ctx.addIssue({ code: "custom", path: ["source", "url"], message });
  }
}

/** True when the source is the demo inventory: no source.url, on the embedded default or by choice. */
export const usesDemoSource = (config: Config): boolean =>
  config.source.url === "" && (config.database.url === "" || config.source.demo);

// ---------------------------------------------------------------- warnings

const DAY_S = 86_400;
const DELTA_MIN_GAP_S = 60;
const DELTA_MAX_GAP_S = 300;

/** Legal but doubtful settings, for the caller to log: the delta should run every 1 to 5 minutes. */
export function configWarnings(config: Config): string[] {
  const schedule = config.stock.delta.schedule;
  const { min, max } = cronGaps(schedule);
  const warnings: string[] = [];
  const at = `stock.delta.schedule "${schedule}"`;
  if (min < DELTA_MIN_GAP_S) {
    warnings.push(
      `${at} runs as often as every ${formatDuration(min * 1000)}; deltas are meant to run every 1 to 5 minutes`,
    );
  }
  if (max > DELTA_MAX_GAP_S) {
    warnings.push(
      `${at} leaves up to ${formatDuration(max * 1000)} between runs; deltas are meant to run every 1 to 5 minutes`,
    );
  }
  return warnings;
}

/** Shortest and longest wait between fire times of a valid cron expression, in seconds. */
export function cronGaps(expression: string): { min: number; max: number } {
  const f = cron.parse(expression);
  const times = f.hour
    .flatMap((h) => f.minute.flatMap((m) => f.second.map((s) => h * 3600 + m * 60 + s)))
    .sort((a, b) => a - b);
  const wrap = times[0]! + DAY_S - times.at(-1)!;
  // judging one day is enough unless the schedule skips days, and then some wait is a day or more
  const everyDay =
    f.dayOfMonth.length === 31 &&
    f.month.length === 12 &&
    new Set(f.dayOfWeek.map((d) => Number(d) % 7)).size === 7;
  let min = wrap;
  let max = everyDay ? wrap : DAY_S;
  // a loop, not Math.min(...gaps): "* * * * * *" has 86,400 fire times a day
  for (let i = 1; i < times.length; i++) {
    const gap = times[i]! - times[i - 1]!;
    min = Math.min(min, gap);
    max = Math.max(max, gap);
  }
  return { min, max };
}
