/**
 * `POST <server.inbound.path>`: order events from the OMS (SPEC §7). Checks run cheapest first
 * and each answers on its own: 415 content type (before the body is read), 413 size, 401
 * signature (over the exact raw bytes), 400 body; then intake stores and fans out (group commit:
 * one statement for the requests that arrived together).
 * 202 `{id}` when stored, 200 `{id, duplicate: true}` when the id was already in the inbox.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Clock } from "../clock.js";
import type { Db } from "../db/db.js";
import { ConnectorError } from "../errors.js";
import { HttpError } from "../http/errors.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics/metrics.js";
import type { OnestockScheme } from "../subscriptions/signing.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { parseEvent } from "./event.js";
import { createIntake, type Intaker } from "./intake.js";
import { checkSignature, checkSignatureHeaders, type InboundSettings } from "./verify.js";

export type InboundDeps = {
  db: Db;
  log: Logger;
  clock: Clock;
  metrics: Pick<Metrics, "countInbound" | "observeInboundBatch" | "observeInboundPhases">;
  settings: InboundSettings;
  subscriptions: readonly Subscription[];
  /** How OneStock signatures are formed, if a tenant differs from the default. */
  onestock?: OnestockScheme;
};

// application/json or a structured +json type; a charset, if given, must be UTF-8 (RFC 8259)
const JSON_MEDIA = /^application\/(?:[a-z0-9!#$&^_.-]+\+)?json$/;
const UTF8 = /^"?utf-8"?$/;

/** The media type (lower case, no parameters) when the request says JSON in UTF-8. */
export function jsonMediaType(header: string | undefined): string | undefined {
  if (!header) return undefined;
  if (header === "application/json") return header; // what nearly every sender sends, as is
  const [type = "", ...params] = header.split(";").map((p) => p.trim().toLowerCase());
  if (!JSON_MEDIA.test(type)) return undefined;
  for (const param of params) {
    const [name, value = ""] = param.split("=", 2).map((p) => p.trim());
    if (name === "charset" && !UTF8.test(value)) return undefined;
  }
  return type;
}

/** Registers the inbound route in its own scope, so its raw-body parser touches no other route. */
export function registerInbound(app: FastifyInstance, deps: InboundDeps): void {
  if (deps.settings.secrets.length === 0) {
    deps.log.warn(
      { path: deps.settings.path },
      "server.inbound.secrets is empty: every inbound event will be refused (401)",
    );
  }
  if (deps.settings.scheme === "onestock" && deps.onestock?.signed === "timestamp") {
    // a signature over the timestamp alone vouches for no body: anyone who saw one request could
    // send any event for the next `tolerance`
    throw new ConnectorError(
      "CONFIG_INVALID",
      'OneStock signatures over the timestamp alone are refused: they authenticate no body (use "timestamp.body")',
    );
  }
  // one per server: batches are written in order, and requests wait for theirs together
  const intaker = createIntake({
    db: deps.db,
    log: deps.log,
    subscriptions: deps.subscriptions,
    onBatch: (size) => deps.metrics.observeInboundBatch(size),
    onWritten: (phases) => deps.metrics.observeInboundPhases(phases),
    inFlight: deps.settings.batches_in_flight,
  });
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    // Any type: the onRequest check has already refused what is not JSON, and the signature
    // needs the bytes exactly as sent.
    scope.addContentTypeParser(
      "*",
      { parseAs: "buffer", bodyLimit: deps.settings.max_body },
      (_req, body, done) => done(null, body),
    );
    // (hooks run for every event: they take a callback, as an async one costs a promise each)
    scope.addHook("onRequest", (req, reply, done) => {
      if (!jsonMediaType(req.headers["content-type"])) {
        return done(
          new HttpError(415, "unsupported_media_type", "the body must be application/json (UTF-8)"),
        );
      }
      try {
        // in the documented order, 413 before 401: a declared length over the limit first
        if (Number(req.headers["content-length"] ?? 0) > deps.settings.max_body) {
          throw new HttpError(413, "payload_too_large", "Request body is too large");
        }
        checkSignatureHeaders(deps.settings, req.headers, deps.clock.now(), deps.onestock);
      } catch (err) {
        // the body is never read: close rather than wait for (or drain) it
        reply.header("connection", "close");
        return done(err as Error);
      }
      done();
    });
    scope.addHook("onResponse", (_req, reply, done) => {
      deps.metrics.countInbound(reply.statusCode);
      done();
    });
    scope.post(deps.settings.path, (req, reply) => receive(deps, intaker, req, reply));
  });
}

async function receive(deps: InboundDeps, intaker: Intaker, req: FastifyRequest, reply: FastifyReply) {
  const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const now = deps.clock.now();
  // only signed material names the event: an unsigned header (webhook-id under onestock) would
  // let the same signed bytes in again under every new value
  const { signedId } = checkSignature(deps.settings, req.headers, raw, now, deps.onestock);
  const event = parseEvent(raw, signedId, deps.settings.order_id_field);
  const contentType = jsonMediaType(req.headers["content-type"]) ?? "application/json";
  const result = await intaker.intake({ event, payload: { body: raw, contentType }, now });
  if (result.duplicate) return reply.code(200).send({ id: event.id, duplicate: true });
  if (result.subscriptions.length === 0) {
    deps.log.info({ event: event.id, subject: event.subject }, "inbound event matches no subscription");
  }
  return reply.code(202).send({ id: event.id });
}
