export { formatDuration, parseDuration, parseSize } from "./duration.ts";
export { type LoadedConfig, loadConfig } from "./load.ts";
export { durationsAsText } from "./print.ts";
export { originOnly, redactConfig, redactString } from "./redact.ts";
export { type Config, type SubscriptionConfig, usesDemoSource } from "./schema.ts";
