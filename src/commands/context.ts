import { readFile } from "node:fs/promises";
import { type Config, loadConfig } from "../config/index.js";
import { ConnectorError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";

export type CommandContext = {
  configPath: string;
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
};

export { DEFAULT_CONFIG } from "./defaults.js";

/** Reads and validates the config file once; warnings go to the log. */
export async function readConfig(ctx: CommandContext): Promise<{ config: Config; warnings: string[] }> {
  let text: string;
  try {
    text = await readFile(ctx.configPath, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConnectorError(
      "CONFIG_INVALID",
      code === "ENOENT"
        ? `config file not found: ${ctx.configPath}`
        : `cannot read ${ctx.configPath}: ${code}`,
    );
  }
  return loadConfig(text, ctx.env);
}

export async function configAndLog(ctx: CommandContext): Promise<{ config: Config; log: Logger }> {
  const { config, warnings } = await readConfig(ctx);
  const log = createLogger({ level: config.log.level, format: config.log.format, destination: ctx.stderr });
  for (const w of warnings) log.warn(`config: ${w}`);
  return { config, log };
}
