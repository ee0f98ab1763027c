/** Error codes the CLI and HTTP layers map to exit codes and statuses. */
export type ErrorCode =
  | "CONFIG_INVALID"
  | "DATABASE_UNAVAILABLE"
  | "NOT_AVAILABLE"
  | "NOT_FOUND"
  | "INVALID_INPUT"
  | "SIGNATURE_INVALID"
  /** A replay of stock older than stock already delivered (outbox/admin.ts). */
  | "STALE_STOCK";

export class ConnectorError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    opts?: ErrorOptions,
  ) {
    super(message, opts);
    this.name = "ConnectorError";
  }
}

/** SPEC §2: 2 for bad usage or config, 1 for everything else. */
export function exitCodeFor(err: unknown): number {
  return err instanceof ConnectorError && err.code === "CONFIG_INVALID" ? 2 : 1;
}
