/**
 * Every HTTP error is `{ code, detail }` (SPEC §7). Handlers throw `HttpError` for expected
 * outcomes; ConnectorErrors, fastify's own errors and database outages are mapped here, in one
 * place, and anything else becomes a 500 whose cause is logged, never sent.
 */
import type { Socket } from "node:net";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ConnectorError } from "../errors.js";
import type { Logger } from "../log.js";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = "HttpError";
  }
}

/** Seconds an OMS should wait before retrying while the state database is down. */
export const RETRY_AFTER_SECONDS = 5;

const CONNECTOR_STATUS = { NOT_FOUND: 404, INVALID_INPUT: 400, STALE_STOCK: 409 } as const;

// node and pg errors that mean "no usable connection", not "the statement was wrong"
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "53300", // too many connections
  "3D000", // database does not exist
]);
const CONNECTION_MESSAGES =
  /connection terminated|timeout expired|not queryable|not currently accepting connections|connection is closed/i;

/**
 * Whether the state database is out of reach: pg.ts maps failures to get a connection, but an
 * error on a connection that dies mid-transaction reaches us as pg raised it.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (err instanceof ConnectorError) return err.code === "DATABASE_UNAVAILABLE";
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === "string" ? e.code : "";
  // class 08 = connection exception, 57P0x = server shutting down or the backend terminated
  if (CONNECTION_CODES.has(code) || code.startsWith("08") || /^57P0\d$/.test(code)) return true;
  return typeof e?.message === "string" && CONNECTION_MESSAGES.test(e.message);
}

/**
 * A client that closed its connection while its body was being read: node raises "aborted"
 * with ECONNRESET, which would otherwise read as a lost database connection.
 */
export function isClientAbort(err: unknown, req: FastifyRequest): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return (
    req.raw.readableAborted ||
    (e?.code === "ECONNRESET" && e.message === "aborted") ||
    (e?.code === "ECONNRESET" && req.raw.socket?.destroyed === true)
  );
}

/** What an error is answered with, and whether its cause goes to the log. */
export type MappedError = { error: HttpError; log?: "warn" | "error" };

export function describeError(err: unknown): MappedError {
  if (err instanceof HttpError) return { error: err };
  if (isDatabaseUnavailable(err)) {
    const error = new HttpError(
      503,
      "database_unavailable",
      "the state database is unavailable; retry later",
      {
        "retry-after": String(RETRY_AFTER_SECONDS),
      },
    );
    return { error, log: "warn" };
  }
  if (err instanceof ConnectorError && err.code in CONNECTOR_STATUS) {
    const status = CONNECTOR_STATUS[err.code as keyof typeof CONNECTOR_STATUS];
    return { error: new HttpError(status, err.code.toLowerCase(), err.message) };
  }
  const status = (err as FastifyError | null)?.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    return { error: fastifyClientError(err as FastifyError) };
  }
  return {
    error: new HttpError(500, "internal", "internal error; the connector log has the cause"),
    log: "error",
  };
}

/** fastify's messages are fixed texts (no request data), so they are safe to pass on. */
function fastifyClientError(err: FastifyError): HttpError {
  const status = err.statusCode ?? 400;
  if (status === 413) return new HttpError(413, "payload_too_large", err.message);
  if (status === 415) return new HttpError(415, "unsupported_media_type", err.message);
  return new HttpError(status, "bad_request", err.message);
}

export function sendError(reply: FastifyReply, err: HttpError): FastifyReply {
  return reply
    .code(err.status)
    .headers(err.headers)
    .type("application/json")
    .send({ code: err.code, detail: err.detail });
}

/** Error and not-found handlers for the whole server (plugins inherit them). */
export function installErrorHandlers(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    // method and route pattern only: the raw URL or headers could carry a token
    const where = { method: req.method, route: req.routeOptions.url };
    if (isClientAbort(err, req)) {
      // the client went away mid-request: nothing is wrong here, and no one reads the answer
      log.debug(where, "client aborted the request");
      return reply.code(400).send();
    }
    const { error, log: level } = describeError(err);
    if (level === "error") log.error({ err, ...where }, "request failed");
    else if (level === "warn")
      log.warn({ ...where, cause: (err as Error).message }, "state database unavailable");
    return sendError(reply, error);
  });
  app.setNotFoundHandler((req, reply) =>
    sendError(reply, new HttpError(404, "not_found", `no route for ${req.method} ${req.url.split("?")[0]}`)),
  );
}

const CLIENT_ERRORS: Record<string, [status: string, code: string, detail: string]> = {
  HPE_HEADER_OVERFLOW: [
    "431 Request Header Fields Too Large",
    "headers_too_large",
    "request headers too large",
  ],
  ERR_HTTP_REQUEST_TIMEOUT: ["408 Request Timeout", "request_timeout", "request not received in time"],
};
const MALFORMED: [string, string, string] = ["400 Bad Request", "bad_request", "malformed HTTP request"];

/**
 * For requests node's parser rejects before fastify sees them (bad header bytes, conflicting
 * lengths): the same `{ code, detail }` shape, then the connection is closed.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const [status, code, detail] = CLIENT_ERRORS[err.code ?? ""] ?? MALFORMED;
  const body = JSON.stringify({ code, detail });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
        `Connection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
