// `tsdpo demo`: parse the options, run the demo (src/demo/demo.ts), write its report, print the summary.

import { join, resolve } from "node:path";
import { defaultBackendName } from "../backend/select.js";
import { configError } from "../errors.js";
import type { Command } from "./commands.js";

type Values = Record<string, string | boolean | undefined>;

const str = (v: Values, key: string): string | undefined => (typeof v[key] === "string" ? (v[key] as string) : undefined);

function int(v: Values, key: string): number | null {
  const s = str(v, key);
  if (s === undefined) return null;
  const x = Number(s);
  if (s.trim() === "" || !Number.isInteger(x)) throw configError(`demo: --${key} ${s}: expected a whole number`);
  return x;
}

export function parseBetas(s: string): number[] {
  const parts = s.split(",").map((p) => p.trim());
  const betas = parts.map(Number);
  if (parts.some((p) => p === "") || betas.some((b) => !(Number.isFinite(b) && b > 0)))
    throw configError(`demo: --beta ${s}: expected one β > 0 or a comma-separated list such as 0.05,0.1,0.5`);
  return betas;
}

export const demoCommand: Command = {
  summary: "DPO in a few minutes: tune stories260K towards positive stories (AFINN-165 labels), with a report",
  help: `usage: tsdpo demo [--out <folder>] [--beta B[,B...]] [--seed S] [--prompts N] [--quick] [--backend js|native|auto]
  A miniature of the DPO paper's controlled-sentiment experiment on the shipped stories260K: sample story
  continuations from the model, label pairs with the AFINN-165 sentiment lexicon, train with DPO, and measure the
  tuned policy against the reference on held-out story openings (reward, KL(π‖π_ref), preference accuracy).
  --out <folder>   where everything goes (default runs/demo-<date-time>); must be new or empty
  --beta B,...     DPO β; several (e.g. 0.05,0.1,0.5) train one policy each and the report plots the
                   reward-vs-KL frontier (default 0.1)
  --seed S         seeds the prompt split, the labelling samples, the data order and the evaluation (default 1)
  --prompts N      story openings to use, 16% of them held out (default 200, 32 held out; 247 ship)
  --model <path>   the model to tune (default: the shipped stories260K; the sizes are chosen for it)
  --quick          a much smaller run (seconds), for tests; too small for the reward to move reliably
The folder gets demo/preferences.jsonl (the labelled pairs, reusable with tsdpo train), one run folder per β
(beta-<β>/), demo/results.json and report.html.`,
  options: {
    out: { type: "string" }, beta: { type: "string" }, seed: { type: "string" }, prompts: { type: "string" },
    quick: { type: "boolean" }, backend: { type: "string" }, model: { type: "string" },
  },
  async run(v) {
    const { runDemo, summaryTable } = await import("../demo/demo.js");
    const { writeDemoReport } = await import("../report/report.js");
    const out = resolve(str(v, "out") ?? join("runs", `demo-${new Date().toISOString().replace(/[:.]/g, "-")}`));
    const results = await runDemo({
      out,
      seed: int(v, "seed") ?? 1,
      betas: parseBetas(str(v, "beta") ?? "0.1"),
      quick: v.quick === true,
      prompts: int(v, "prompts"),
      backend: str(v, "backend") ?? defaultBackendName(),
      model: str(v, "model") ?? null,
      quiet: false,
      log: (line) => process.stderr.write(line + "\n"),
    });
    const report = await writeDemoReport(out);
    process.stdout.write(`\n${summaryTable(results)}\n\nfinished in ${results.seconds.total.toFixed(0)} s; report: ${report}\n`);
  },
};
