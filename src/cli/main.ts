#!/usr/bin/env node
// tsdpo command line. Thin: parse arguments, call the library, print. Errors a user can fix (TsdpoError) are
// printed as one `error:` line with a non-zero exit and no stack trace; TSDPO_DEBUG=1 shows stacks.

import { parseArgs, type ParseArgsConfig } from "node:util";
import { TsdpoError, configError } from "../errors.js";
import { commands } from "./commands.js";

const USAGE = `tsdpo — Direct Preference Optimization for language models, in TypeScript

usage: tsdpo <command> [options]

commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join("\n")}

Run \`tsdpo <command> --help\` for the options of a command.
`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  if (name === "--version") {
    process.stdout.write("tsdpo 0.1.0\n");
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) throw configError(`unknown command "${name}"; run \`tsdpo --help\` for the list`);
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(cmd.help + "\n");
    return 0;
  }
  if (cmd.rawArgs) return (await cmd.run({}, rest)) ?? 0;
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options: cmd.options as ParseArgsConfig["options"], allowPositionals: true, strict: true });
  } catch (e) {
    throw configError(`${name}: ${(e as Error).message.replace(/\. To specify.*$/s, "")}. Run \`tsdpo ${name} --help\``);
  }
  return (await cmd.run(parsed.values as Record<string, string | boolean | undefined>, parsed.positionals)) ?? 0;
}

const debug = process.env.TSDPO_DEBUG !== undefined && process.env.TSDPO_DEBUG !== "0";

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof TsdpoError) {
      // One line whatever the message holds (JSON.parse quotes the offending text, newlines included).
      process.stderr.write(`error: ${e.message.replace(/\s*[\r\n]+\s*/g, " ")}\n`);
      if (debug) process.stderr.write(`${e.stack}\n`);
      process.exitCode = e.kind === "config" ? 2 : 1;
    } else {
      // Not a user error: a bug in tsdpo. Keep the stack so it can be reported.
      process.stderr.write(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 70;
    }
  },
);
