export { formatDuration, parseDuration, parseSize } from "./duration.ts";
export { type LoadedConfig, loadConfig } from "./load.ts";
export { originOnly, redactConfig, redactString } from "./redact.ts";
export type { Config, SubscriptionConfig } from "./schema.ts";
