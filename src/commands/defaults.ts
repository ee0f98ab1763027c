// Constants the command line needs before any command runs. Kept apart from context.ts, which
// loads the config schema (zod, yaml, ...) and the logger: `--help`, `--version` and usage
// errors load none of that.

export const DEFAULT_CONFIG = "config/stock-sync.yaml";
