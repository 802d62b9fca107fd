#!/usr/bin/env node
// tsdpo command line. Thin: parse arguments, call the library, print. Errors a user can fix (TsdpoError) are
// printed as one `error:` line with a non-zero exit and no stack trace; TSDPO_DEBUG=1 shows stacks.

import { TsdpoError, configError } from "../errors.js";
import { closest } from "../suggest.js";
import { parseCommandArgs } from "./args.js";
import { commands } from "./commands.js";

const USAGE = `tsdpo — Direct Preference Optimization for language models, in TypeScript

usage: tsdpo <command> [options]

commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join("\n")}

Start with \`tsdpo demo\`. Run \`tsdpo <command> --help\` for the options of a command; options take
\`--key value\` or \`--key=value\`, in kebab-case or snake_case.
`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? rest[0] : undefined;
    if (topic && commands[topic]) {
      process.stdout.write(commands[topic].help + "\n");
      return 0;
    }
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  if (name === "--version") {
    process.stdout.write("tsdpo 0.1.0\n");
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    const hint = closest(name, Object.keys(commands));
    throw configError(`unknown command "${name}"${hint ? ` (did you mean \`tsdpo ${hint}\`?)` : ""}; run \`tsdpo --help\` for the list`);
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(cmd.help + "\n");
    return 0;
  }
  const parsed = parseCommandArgs(name, rest, cmd.options);
  return (await cmd.run(parsed.values, parsed.positionals)) ?? 0;
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
