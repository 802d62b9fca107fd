#!/usr/bin/env node
// The DPO step with tsdpo's own GEMM against the same commit with OpenBLAS's sgemm (bench/openblas-baseline.sh), and
// nothing else: no PyTorch side, so more rounds fit in the time and the two builds alternate closely. Each round runs
// `tsdpo bench` once per build, in alternating order (own first in odd rounds, OpenBLAS first in even ones), so a slow
// stretch of the shared machine does not fall on one build only.
//
//   node bench/step-vs-openblas.mjs --baseline DIR [--preset qwen2.5-0.5b] [--rounds 6] [--steps 3] [--out FILE]
//
// Reported: each build's median over rounds of its round's ms/step (itself the median of that run's timed steps), the
// per-round ratio OpenBLAS ms / own ms (above 1: the own GEMM is faster) with its median and quartiles, and each
// phase's median ms. The raw `tsdpo bench` objects are kept in the output.

import { spawnSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { root as ROOT, writeResult } from "./common.mjs";

const { values } = parseArgs({
  options: {
    baseline: { type: "string" },
    preset: { type: "string", default: "qwen2.5-0.5b" },
    rounds: { type: "string", default: "6" },
    steps: { type: "string", default: "3" },
    out: { type: "string" },
  },
});
if (!values.baseline) {
  console.error("step-vs-openblas: --baseline DIR is required (a build made by sh bench/openblas-baseline.sh DIR)");
  process.exit(2);
}
const rounds = Number(values.rounds), steps = Number(values.steps);
const builds = { own: ROOT, openblas: resolve(values.baseline) };
const args = ["bench", "--preset", values.preset, "--prompt-len", "128", "--completion-len", "128", "--pairs", "1",
  "--steps", String(steps), "--json"];

function gitCommit(dir) {
  const r = spawnSync("git", ["-C", dir, "rev-parse", "HEAD"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

function run(dir) {
  const r = spawnSync(process.execPath, [join(dir, "dist", "src", "cli", "main.js"), ...args], {
    cwd: dir, encoding: "utf8", maxBuffer: 64 << 20,
  });
  if (r.status !== 0) {
    console.error(`step-vs-openblas: tsdpo bench in ${dir} failed (status ${r.status}):\n${r.stderr}`);
    process.exit(1);
  }
  return JSON.parse(r.stdout.trim().split("\n").at(-1));
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const quartiles = (a) => {
  const s = [...a].sort((x, y) => x - y), at = (p) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
  return [at(0.25), at(0.75)];
};

const runs = { own: [], openblas: [] };
const loadBefore = loadavg();
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? ["own", "openblas"] : ["openblas", "own"];
  for (const side of order) runs[side].push(run(builds[side]));
  console.error(`round ${r + 1}/${rounds}: own ${runs.own.at(-1).ms_per_step} ms, OpenBLAS sgemm ${runs.openblas.at(-1).ms_per_step} ms`);
}
const ratios = runs.own.map((o, i) => runs.openblas[i].ms_per_step / o.ms_per_step);
const summary = (side) => ({
  ms_per_step: median(runs[side].map((x) => x.ms_per_step)),
  rounds_ms: runs[side].map((x) => x.ms_per_step),
  phase_ms: Object.fromEntries(Object.keys(runs[side][0].share).map((k) =>
    [k, median(runs[side].map((x) => x.share[k] * x.ms_per_step))])),
  git_commit: gitCommit(builds[side]),
  dir: builds[side],
});
const report = {
  preset: values.preset, rounds, steps_per_run: steps,
  own: summary("own"), openblas: summary("openblas"),
  ratio_openblas_over_own: { median: median(ratios), quartiles: quartiles(ratios), rounds: ratios },
  environment: { cpu: cpus()[0]?.model, cpus: cpus().length, load_average_before: loadBefore, load_average_after: loadavg(),
    date: new Date().toISOString() },
  raw: runs,
};
if (values.out) writeResult(report, values.out);
console.log(`${values.preset}: own GEMM ${report.own.ms_per_step.toFixed(1)} ms/step, OpenBLAS sgemm ` +
  `${report.openblas.ms_per_step.toFixed(1)} ms/step; OpenBLAS / own per round: median ${median(ratios).toFixed(3)} ` +
  `(quartiles ${quartiles(ratios).map((x) => x.toFixed(3)).join("…")}; ${ratios.map((x) => x.toFixed(3)).join(", ")})`);
