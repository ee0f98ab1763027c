/**
 * The `job:` block of a subscription (issue 15): an OMS that accepts an import and applies it
 * later, described as up to four HTTP steps. schema.ts adds the block to Subscription and calls
 * `checkJob`; the rules live here, beside the runner.
 */
import { z } from "zod";
import { compileTemplate } from "../formats/template.ts";

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const EXPR = /\{\{([\s\S]*?)\}\}/g;

/** The JSONata expressions inside `{{…}}` of a url or header value. */
export const expressionsIn = (text: string) => [...text.matchAll(EXPR)].map((m) => m[1]!.trim());

const headerValues = z.record(
  z.string().regex(HEADER_NAME, "expected an HTTP header name"),
  z.preprocess((v) => (typeof v === "number" || typeof v === "boolean" ? String(v) : v), z.string()),
);

/**
 * One request of the job. `url` and header values are text with `{{expression}}` parts; `body`
 * is one JSONata expression whose result is sent as JSON. Absent `url`/`method`/`body` in `send`
 * mean the subscription's own request, as without a job.
 */
const Step = z.strictObject({
  url: z.string().min(1).optional(),
  method: z.enum(["GET", "POST", "PUT", "PATCH"]).optional(),
  headers: headerValues.default({}),
  body: z.string().min(1).nullable().optional(),
});

export function jobSchema<D extends z.ZodType<number, unknown>>(duration: D) {
  return z.strictObject({
    open: Step.optional(),
    send: Step.prefault({}),
    close: Step.optional(),
    poll: z.strictObject({
      url: z.string().min(1),
      method: z.enum(["GET", "POST"]).default("GET"),
      headers: headerValues.default({}),
      body: z.string().min(1).nullable().optional(),
      done_when: z.string().min(1),
      failed_when: z.string().min(1).nullable().optional(),
      errors: z.string().min(1).nullable().optional(),
      interval: duration.prefault("5s" as z.input<D>),
      give_up_after: duration.prefault("1h" as z.input<D>),
    }),
  });
}

export type JobStep = z.output<typeof Step>;
export type PollConfig = JobStep & {
  url: string;
  done_when: string;
  failed_when?: string | null;
  errors?: string | null;
  /** ms */
  interval: number;
  /** ms */
  give_up_after: number;
};
export type JobConfig = { open?: JobStep; send: JobStep; close?: JobStep; poll: PollConfig };

type SubLike = { url: string; ordering?: string; job?: JobConfig };

/**
 * Cross-field rules, reported at `subscriptions[i].job…`: every expression compiles, the
 * destination is http(s), and `open`/`close` (one OMS job per run) only under fifo ordering.
 */
export function checkJob(sub: SubLike, ctx: z.RefinementCtx, at: (string | number)[]): void {
  const job = sub.job;
  if (!job || typeof job !== "object" || !job.poll) return;
  const where = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: "custom", path: [...at, "job", ...path], message });
  const compiles = (text: string | null | undefined, path: (string | number)[]) => {
    if (!text) return;
    try {
      compileTemplate(text);
    } catch (err) {
      where(path, (err as Error).message);
    }
  };
  const texts = (step: JobStep | undefined, name: string) => {
    if (!step) return;
    for (const e of expressionsIn(step.url ?? "")) compiles(e, [name, "url"]);
    for (const [h, v] of Object.entries(step.headers))
      for (const e of expressionsIn(v)) compiles(e, [name, "headers", h]);
    compiles(step.body, [name, "body"]);
  };
  texts(job.open, "open");
  texts(job.send, "send");
  texts(job.close, "close");
  texts(job.poll, "poll");
  for (const key of ["done_when", "failed_when", "errors"] as const) compiles(job.poll[key], ["poll", key]);
  for (const key of ["open", "close"] as const) {
    if (job[key] && !job[key]!.url)
      where([key, "url"], "required: the request that opens or closes the OMS's job");
  }
  if (typeof sub.url === "string" && !/^https?:\/\//.test(sub.url))
    where([], `an import job talks HTTP: expected an http:// or https:// url, got ${sub.url.split(":")[0]}:`);
  if ((job.open || job.close) && sub.ordering && sub.ordering !== "fifo")
    where(
      [],
      `open and close make one OMS job per run, whose parts must go in order: expected ordering: fifo (got ${sub.ordering})`,
    );
  if (job.poll.give_up_after < job.poll.interval)
    where(["poll", "give_up_after"], "must be at least poll.interval");
}
