// `module:<path>`: a judge written by the user, as a JavaScript or TypeScript module exporting
//   score(prompt, completion) → number            (higher is better), or
//   compare(prompt, a, b) → number                 (P(a ≻ b) in [0, 1]; 0.5 = tie)
// synchronous or async, as named exports or on a default export object. Anything a rule, a checker or a call to
// a service can do goes here. Every answer is checked: a throw or a non-number stops the run with one line that
// names the module, the call and the value.
//
// A .ts module runs as is where Node strips types (22.6+); elsewhere tsdpo compiles it with the TypeScript compiler
// it was installed with (a development install has it), without type checking, into a temporary folder.

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { configError, inputError } from "../errors.js";
import { packageRoot } from "../paths.js";
import type { Judge, JudgeContext } from "./types.js";

type Fn = (...args: string[]) => unknown;

export async function loadModuleJudge(path: string, ctx: JudgeContext): Promise<Judge> {
  const file = resolve(ctx.baseDir, path);
  if (!existsSync(file)) throw inputError(`${ctx.where}: judge module ${JSON.stringify(path)} (${file}) does not exist`);
  const url = /\.(m|c)?ts$/.test(file) && !(process.features as { typescript?: unknown }).typescript ? compileTs(file, ctx) : pathToFileURL(file).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (e) {
    throw inputError(`${ctx.where}: judge module ${file} failed to load: ${(e as Error).message}`);
  }
  const scope = (typeof mod.score === "function" || typeof mod.compare === "function" ? mod : (mod.default ?? {})) as Record<string, unknown>;
  const score = typeof scope.score === "function" ? (scope.score as Fn).bind(scope) : null;
  const compare = typeof scope.compare === "function" ? (scope.compare as Fn).bind(scope) : null;
  if (!score && !compare)
    throw configError(`${ctx.where}: judge module ${file} exports neither score(prompt, completion) nor compare(prompt, a, b)`);
  const name = `module:${path}`;
  const call = async (fn: Fn, what: string, args: string[], lo = -Infinity, hi = Infinity): Promise<number> => {
    let v: unknown;
    try {
      v = await fn(...args);
    } catch (e) {
      throw inputError(`${ctx.where}: judge module ${file}: ${what} threw: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi)
      throw inputError(`${ctx.where}: judge module ${file}: ${what} returned ${describe(v)}; expected a finite number${lo > -Infinity ? ` in [${lo}, ${hi}]` : ""}`);
    return v;
  };
  const judge: Judge = { name };
  if (score) judge.score = (p, c) => call(score, "score(prompt, completion)", [p, c]);
  if (compare) judge.compare = (p, a, b) => call(compare, "compare(prompt, a, b)", [p, a, b], 0, 1);
  return judge;
}

function describe(v: unknown): string {
  if (v === undefined) return "undefined (nothing)";
  if (typeof v === "number") return String(v);
  const s = JSON.stringify(v);
  return `${typeof v} ${s === undefined ? String(v) : s.slice(0, 60)}`;
}

/** Compiles a .ts judge to an ES module in a temporary folder (no type check); returns its file URL. */
function compileTs(file: string, ctx: JudgeContext): string {
  const tsc = join(packageRoot, "node_modules", ".bin", "tsc");
  if (!existsSync(tsc))
    throw configError(`${ctx.where}: judge module ${file} is TypeScript, which this Node (${process.version}) cannot run and no TypeScript compiler is installed beside tsdpo; compile it to .mjs, or use Node ≥ 22.6`);
  const out = mkdtempSync(join(tmpdir(), "tsdpo-judge-"));
  const r = spawnSync(tsc, ["--noCheck", "--skipLibCheck", "--module", "es2022", "--moduleResolution", "bundler", "--target", "es2022", "--outDir", out, file], { encoding: "utf8", cwd: out });
  const js = readdirSync(out).find((f) => f.endsWith(".js"));
  if (r.status !== 0 || !js)
    throw inputError(`${ctx.where}: judge module ${file} does not compile: ${(r.stdout + r.stderr).trim().split("\n")[0] ?? `tsc exited ${r.status}`}`);
  writeFileSync(join(out, "package.json"), '{"type": "module"}\n');
  const target = join(out, basename(file).replace(/\.(m|c)?ts$/, ".js"));
  if (!existsSync(target)) renameSync(join(out, js), target);
  return pathToFileURL(target).href;
}
