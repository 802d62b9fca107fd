// The one command-line parser every command uses. Node's util.parseArgs splits argv into tokens; this file adds
// what users expect and parseArgs alone does not give:
//   --key value and --key=value          (also for values that start with a dash: --beta -0.5, --max_steps -1)
//   --max-steps and --max_steps          (kebab-case and snake_case name the same option, in every command)
//   --flag, --flag=false, --flag false   (a boolean option takes an optional true/false)
//   "did you mean --max_steps?"          (for an unknown option, from the command's own list)

import { parseArgs } from "node:util";
import { configError } from "../errors.js";
import { closest } from "../suggest.js";

export interface OptionDef {
  type: "string" | "boolean";
  short?: string;
}
export type OptionSpec = Record<string, OptionDef>;
export type Values = Record<string, string | boolean | undefined>;

export interface ParsedArgs {
  /** Keyed by the option's name as the command declares it, whichever spelling was typed. */
  values: Values;
  positionals: string[];
}

const norm = (name: string): string => name.replace(/-/g, "_");

/** The other spelling of a name: max-steps ↔ max_steps (names without either come back unchanged). */
const otherSpelling = (name: string): string => (name.includes("_") ? name.replace(/_/g, "-") : name.replace(/-/g, "_"));

/**
 * Parses `argv` against `spec` for command `command` (used in messages). Unknown options, a missing value and a
 * boolean given something other than true/false are errors that name the option and point at `--help`.
 */
export function parseCommandArgs(command: string, argv: readonly string[], spec: OptionSpec): ParsedArgs {
  const byNorm = new Map<string, string>();
  const options: NonNullable<Parameters<typeof parseArgs>[0]>["options"] = {};
  for (const [name, def] of Object.entries(spec)) {
    byNorm.set(norm(name), name);
    for (const spelling of new Set([name, otherSpelling(name)]))
      options[spelling] = { type: def.type, ...(def.short && spelling === name ? { short: def.short } : {}) };
  }
  const help = `run \`tsdpo ${command} --help\` for its options`;
  // strict: false so that parseArgs hands back unknown options as tokens (we name them, with a suggestion) and
  // takes a dash-led value after a string option as its value instead of calling it ambiguous.
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const values: Values = {};
  const positionals: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind === "positional") {
      positionals.push(t.value);
      continue;
    }
    if (t.kind === "option-terminator") continue;
    const name = byNorm.get(norm(t.name));
    if (name === undefined) {
      const hint = closest(t.name, Object.keys(spec));
      throw configError(`${command}: unknown option ${t.rawName}${hint ? ` (did you mean --${hint}?)` : ""}; ${help}`);
    }
    if (spec[name]!.type === "string") {
      // parseArgs takes the next token whatever it is; a following option means the value was forgotten.
      if (t.value === undefined || (!t.inlineValue && t.value.startsWith("--")))
        throw configError(`${command}: ${t.rawName} needs a value (${t.rawName} <value> or ${t.rawName}=<value>); ${help}`);
      values[name] = t.value;
      continue;
    }
    let value: string | undefined = t.inlineValue ? t.value : undefined;
    const next = tokens[i + 1];
    if (value === undefined && next?.kind === "positional" && (next.value === "true" || next.value === "false")) {
      value = next.value;
      i++;
    }
    if (value !== undefined && value !== "true" && value !== "false")
      throw configError(`${command}: ${t.rawName}=${value}: expected true or false (or ${t.rawName} alone for true)`);
    values[name] = value !== "false";
  }
  return { values, positionals };
}
