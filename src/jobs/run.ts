/**
 * One attempt of a message under a `job:` block (issue 15): open (once per run), send, close
 * (after the last part), then poll until the OMS says done or failed. Runs inside the worker's
 * attempt, so the lease, fifo order and the attempt's fencing cover the whole job. The OMS's
 * answers are stored as they come (state.ts): an attempt cut short (pause, shutdown, lost lease,
 * kill -9) leaves the job `polling`, and the next attempt polls it again instead of re-sending.
 */
import type { Clock } from "../clock.js";
import type { Db } from "../db/db.js";
import { answeredBy } from "../outbox/answer.js";
import type { DeliveryRow } from "../outbox/queries.js";
import { notifyOnce } from "../outbox/outcome.js";
import { buildRequest } from "../outbox/request.js";
import type { Slot } from "../outbox/limiter.js";
import { type ErrorClass, isDelivered } from "../outbox/retry.js";
import type { OutboundRequest, Sender, SendResult } from "../outbox/send.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import type { JobStep } from "./config.ts";
import { evaluate, fill, JobTemplateError, parseJson, renderBody } from "./render.ts";
import {
  endJob,
  loadJob,
  markStopped,
  openedRun,
  recordJobRequest,
  recordPoll,
  saveOpenedRun,
  startJob,
  startPolling,
} from "./state.ts";
import { gaveUp, judge, rejectedRows } from "./verdict.ts";

/** Bytes read of a job step's reply: a poll may list many rejected records. */
const JOB_REPLY_CAP = 4 * 1024 * 1024;

export type JobContext = {
  db: Db;
  sender: Sender;
  /** The engine's estimate of the database's clock (answer times are on it). */
  clock: Clock;
  /** How far `clock` may be behind the database's (outbox/answer.ts). */
  clockErrorMs: () => number;
  sub: Subscription;
  row: DeliveryRow;
  /** The request the subscription sends without a job (signed for this attempt). */
  request: OutboundRequest;
  signal: AbortSignal;
  /** False once the attempt must stop (pause, shutdown, lease): the job is resumed later. */
  mayGoOn: () => boolean;
  /** The delivery is still owed (not superseded), the subscription enabled and the lease ours, in the database. */
  stillOwed: () => Promise<boolean>;
  /** For the ops.import.rejected_rows notification. */
  all: readonly Subscription[];
  notifyMinIntervalMs: number;
  wake: (names: string[]) => void;
  /**
   * A rate slot for each request of the job (open, send, close, every poll), so the receiver
   * never sees more than the subscription's rate_limit: the attempt's own slot for the first,
   * then one each. Undefined without a limit; null when the limiter closed (stopping).
   */
  takeSlot?: () => Promise<Slot | undefined | null>;
};

/** Thrown when the job must stop between requests (a rate slot refused while stopping). */
class Stopped extends Error {}

type Input = Record<string, unknown>;

/** The attempt's result (a failure names the step), or null when cut short: nothing to record. */
export async function runJob(ctx: JobContext): Promise<SendResult | null> {
  const started = performance.now();
  let out: Omit<SendResult, "durationMs"> | null;
  try {
    out = await runSteps(ctx);
  } catch (err) {
    // A template that cannot render for this message fails the attempt: recorded, on the retry
    // schedule. Thrown on, the worker took it for a database failure, recorded nothing and began
    // the job again a second later: the part sent once a second, for ever.
    if (err instanceof JobTemplateError) out = jobError(err.message, "template");
    else if (err instanceof Stopped) {
      await markStopped(ctx.db, ctx.row.id, ctx.clock.now());
      out = null;
    } else throw err;
  }
  return out && { ...out, durationMs: performance.now() - started };
}

async function runSteps(ctx: JobContext): Promise<Omit<SendResult, "durationMs"> | null> {
  const { db, sub, row, clock } = ctx;
  const input: Input = { message: messageFields(row), body: payloadJson(row) };
  const stored = await loadJob(db, row.id);
  let since: number;
  let reported = false;
  if (stored?.phase === "polling" && stored.polling_since) {
    Object.assign(input, stored.responses);
    since = new Date(stored.polling_since).getTime();
  } else if (stored?.phase === "done" && stored.polling_since) {
    // The OMS finished this job but the outcome was not recorded (the fence dropped it: the lease
    // was lost meanwhile). Sending again would import the part twice: ask the OMS about the job it
    // has, with a fresh give_up_after, and record what it says. Its rejected records were
    // reported when it ended.
    Object.assign(input, stored.responses);
    since = clock.now().getTime();
    reported = true;
  } else {
    await startJob(db, row.id, sub.name, row.headers["stock-sync-snapshot-id"] ?? null, clock.now());
    const failed = await sendSteps(ctx, input);
    if (failed) return failed;
    since = clock.now().getTime();
    const { open, send, close } = input;
    await startPolling(db, row.id, { open, send, close }, new Date(since));
  }
  return pollUntilEnd(ctx, input, since, reported);
}

/** open (unless this run's job is open already), send, close after the last part. */
async function sendSteps(ctx: JobContext, input: Input): Promise<Omit<SendResult, "durationMs"> | null> {
  const { db, sub, row, clock } = ctx;
  const job = sub.job!;
  const snapshot = row.headers["stock-sync-snapshot-id"] ?? row.message_id;
  if (job.open) {
    input.open = await openedRun(db, sub.name, snapshot);
    if (input.open === undefined) {
      const res = await request(ctx, "open", await stepRequest(ctx, job.open, input));
      if (!isDelivered(res.result)) return failedStep("open", res);
      input.open = parseJson(res.responseBody);
      await saveOpenedRun(db, sub.name, snapshot, input.open, clock.now());
    }
  }
  const res = await request(ctx, "send", await sendRequest(ctx, input));
  if (!isDelivered(res.result)) return failedStep("send", res);
  input.send = parseJson(res.responseBody);
  const [part, parts] = (row.headers["stock-sync-part"] ?? "1/1").split("/");
  if (job.close && part === parts) {
    const closed = await request(ctx, "close", await stepRequest(ctx, job.close, input));
    if (!isDelivered(closed.result)) return failedStep("close", closed);
    input.close = parseJson(closed.responseBody);
  }
  return null;
}

async function pollUntilEnd(
  ctx: JobContext,
  input: Input,
  since: number,
  reported: boolean,
): Promise<Omit<SendResult, "durationMs"> | null> {
  const { db, sub, row, clock } = ctx;
  const poll = sub.job!.poll;
  for (;;) {
    if (gaveUp(since, clock.now().getTime(), poll.give_up_after)) {
      await endJob(db, row.id, "failed", { rows: [], total: 0 }, clock.now());
      return jobError(
        `gave up after ${Math.round(poll.give_up_after / 1000)}s: the OMS's job did not finish`,
      );
    }
    await sleep(poll.interval, ctx.signal);
    // a newer full superseded the part, a pause by any process, a lost lease: stop, keep the job
    if (ctx.signal.aborted || !ctx.mayGoOn() || !(await ctx.stillOwed())) {
      await markStopped(db, row.id, clock.now());
      return null;
    }
    const res = await request(ctx, "poll", await stepRequest(ctx, poll, input));
    if (ctx.signal.aborted) return null;
    if (!isDelivered(res.result)) {
      await endJob(db, row.id, "failed", { rows: [], total: 0 }, clock.now());
      return failedStep("poll", res);
    }
    const answer = parseJson(res.responseBody);
    await recordPoll(db, row.id, answer, clock.now());
    const scope = { ...input, response: answer };
    const verdict = judge(
      poll.failed_when ? await evaluate(poll.failed_when, scope) : undefined,
      await evaluate(poll.done_when, scope),
    );
    if (verdict === "pending") continue;
    const rejected = rejectedRows(poll.errors ? await evaluate(poll.errors, scope) : undefined);
    await finish(ctx, verdict, rejected, reported);
    if (verdict === "done") return { result: res.result, responseBody: null };
    const reason = `the OMS's job failed${rejected.total ? ` (${rejected.total} records rejected)` : ""}: ${(res.responseBody ?? "").slice(0, 300)}`;
    return { ...jobError(reason), responseBody: res.responseBody };
  }
}

/** The job's end, and news of what the OMS rejected (throttled like `failing`), together. */
async function finish(
  ctx: JobContext,
  verdict: "done" | "failed",
  rejected: ReturnType<typeof rejectedRows>,
  reported: boolean,
) {
  const { db, sub, row, clock } = ctx;
  const wake = await db.tx(async (tx) => {
    await endJob(tx, row.id, verdict, rejected, clock.now());
    if (rejected.total === 0 || reported) return [];
    const first = rejected.rows
      .slice(0, 5)
      .map((r) => `${r.sku ?? "?"}@${r.location ?? "?"}: ${r.reason}`)
      .join("; ");
    const detail = `${rejected.total} record(s) rejected in delivery ${row.id} (webhook-id ${row.message_id}); first: ${first}`;
    const notifyCtx = { all: ctx.all, now: clock.now(), notifyMinIntervalMs: ctx.notifyMinIntervalMs };
    return notifyOnce(tx, notifyCtx, "import_rejected", { detail }, sub.name);
  });
  if (wake.length) ctx.wake(wake);
}

const jobError = (message: string, errorClass: ErrorClass = "other"): Omit<SendResult, "durationMs"> => ({
  result: { kind: "error", errorClass, message: `import job: ${message}` },
  responseBody: null,
});

/** A failed step: an HTTP answer stays what it is (4xx/5xx, Retry-After); an error names the step. */
function failedStep(step: string, res: Omit<SendResult, "durationMs">): Omit<SendResult, "durationMs"> {
  if (res.result.kind === "response") return res;
  return { ...res, result: { ...res.result, message: `import job ${step}: ${res.result.message}` } };
}

async function request(ctx: JobContext, step: string, req: OutboundRequest) {
  const slot = ctx.takeSlot ? await ctx.takeSlot() : undefined;
  if (slot === null) throw new Stopped();
  // the wait for a slot can be long: a pause or a lost lease meanwhile stops the job
  if (slot && (ctx.signal.aborted || !ctx.mayGoOn())) {
    slot.cancel();
    throw new Stopped();
  }
  slot?.sent();
  // the answer time counts from here, as an attempt's does (worker.ts #send)
  const started = performance.now();
  const at = ctx.clock.now();
  const clockError = ctx.clockErrorMs();
  try {
    return await ctx.sender.send({ ...req, signal: ctx.signal, responseCap: JOB_REPLY_CAP, fileName: step });
  } finally {
    const answered = answeredBy(at, performance.now() - started, clockError);
    slot?.answered();
    await recordAnswer(ctx, answered);
  }
}

/**
 * A rate-limited job's request is recorded before the next one goes: the attempt's row stands
 * for one request at most, and for none when the attempt is cut short while polling, so without
 * these a restart's window would miss the job's polls. An unclean takeover still assumes the
 * request on the wire unrecorded (engine.ts). Without a limit nothing reads them.
 */
async function recordAnswer(ctx: JobContext, answered: Date): Promise<void> {
  const limit = ctx.sub.rate_limit;
  if (!limit) return;
  await recordJobRequest(ctx.db, ctx.sub.name, answered, limit.per + ctx.sub.timeout);
}

/** The subscription's own request, with what `send` overrides (a body template is signed anew). */
async function sendRequest(ctx: JobContext, input: Input): Promise<OutboundRequest> {
  const { sub, row, request: base } = ctx;
  const step = sub.job!.send;
  let req = base;
  if (step.body) {
    const payload = Buffer.from(await renderBody(step.body, input));
    req = buildRequest(sub, { ...row, payload, content_type: "application/json" }, ctx.clock.now());
  }
  const headers = { ...req.headers };
  for (const [k, v] of Object.entries(step.headers)) headers[k.toLowerCase()] = await fill(v, input, false);
  return {
    ...req,
    url: step.url ? await fill(step.url, input, true) : req.url,
    method: step.method ?? req.method,
    headers,
  };
}

/** open, close and poll: the subscription's headers, then the step's; a body is JSON. */
async function stepRequest(ctx: JobContext, step: JobStep, input: Input): Promise<OutboundRequest> {
  const { sub } = ctx;
  const body = step.body ? Buffer.from(await renderBody(step.body, input)) : Buffer.alloc(0);
  const headers: Record<string, string> = { "user-agent": "stock-sync/0.1", ...sub.headers };
  if (step.body) headers["content-type"] = "application/json";
  for (const [k, v] of Object.entries(step.headers)) headers[k.toLowerCase()] = await fill(v, input, false);
  return {
    url: await fill(step.url ?? sub.url, input, true),
    method: step.method ?? (step.body ? "POST" : "GET"),
    headers,
    body,
    timeoutMs: sub.timeout,
    fileName: "",
  };
}

/** What templates know of the message: its webhook-id, subject and stock fields. */
function messageFields(row: DeliveryRow): Input {
  const [part, parts] = (row.headers["stock-sync-part"] ?? "1/1").split("/").map(Number);
  return {
    id: row.message_id,
    subject: row.subject,
    kind: row.headers["stock-sync-kind"] ?? null,
    snapshot_id: row.headers["stock-sync-snapshot-id"] ?? null,
    sequence: row.sequence,
    part,
    parts,
  };
}

/** The message's body as JSON when it is JSON (a template may pick ids from it), else null. */
function payloadJson(row: DeliveryRow): unknown {
  if (!row.content_type.includes("json")) return null;
  const text = Buffer.from(row.payload).toString("utf8");
  return row.content_type.includes("ndjson")
    ? text
        .split("\n")
        .filter(Boolean)
        .map((l) => parseJson(l))
    : parseJson(text);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
