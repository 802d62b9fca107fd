#!/usr/bin/env node
// README's cost of a quantised base: `tsdpo bench` LoRA DPO steps (r 16 on all seven projections, one pair of
// 128 + 128 tokens) on smollm-135m with its matrices stored as f32, bf16, q8_0 and q4_k, interleaved over rounds so that
// load on a shared machine falls on every format alike. Reports each format's median ms/step over the rounds and
// its ratio to f32 measured in the same round.
//
//   node bench/quant-step.mjs [--preset smollm-135m] [--rounds 3] [--out bench/results/quant-step.json]

import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { cli, environment, option, report, round } from "./common.mjs";

const preset = option("preset", "smollm-135m");
const rounds = Number(option("rounds", "3"));
const FORMATS = ["f32", "bf16", "q8_0", "q4_k"];

function step(dtype) {
  const r = spawnSync(process.execPath, [cli, "bench", "--preset", preset, "--lora-r", "16", "--base-dtype", dtype, "--steps", "5", "--json"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`bench ${dtype} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const loadBefore = loadavg();
const ms = Object.fromEntries(FORMATS.map((f) => [f, []]));
const ratios = Object.fromEntries(FORMATS.map((f) => [f, []]));
let rss = {};
const gflops = Object.fromEntries(FORMATS.map((f) => [f, []]));
for (let k = 0; k < rounds; k++) {
  const row = {};
  for (const f of FORMATS) {
    const res = step(f);
    row[f] = res.ms_per_step;
    rss[f] = res.peak_rss_mb;
    gflops[f].push(res.step_gflops);
    ms[f].push(res.ms_per_step);
  }
  for (const f of FORMATS) ratios[f].push(row[f] / row.f32);
  process.stderr.write(`round ${k + 1}: ${FORMATS.map((f) => `${f} ${row[f]} ms`).join(", ")}\n`);
}
report({
  command: `tsdpo bench --preset ${preset} --lora-r 16 --base-dtype <f32|bf16|q8_0|q4_k> --steps 5, ${rounds} interleaved rounds`,
  ...environment(), loadavg_before: loadBefore, loadavg_after: loadavg(),
  formats: Object.fromEntries(FORMATS.map((f) => [f, {
    ms_per_step: round(median(ms[f]), 1), rounds_ms: ms[f], over_f32: round(median(ratios[f]), 3), rounds_over_f32: ratios[f].map((x) => round(x, 3)), peak_rss_mb: rss[f],
    step_gflops: round(median(gflops[f]), 1),
  }])),
}, option("out", null));
