// Judges by name, as `tsdpo iterate`'s "judge" key gives them:
//   "afinn" | "length" | "json"                      built-in rules (src/judge/builtin.ts)
//   {"regex": rule or [rules]} | {"json": schema}   built-in rules with settings
//   "module:<path>"                                  the user's own module (src/judge/module.ts)
//   "reward:<folder>"                                a Hugging Face *ForSequenceClassification reward model
//   "llm:<model>" | {"llm": "<model>", "template": "<file>"}
//                                                    a local causal LM asked which of two answers is better

import { configError } from "../errors.js";
import { afinnJudge, jsonJudge, lengthJudge, regexJudge } from "./builtin.js";
import { loadModuleJudge } from "./module.js";
import type { Judge, JudgeContext } from "./types.js";

export type { Judge, JudgeContext } from "./types.js";

const NAMES = `"afinn", "length", "json", {"regex": ...}, {"json": schema}, "module:<path>", "reward:<folder>" or "llm:<model>"`;

export async function makeJudge(spec: unknown, ctx: JudgeContext): Promise<Judge> {
  if (typeof spec === "string") {
    if (spec === "afinn") return afinnJudge();
    if (spec === "length") return lengthJudge();
    if (spec === "json") return jsonJudge(null, ctx.where);
    const m = /^(module|reward|llm):(.+)$/.exec(spec);
    if (m) {
      const [, kind, path] = m as unknown as [string, string, string];
      if (kind === "module") return loadModuleJudge(path, ctx);
      if (kind === "reward") return (await import("./reward.js")).loadRewardJudge(path, ctx);
      return (await import("./llm.js")).loadLlmJudge(path, ctx);
    }
  } else if (spec !== null && typeof spec === "object" && !Array.isArray(spec)) {
    const o = spec as Record<string, unknown>;
    const allowed = "regex" in o ? ["regex"] : "json" in o ? ["json"] : "llm" in o ? ["llm", "template"] : null;
    const extra = allowed ? Object.keys(o).filter((k) => !allowed.includes(k)) : [];
    if (extra.length) throw configError(`${ctx.where}: unknown key ${extra.map((k) => `"${k}"`).join(", ")} in the judge; it takes ${allowed!.map((k) => `"${k}"`).join(" and ")}`);
    if ("regex" in o) return regexJudge(o.regex, ctx.where);
    if ("json" in o) return jsonJudge(o.json, ctx.where);
    if (typeof o.llm === "string") {
      const opts = typeof o.template === "string" ? { template: o.template } : {};
      return (await import("./llm.js")).loadLlmJudge(o.llm, ctx, opts);
    }
  }
  throw configError(`${ctx.where}: judge ${JSON.stringify(spec)} is not one tsdpo knows; use ${NAMES}`);
}
