#!/usr/bin/env node
// Markdown tables from run.sh's raw lines.
//
//   node bench/blas/summarise.mjs raw.tsv [--json summary.json]
//
// --json also writes the medians as JSON (README quotes them from there; test/readme-numbers.test.ts checks it):
// per model, each library's step-mix GFLOP/s and share of the FMA peak, the paired change against the first library,
// and per product each library's median GFLOP/s.
//
// Per product and library: the median GFLOP/s with its quartiles, and for every library but the first (the
// reference, OpenBLAS OpenMP) the paired change against the reference: per repetition the ratio of the two
// libraries' times for the same product, timed back to back, then the median and quartiles of those ratios. Pairing
// cancels the machine's slow stretches, which move both libraries together. The step mix is a DPO step's GEMM FLOPs
// over its GEMM time, each product weighted by how often a step runs it, computed per repetition.

import { readFileSync, writeFileSync } from "node:fs";

const jsonAt = process.argv.indexOf("--json");
const jsonOut = jsonAt > 0 ? process.argv[jsonAt + 1] : null;
const input = process.argv.slice(2).find((a, i, all) => !a.startsWith("--") && all[i - 1] !== "--json");
const lines = readFileSync(input ?? 0, "utf8").split("\n");
const summary = { source: input ?? "stdin", cpu: null, fma_peak_gflops: null, libraries: [], reference: null, models: {} };
// model|shape|op -> { model, shape, op, M, N, K, perStep, t: Map(lib -> Map(round|rep -> seconds)) }
const products = new Map();
const libs = [];
const fma = [];
const rounds = []; // { load: "1 5 15 min", steal: "x%" } per round
const info = new Map(); // lib -> description lines from its first round
let round = "0";
let describing = null;

for (const line of lines) {
  const f = line.split("\t");
  if (f[0] === "fma") fma.push(Number(f[2]));
  else if (f[0] === "sample") {
    const [, lib, model, shape, op, M, N, K, perStep, rep, seconds] = f;
    if (!libs.includes(lib)) libs.push(lib);
    const key = `${model}|${shape}|${op}`;
    if (!products.has(key))
      products.set(key, { model, shape, op, M: +M, N: +N, K: +K, perStep: +perStep, t: new Map() });
    const p = products.get(key);
    if (!p.t.has(lib)) p.t.set(lib, new Map());
    p.t.get(lib).set(`${round}|${rep}`, Number(seconds));
  } else if (line.startsWith("# cpu ")) {
    summary.cpu = line.slice("# cpu ".length);
  } else if (/^# round \d+ load average /.test(line)) {
    // counted here rather than read, so the output of several run.sh invocations can be concatenated
    round = String(Number(round) + 1);
    rounds.push({ load: line.replace(/^# round \d+ load average /, ""), steal: "?" });
    describing = null;
  } else if (line.startsWith("# round steal ")) {
    rounds[rounds.length - 1].steal = line.slice("# round steal ".length);
  } else if (line.startsWith("# lib ")) {
    describing = info.has(line.slice(6)) ? null : line.slice(6);
    if (describing) info.set(describing, []);
  } else if (line.startsWith("# ") && describing && !line.startsWith("# env ")) {
    info.get(describing).push(line.slice(2));
  }
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}
const flops = (p) => 2 * p.M * p.N * p.K;
const f0 = (x) => x.toFixed(0);
const pct = (r) => `${r >= 1 ? "+" : "−"}${Math.abs((r - 1) * 100).toFixed(0)}`;
const spread = (xs, fmt) => `${fmt(quantile(xs, 0.5))} (${fmt(quantile(xs, 0.25))}…${fmt(quantile(xs, 0.75))})`;

libs.sort((a, b) => [...info.keys()].indexOf(a) - [...info.keys()].indexOf(b)); // as run.sh names them
const [ref, ...others] = libs;
const peak = quantile(fma, 0.5);
const out = [];
const nPairs = Math.min(...[...products.values()].flatMap((p) => [...p.t.values()].map((m) => m.size)));
out.push(`FMA peak (tsdpo fmaPeakGflops(300), before and after each round's GEMMs): median ${f0(peak)} GFLOP/s ` +
  `over ${fma.length} probes; all: ${fma.map(f0).join(", ")}.`);
out.push("");
out.push(`GFLOP/s: median (first…third quartile) over ${nPairs} timed calls per product and library. ` +
  `vs ${ref}: paired change in GFLOP/s, median (quartiles) over the same repetitions, in %. ` +
  "The % after a library's GFLOP/s is its median's share of the FMA peak.");

for (const model of [...new Set([...products.values()].map((p) => p.model))]) {
  const rows = [...products.values()].filter((p) => p.model === model);
  const reps = [...rows[0].t.get(ref).keys()];
  out.push("", `**${model}**`, "");
  const vs = others.map((l) => `${l} vs ${ref}`);
  out.push(`| product | M×N×K | per step | ${libs.join(" | ")} | ${vs.join(" | ")} |`);
  out.push(`|---|---|---:|${libs.map(() => "---:").join("|")}|${others.map(() => "---:").join("|")}|`);
  for (const p of rows) {
    const gflops = libs.map((l) => [...p.t.get(l).values()].map((s) => flops(p) / s / 1e9));
    const ratios = others.map((l) => reps.map((k) => p.t.get(ref).get(k) / p.t.get(l).get(k)));
    out.push(`| ${p.shape} ${p.op} | ${p.M}×${p.N}×${p.K} | ${+p.perStep.toFixed(1)} | ` +
      `${gflops.map((g) => `${spread(g, f0)}, ${f0((quantile(g, 0.5) / peak) * 100)}%`).join(" | ")} | ` +
      `${ratios.map((r) => spread(r, pct)).join(" | ")} |`);
  }
  // Step mix per repetition: Σ perStep·flops / Σ perStep·seconds.
  const totalFlops = rows.reduce((a, p) => a + p.perStep * flops(p), 0);
  const mix = (l) => reps.map((k) => totalFlops / rows.reduce((a, p) => a + p.perStep * p.t.get(l).get(k), 0) / 1e9);
  const mixes = libs.map(mix);
  const mixRatios = others.map((_, i) => reps.map((_, j) => mixes[i + 1][j] / mixes[0][j]));
  const mixCells = mixes.map((m) => `**${spread(m, f0)}**, ${f0((quantile(m, 0.5) / peak) * 100)}% of peak`);
  const mixVs = mixRatios.map((r) => `**${spread(r, pct)}**`);
  out.push(`| **step mix** | | | ${mixCells.join(" | ")} | ${mixVs.join(" | ")} |`);
  const q = (xs) => ({ median: quantile(xs, 0.5), q1: quantile(xs, 0.25), q3: quantile(xs, 0.75) });
  summary.models[model] = {
    step_mix: Object.fromEntries(libs.map((l, i) => [l, { ...q(mixes[i]), share_of_peak: quantile(mixes[i], 0.5) / peak }])),
    // paired: (other / reference − 1) × 100, per repetition, then quartiles
    step_mix_vs_reference_pct: Object.fromEntries(others.map((l, i) => [l, q(mixRatios[i].map((r) => (r - 1) * 100))])),
    products: Object.fromEntries(rows.map((p) => [`${p.shape} ${p.op}`, Object.fromEntries(libs.map((l) =>
      [l, quantile([...p.t.get(l).values()].map((s) => flops(p) / s / 1e9), 0.5)]))])),
  };
}
summary.fma_peak_gflops = peak;
summary.libraries = libs;
summary.reference = ref;

out.push("", `Rounds (load average over 1, 5, 15 min at the start; hypervisor steal during the round): ` +
  `${rounds.map((r, i) => `${i + 1}: ${r.load}, ${r.steal}`).join("; ")}.`);
out.push("", `CPU: ${summary.cpu ?? "not recorded"}.`);
out.push("", "Libraries as loaded:", "");
for (const [lib, lines] of info) out.push(`- ${lib}: ${lines.join("; ")}`);
console.log(out.join("\n"));
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(summary, null, 2) + "\n");
