// The judges tsdpo ships: rules that need no model. Each scores one completion; higher is better.
//
//   afinn             the AFINN-165 sentiment sum of the completion (the demo's reward)
//   length            the completion's length in characters (a sanity judge: DPO on it should lengthen answers)
//   {"regex": [...]}  Σ weight · (number of matches) over a list of {pattern, flags?, weight?} (weight 1 by default)
//   json / {"json": schema}
//                     1 when the completion (trimmed) parses as JSON and, with a schema, validates against it
//                     (JSON Schema draft-07 or 2020-12 through ajv); 0 otherwise

import { Ajv, type ValidateFunction } from "ajv";
import { configError } from "../errors.js";
import { afinnReward } from "../demo/afinn.js";
import type { Judge } from "./types.js";

export function afinnJudge(): Judge {
  return { name: "afinn", score: async (_p, c) => afinnReward(c) };
}

export function lengthJudge(): Judge {
  return { name: "length", score: async (_p, c) => c.length };
}

export interface RegexRule {
  pattern: string;
  flags?: string;
  weight?: number;
}

export function regexJudge(rules: unknown, where: string): Judge {
  const list = Array.isArray(rules) ? rules : [rules];
  if (list.length === 0) throw configError(`${where}: "regex" needs at least one rule {"pattern": "...", "weight": 1}`);
  const compiled = list.map((r, i) => {
    const at = `${where}: regex[${i}]`;
    const rule: RegexRule = typeof r === "string" ? { pattern: r } : (r as RegexRule);
    if (rule === null || typeof rule !== "object" || typeof rule.pattern !== "string")
      throw configError(`${at}: expected a pattern string or {"pattern": "...", "flags": "i", "weight": 1}`);
    const weight = rule.weight ?? 1;
    if (typeof weight !== "number" || !Number.isFinite(weight)) throw configError(`${at}: "weight" must be a finite number`);
    let re: RegExp;
    try {
      // always global: the score counts every match
      re = new RegExp(rule.pattern, (rule.flags ?? "").replace(/g/g, "") + "g");
    } catch (e) {
      throw configError(`${at}: pattern ${JSON.stringify(rule.pattern)} is not a valid regular expression (${(e as Error).message})`);
    }
    return { re, weight };
  });
  return {
    name: `regex(${compiled.map((c) => `${c.re.source}×${c.weight}`).join(", ")})`,
    score: async (_p, c) => compiled.reduce((s, { re, weight }) => s + weight * (c.match(re)?.length ?? 0), 0),
  };
}

export function jsonJudge(schema: unknown, where: string): Judge {
  let validate: ValidateFunction | null = null;
  if (schema !== null && schema !== undefined && schema !== true) {
    if (typeof schema !== "object" || Array.isArray(schema)) throw configError(`${where}: "json" takes a JSON Schema object (or true for "any JSON")`);
    try {
      validate = new Ajv({ strict: false }).compile(schema as object);
    } catch (e) {
      throw configError(`${where}: the JSON Schema does not compile (${(e as Error).message})`);
    }
  }
  return {
    name: validate ? "json(schema)" : "json",
    score: async (_p, c) => {
      let v: unknown;
      try {
        v = JSON.parse(c.trim());
      } catch {
        return 0;
      }
      return validate === null || validate(v) ? 1 : 0;
    },
  };
}
