// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings test ${VAR} interpolation itself
import { readFileSync } from "node:fs";
import { DEFAULT_CAPTURE_TABLES } from "../../src/inventory/queries.ts";
import { describe, expect, it } from "vitest";
import {
  formatDuration,
  loadConfig,
  parseDuration,
  parseSize,
  redactConfig,
  redactString,
} from "../../src/config/index.ts";
import { interpolate } from "../../src/config/interpolate.ts";
import { ConnectorError } from "../../src/errors.ts";

const SHIPPED = readFileSync(new URL("../../config/stock-sync.yaml", import.meta.url), "utf8");
const SECRET = "whsec_c2VjcmV0LXZhbHVlLWZvci10ZXN0cw==";

/** The CONFIG_INVALID message `yaml` produces; fails the test when it loads. */
function configError(yaml: string, env: Record<string, string> = {}): string {
  try {
    loadConfig(yaml, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConnectorError);
    expect((err as ConnectorError).code).toBe("CONFIG_INVALID");
    return (err as Error).message;
  }
  throw new Error("expected a CONFIG_INVALID error");
}

const sub = (extra = "") =>
  `{ name: s, subjects: [order.created], url: "https://oms.example.com/x"${extra} }`;

describe("parseDuration", () => {
  it.each([
    ["500ms", 500],
    ["30s", 30_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1d", 86_400_000],
    ["1m30s", 90_000],
    ["1h 15m", 4_500_000],
    ["1.5s", 1_500],
    ["45", 45_000],
    [0.001, 1],
    [2, 2_000],
    [0, 0],
  ] as const)("%s -> %i ms", (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each(["", "soon", "5 minutes", "-1s", "1x", "s", "1s2"])("rejects %j", (input) => {
    expect(() => parseDuration(input)).toThrow(ConnectorError);
  });

  it("rejects negative and non-finite numbers", () => {
    expect(() => parseDuration(-1)).toThrow('expected a duration like "1s", got -1');
    expect(() => parseDuration(Number.NaN)).toThrow(ConnectorError);
  });

  it("formats milliseconds the way a config writes them", () => {
    expect([90_000, 120_000, 3_600_000, 1_500, 86_400_000, 0].map(formatDuration)).toEqual([
      "1m30s",
      "2m",
      "1h",
      "1s500ms",
      "1d",
      "0s",
    ]);
  });
});

describe("parseSize", () => {
  it.each([
    ["10b", 10],
    ["512kb", 524_288],
    ["1mb", 1_048_576],
    ["1MB", 1_048_576],
    ["2gb", 2 * 1024 ** 3],
    ["100", 100],
    [4096, 4096],
  ] as const)("%s -> %i bytes", (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  it("rejects what is not a size", () => {
    expect(() => parseSize("1 megabyte")).toThrow('expected a size like "1mb", got "1 megabyte"');
  });
});

describe("interpolate", () => {
  const env = { HOST: "db.local", PORT: "5432", EMPTY: "" };

  it("replaces several references in one string, with and without defaults", () => {
    expect(interpolate("postgres://${HOST}:${PORT}/${DB:-stock}", env)).toBe(
      "postgres://db.local:5432/stock",
    );
  });

  it("uses the default when the variable is unset or empty, like the shell", () => {
    expect(interpolate(["${NOPE:-x}", "${EMPTY:-y}", "${NOPE:-}", "${EMPTY}"], env)).toEqual([
      "x",
      "y",
      "",
      "",
    ]);
  });

  it("reads $${ as a literal ${", () => {
    expect(interpolate("cost: $${HOST} and ${HOST}", env)).toBe("cost: ${HOST} and db.local");
  });

  it("walks nested values and leaves keys and non-strings alone", () => {
    const tree = { "${HOST}": { list: [1, true, null, "${PORT}"] } };
    expect(interpolate(tree, env)).toEqual({ "${HOST}": { list: [1, true, null, "5432"] } });
  });

  it("names the path and the variable when a variable is unset", () => {
    expect(() => interpolate({ server: { admin_token: "${STOCK_SYNC_ADMIN_TOKEN}" } }, {})).toThrow(
      "server.admin_token: environment variable STOCK_SYNC_ADMIN_TOKEN is not set " +
        "(use ${STOCK_SYNC_ADMIN_TOKEN:-} to allow empty)",
    );
  });

  it("reports every unset variable at once, with array indexes in the path", () => {
    const message = configError('subscriptions: [{ url: "${A}" }, { headers: { x: "${B}" } }]');
    expect(message).toBe(
      "subscriptions[0].url: environment variable A is not set (use ${A:-} to allow empty); " +
        "subscriptions[1].headers.x: environment variable B is not set (use ${B:-} to allow empty)",
    );
  });

  it("rejects a malformed reference instead of passing it on", () => {
    expect(configError('database: { url: "${DB URL}" }')).toMatch(/^database\.url: malformed "\$\{"/);
  });
});

describe("loadConfig: defaults", () => {
  it("reads an empty file as all defaults", () => {
    const { config, warnings } = loadConfig("", {});
    expect(warnings).toEqual([]);
    expect(config.database).toEqual({ url: "", data_dir: "./data", pool_size: 10 });
    expect(config.source).toEqual({ url: "", demo: false });
    expect(config.stock).toEqual({
      full: { schedule: "0 * * * *", retry: 300_000 },
      delta: { schedule: "*/2 * * * *" },
      sellable: { include_future_days: 0 },
      format: { columns: ["sku", "location", "quantity"], gzip: false, part_rows: 50_000 },
      guard: { max_drop_ratio: 0.2 },
      queries: { sellable: "", sellable_keys: "", time_candidates: "", sellable_matching: "" },
      capture: {
        mode: "triggers",
        consumer: "stock-sync",
        enable_always: false,
        tables: DEFAULT_CAPTURE_TABLES,
      },
      simulator: { enabled: false, interval: 20_000, changes: 5 },
    });
    expect(config.server).toEqual({
      host: "127.0.0.1",
      port: 8080,
      admin_token: "",
      inbound: {
        path: "/webhooks/oms",
        scheme: "standard",
        secrets: [],
        tolerance: 300_000,
        max_body: 1_048_576,
        order_id_field: "data.order_id",
        batches_in_flight: 1,
        onestock: { signed: "t.body", encoding: "hex" },
      },
    });
    expect(config.subscriptions).toEqual([]);
    expect(config.notifications).toEqual({
      on_failure: [],
      on_deactivation: [],
      on_failure_recovered: [],
      smtp: { url: "", from: "stock-sync@localhost" },
      min_interval: 3_600_000,
    });
    expect(config.delivery).toEqual({
      poll_interval: 1_000,
      lease: 60_000,
      retention: 30 * 86_400_000,
      shutdown_grace: 10_000,
    });
    expect(config.log).toEqual({ level: "info", format: "auto" });
  });

  it("treats a section left empty (null in YAML) as its defaults", () => {
    const { config } = loadConfig("# nothing yet\nstock:\nsubscriptions:\nserver:\n  inbound:\n", {});
    expect(config.stock.full.schedule).toBe("0 * * * *");
    expect(config.subscriptions).toEqual([]);
    expect(config.server.inbound.path).toBe("/webhooks/oms");
  });

  it("fills subscription defaults and converts durations", () => {
    const { config } = loadConfig(`subscriptions: [${sub()}]`, {});
    expect(config.subscriptions[0]).toEqual({
      name: "s",
      subjects: ["order.created"],
      url: "https://oms.example.com/x",
      method: "POST",
      headers: {},
      secrets: [],
      rate_limit: null,
      concurrency: 4,
      timeout: 15_000,
      retry_intervals: [30_000, 60_000, 120_000, 240_000, 480_000, 840_000],
      retries_until_failure: 3,
      ordering: "none",
      status: "enabled",
    });
  });

  it("takes durations as strings or seconds, and sizes as strings or bytes", () => {
    const yaml = `
server: { inbound: { tolerance: 90, max_body: 512kb } }
delivery: { poll_interval: 500ms, lease: 2m }
subscriptions: [${sub(", retry_intervals: [0.001, 1s, 1m30s], rate_limit: { requests: 10, per: 1s }")}]`;
    const { config } = loadConfig(yaml, {});
    expect(config.server.inbound.tolerance).toBe(90_000);
    expect(config.server.inbound.max_body).toBe(524_288);
    expect(config.delivery).toMatchObject({ poll_interval: 500, lease: 120_000 });
    expect(config.subscriptions[0]?.retry_intervals).toEqual([1, 1_000, 90_000]);
    expect(config.subscriptions[0]?.rate_limit).toEqual({ requests: 10, per: 1_000 });
  });

  it("takes 1 or 2 inbound batches in flight, nothing else", () => {
    const inFlight = (v: string) => loadConfig(`server: { inbound: { batches_in_flight: ${v} } }`, {});
    expect(inFlight("2").config.server.inbound.batches_in_flight).toBe(2);
    expect(inFlight('"2"').config.server.inbound.batches_in_flight).toBe(2); // from ${VAR}
    expect(() => inFlight("3")).toThrow("batches_in_flight");
    expect(() => inFlight("0")).toThrow("batches_in_flight");
  });

  it("accepts numbers and booleans that arrive as strings through interpolation", () => {
    const yaml = 'server: { port: "${PORT:-9090}" }\nstock: { format: { gzip: "${GZIP}" } }';
    const { config } = loadConfig(yaml, { GZIP: "true" });
    expect(config.server.port).toBe(9090);
    expect(config.stock.format.gzip).toBe(true);
  });

  it("defaults ordering to fifo when a subject is stock.*, and keeps an explicit choice", () => {
    const yaml = `subscriptions:
  - { name: a, subjects: [stock.full, stock.delta], url: "file://./out/a" }
  - { name: b, subjects: ["order.*"], url: "file:///srv/out/b" }
  - { name: c, subjects: [stock.delta], url: "https://x.example", ordering: none }`;
    const orderings = loadConfig(yaml, {}).config.subscriptions.map((s) => s.ordering);
    expect(orderings).toEqual(["fifo", "none", "none"]);
  });

  it("returns a deeply frozen config", () => {
    const { config } = loadConfig(`subscriptions: [${sub()}]`, {});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.server.inbound)).toBe(true);
    expect(Object.isFrozen(config.subscriptions[0]?.retry_intervals)).toBe(true);
    expect(() => {
      (config.server as { port: number }).port = 1;
    }).toThrow(TypeError);
  });
});

describe("loadConfig: errors", () => {
  it("names an unknown key by its full path and suggests the closest known key", () => {
    expect(configError("stock: { guard: { typo_key: 1 } }")).toBe("stock.guard.typo_key: unknown key");
    expect(configError(`subscriptions: [${sub(", retry_interval: [1s]")}]`)).toBe(
      'subscriptions[0].retry_interval: unknown key (did you mean "retry_intervals"?)',
    );
    expect(configError("sever: {}")).toBe('sever: unknown key (did you mean "server"?)');
  });

  it("says what was expected and what was found", () => {
    expect(configError("server: { port: abc }")).toBe('server.port: expected an integer, got "abc"');
    expect(configError("server: { port: 70000 }")).toBe("server.port: expected at most 65535, got 70000");
    expect(configError("log: { level: loud }")).toBe(
      'log.level: expected one of "trace", "debug", "info", "warn", "error", got "loud"',
    );
    expect(configError("stock: { guard: { max_drop_ratio: 1.5 } }")).toBe(
      "stock.guard.max_drop_ratio: expected at most 1, got 1.5",
    );
    expect(configError("- 1")).toBe("(root): expected a mapping, got a list");
  });

  it("words a bad duration exactly as the SPEC does", () => {
    const yaml = `subscriptions:
  - ${sub()}
  - { name: t, subjects: [x], url: "https://x.example", rate_limit: { requests: 5, per: soon } }`;
    expect(configError(yaml)).toBe('subscriptions[1].rate_limit.per: expected a duration like "1s"');
  });

  it("lists several problems on one line, separated by semicolons", () => {
    expect(configError("server: { port: -1 }\nlog: { format: xml }")).toBe(
      'server.port: expected at least 0, got -1; log.format: expected one of "auto", "json", "pretty", got "xml"',
    );
  });

  it("checks cron expressions, subjects, names and URLs", () => {
    expect(configError("stock: { delta: { schedule: every minute } }")).toBe(
      'stock.delta.schedule: expected a cron expression like "*/2 * * * *"',
    );
    const message = configError('subscriptions: [{ name: Bad, subjects: ["order..x"], url: "ftp://x" }]');
    expect(message).toContain("subscriptions[0].name: expected lowercase letters");
    expect(message).toContain(
      'subscriptions[0].subjects[0]: expected a subject like "stock.full" or "order.*"',
    );
    expect(message).toContain("subscriptions[0].url: expected an http:// or https:// URL");
    expect(configError(`subscriptions: [${sub(', headers: { "x trace": "1" }')}]`)).toBe(
      "subscriptions[0].headers.x trace: expected an HTTP header name",
    );
    expect(configError('subscriptions: [{ name: a, subjects: [], url: "https://x" }]')).toBe(
      "subscriptions[0].subjects: expected at least 1 item",
    );
  });

  it("rejects duplicate subscription names, naming the duplicate", () => {
    expect(configError(`subscriptions: [${sub()}, ${sub()}]`)).toBe(
      'subscriptions[1].name: duplicate name "s" (also subscriptions[0].name)',
    );
  });

  it("rejects duplicate columns", () => {
    expect(configError("stock: { format: { columns: [sku, location, quantity, sku] } }")).toBe(
      'stock.format.columns[3]: duplicate column "sku"',
    );
  });

  it("checks the whsec_ format by index without printing the secret", () => {
    const message = configError('server: { inbound: { secrets: ["", "hunter2-not-whsec"] } }');
    expect(message).toBe('server.inbound.secrets[1]: expected "whsec_" followed by base64');
    expect(message).not.toContain("hunter2");
    expect(configError(`subscriptions: [${sub(", secrets: [whsec_, s3cr3t]")}]`)).not.toContain("s3cr3t");
  });

  it("keeps valid secrets, drops empty ones, and accepts free-form onestock keys", () => {
    const yaml = `server: { inbound: { secrets: ["\${OMS_WEBHOOK_SECRET:-}", "${SECRET}"] } }`;
    expect(loadConfig(yaml, {}).config.server.inbound.secrets).toEqual([SECRET]);
    const onestock = 'server: { inbound: { scheme: onestock, secrets: ["plain-key"] } }';
    expect(loadConfig(onestock, {}).config.server.inbound.secrets).toEqual(["plain-key"]);
  });

  it("never prints a secret given where a different type was expected", () => {
    expect(configError("server: { admin_token: [tok-123] }")).toBe(
      "server.admin_token: expected a string, got a list",
    );
    expect(configError("server: { inbound: { secrets: [12345678] } }")).toBe(
      "server.inbound.secrets[0]: expected a string, got a number",
    );
  });

  it("requires smtp.url when a mailto: target exists", () => {
    const yaml =
      "notifications: { on_failure: [https://hooks.example/x], on_deactivation: [mailto:ops@example.com] }";
    expect(configError(yaml)).toBe(
      "notifications.on_deactivation[0]: mailto: targets need notifications.smtp.url (an smtp:// URL)",
    );
    const withSmtp = `${yaml.slice(0, -2)}, smtp: { url: "smtp://mail.example:25" } }`;
    expect(loadConfig(withSmtp, {}).config.notifications.on_deactivation).toEqual(["mailto:ops@example.com"]);
    expect(configError("notifications: { on_failure: [ops@example.com] }")).toBe(
      "notifications.on_failure[0]: expected an http:// or https:// URL, or mailto:address",
    );
  });

  it("requires every subscription timeout to be shorter than delivery.lease", () => {
    const slow = '{ name: slow, subjects: [x], url: "https://x.example", timeout: 30 }';
    expect(configError(`delivery: { lease: 30s }\nsubscriptions: [${sub()}, ${slow}]`)).toBe(
      "subscriptions[1].timeout: must be shorter than delivery.lease (30s), got 30s",
    );
  });

  it("reports a YAML syntax error with its line and column", () => {
    expect(configError("server:\n  port: 1\n  port: 2")).toBe(
      "YAML syntax error at line 3, column 3: Map keys must be unique",
    );
    expect(configError("a: [1\nb: 2")).toMatch(/^YAML syntax error at line 2, column 1: /);
  });
});

describe("loadConfig: warnings", () => {
  const deltaWarnings = (schedule: string) =>
    loadConfig(`stock: { delta: { schedule: "${schedule}" } }`, {}).warnings;

  it.each(["*/2 * * * *", "* * * * *", "*/5 * * * *", "0 */3 * * * *", "0-59/4 * * * *"])(
    "accepts %j quietly",
    (schedule) => {
      expect(deltaWarnings(schedule)).toEqual([]);
    },
  );

  it("warns when the delta runs more often than every minute", () => {
    expect(deltaWarnings("*/10 * * * * *")).toEqual([
      'stock.delta.schedule "*/10 * * * * *" runs as often as every 10s; deltas are meant to run every 1 to 5 minutes',
    ]);
  });

  it("warns when the delta can leave more than 5 minutes between runs", () => {
    expect(deltaWarnings("*/10 * * * *")).toEqual([
      'stock.delta.schedule "*/10 * * * *" leaves up to 10m between runs; deltas are meant to run every 1 to 5 minutes',
    ]);
    // every 7 minutes wraps at the hour: 56 -> 0 is 4 minutes, but 0 -> 7 is 7
    expect(deltaWarnings("*/7 * * * *")).toHaveLength(1);
    // office hours only: a long gap overnight
    expect(deltaWarnings("*/2 8-18 * * *")[0]).toContain("leaves up to 13h2m");
    expect(deltaWarnings("*/2 * * * 1-5")[0]).toContain("leaves up to 1d");
  });
});

describe("redaction", () => {
  const yaml = `
database: { url: "postgres://app:db-pass-1@db.internal:5432/stock" }
source: { url: "host=src.internal password=src-pass-2 dbname=inv" }
server:
  admin_token: admin-token-3-of-the-test
  inbound: { secrets: ["${SECRET}"] }
subscriptions:
  - name: s
    subjects: [stock.full]
    url: "https://user:url-pass-4@oms.example.com/stock?api_key=query-key-5"
    headers: { Authorization: "Bearer bearer-6", X-Api-Key: header-key-7, X-Trace: visible }
    secrets: [whsec_c3ViLXNlY3JldA==]
notifications:
  on_failure: ["https://ops:notify-pass-8@hooks.example.com/x"]
  smtp: { url: "smtp://mailer:smtp-pass-9@mail.example.com:587" }`;

  it("leaves no secret in the redacted config", () => {
    const { config } = loadConfig(yaml, {});
    const text = JSON.stringify(redactConfig(config));
    for (const secret of [
      "db-pass-1",
      "src-pass-2",
      "admin-token-3",
      SECRET,
      "url-pass-4",
      "query-key-5",
      "bearer-6",
      "header-key-7",
      "c3ViLXNlY3JldA",
      "notify-pass-8",
      "smtp-pass-9",
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain("postgres://app:[redacted]@db.internal:5432/stock");
    expect(text).toContain('"X-Trace":"visible"');
    expect(text).toContain('"admin_token":"[redacted]"');
  });

  it("copies rather than changes the config, and keeps an empty admin token visible as empty", () => {
    const { config } = loadConfig("", {});
    const redacted = redactConfig(config) as { server: { admin_token: string } };
    expect(redacted.server.admin_token).toBe("");
    expect(redacted).not.toBe(config);
    expect(redacted).toEqual(JSON.parse(JSON.stringify(config)));
  });

  it("masks secrets in arbitrary text", () => {
    expect(redactString("connect postgres://u:p@ss@h/db failed")).toBe(
      "connect postgres://u:[redacted]@h/db failed",
    );
    expect(redactString(`signing with ${SECRET}.`)).toBe("signing with whsec_[redacted].");
    expect(redactString("authorization: Bearer abc.def")).toBe("authorization: Bearer [redacted]");
    expect(redactString("GET /x?token=t0k&page=2")).toBe("GET /x?token=[redacted]&page=2");
    expect(redactString("https://example.com:8443/path")).toBe("https://example.com:8443/path");
  });
});

describe("the shipped config/stock-sync.yaml", () => {
  it("loads with an empty environment and runs the demo", () => {
    const { config, warnings } = loadConfig(SHIPPED, {});
    expect(warnings).toEqual([]);
    expect(config.database.url).toBe("");
    expect(config.source.url).toBe("");
    expect(config.stock.simulator.enabled).toBe(true);
    expect(config.server).toMatchObject({ host: "127.0.0.1", port: 8080, admin_token: "" });
    expect(config.server.inbound.secrets).toEqual([]);
    expect(config.subscriptions.map((s) => [s.name, s.url, s.subjects, s.ordering])).toEqual([
      ["oms-stock", "file://./out/stock", ["stock.full", "stock.delta"], "fifo"],
      ["erp-orders", "file://./out/orders", ["order.*"], "key"],
    ]);
  });

  it("picks up the documented environment variables", () => {
    const env = {
      DATABASE_URL: "postgres://app:pw@db/state",
      SOURCE_DATABASE_URL: "postgres://app:pw@db/inventory",
      STOCK_SYNC_ADMIN_TOKEN: "admin-token-of-the-test",
      OMS_WEBHOOK_SECRET: SECRET,
    };
    const { config } = loadConfig(SHIPPED, env);
    expect(config.database.url).toBe(env.DATABASE_URL);
    expect(config.server.admin_token).toBe("admin-token-of-the-test");
    expect(config.server.inbound.secrets).toEqual([SECRET]);
  });
});
