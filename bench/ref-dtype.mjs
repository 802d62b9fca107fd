#!/usr/bin/env node
// README's ref_dtype figures: how far the reference log-probs move when full fine-tuning keeps its frozen reference
// as bf16 or q8_0 blocks instead of float32. On the shipped stories260K and the 300 held-out HH-RLHF pairs of
// configs/default.json (seed 42, sequences cut as that config cuts them), each completion's summed log-prob
// log π_ref(y|x) is computed with the float32 reference and with each stored format; the differences are reported
// per sequence (max and mean |Δ|, in nats) and as the largest change of an implicit reward at β = 0.1 (β·|Δ|).
//
//   node bench/ref-dtype.mjs [--backend native] [--out bench/results/ref-dtype.json]

import { join } from "node:path";
import { environment, option, report, root, round } from "./common.mjs";

const dist = (p) => import(join(root, "dist", "src", p));
const { loadModel } = await dist("io/load.js");
const { quantisedCopy } = await dist("model/quantise.js");
const { loadPreferenceData, dataOptionsFromConfig } = await dist("data/load.js");
const { pairLogps } = await dist("train/logps.js");
const { selectBackend } = await dist("backend/select.js");
const { readConfigFile, resolveTrainConfig } = await dist("train/config.js");

const be = selectBackend(option("backend", "native"));
const cfg = resolveTrainConfig(readConfigFile(join(root, "configs", "default.json")), "configs/default.json");
const loaded = loadModel(cfg.model);
const data = await loadPreferenceData(cfg.data, loaded.tokenizer, dataOptionsFromConfig(cfg, loaded.model.cfg.maxSeqLen));
const pairs = data.eval;
const f32 = pairLogps(be, loaded.model, pairs);
const beta = 0.1;
const result = { command: "node bench/ref-dtype.mjs", backend: be.name, ...environment(), model: "stories260K", pairs: pairs.length, sequences: 2 * pairs.length, formats: {} };
for (const [name, type] of [["bf16", "BF16"], ["q8_0", "Q8_0"]]) {
  const rows = pairLogps(be, quantisedCopy(loaded.model, type), pairs);
  const d = [];
  for (let i = 0; i < rows.length; i++) d.push(Math.abs(rows[i].chosen_logps - f32[i].chosen_logps), Math.abs(rows[i].rejected_logps - f32[i].rejected_logps));
  const max = Math.max(...d);
  const meanLogp = f32.reduce((a, r) => a + Math.abs(r.chosen_logps) + Math.abs(r.rejected_logps), 0) / d.length;
  result.formats[name] = {
    max_abs_logp_diff: round(max, 5), mean_abs_logp_diff: round(d.reduce((a, b) => a + b, 0) / d.length, 5),
    max_reward_change_at_beta_0_1: round(beta * max, 5), mean_abs_logp: round(meanLogp, 3),
  };
  process.stderr.write(`${name}: max |Δ log π_ref| ${max.toFixed(5)} nats over ${d.length} sequences\n`);
}
report(result, option("out", null));
