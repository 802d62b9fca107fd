// Quantised GGUFs between tsdpo and llama.cpp, both ways (issue 14), against fixtures written by
// tools/llama-ref/gen-roundtrip.mjs with the llama_model_quantize and CPU backend that node-llama-cpp 3.22.1 ships:
//   - the HH-tuned stories260K (configs/default.json), made Q8_0 by llama.cpp: tsdpo reads llama.cpp's file (blocks
//     kept quantised), and its 32 greedy ids from BOS equal llama.cpp's;
//   - LoRA DPO on a Q4_K_M file made by llama.cpp, exported by tsdpo with --dtype q4_k_m: the export is byte for byte
//     the file llama.cpp loaded (sha256), training starts at loss ln 2, and tsdpo's greedy ids on the export equal
//     llama.cpp's wherever llama.cpp's top-2 margin is wider than twice the logit tolerance.
// Logits are compared step by step along llama.cpp's greedy paths, two ways. Against llama.cpp on the quantised file
// within LLAMACPP_TOLERANCE (test/quant-models.ts): llama.cpp rounds the activations to 8 bits for its quantised dot
// products, so its logits differ from tsdpo's by up to that much and a top-2 margin can move by twice it. And against
// llama.cpp computing in float32 on its own dequantisation of the same file, within 1e-4: that comparison sees a
// weight read differently by a single quantisation step, which the first cannot.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "../src/backend/contract.js";
import { exportGguf } from "../src/export/gguf.js";
import { loadModel } from "../src/io/load.js";
import { loadModelForUse } from "../src/io/resolve.js";
import { type Model, createKvCache, decode } from "../src/model/decoder.js";
import { argmax, generate } from "../src/sample/generate.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import { fixture, maxAbsDiff, repoRoot, testBackend } from "./helpers.js";
import { LLAMACPP_TOLERANCE, ROUNDTRIP_BASE, ROUNDTRIP_LORA_CONFIG, tensorDigests } from "./quant-models.js";

/**
 * llama.cpp's greedy continuation of BOS + a prompt on a quantised file: row k of the logits (float32, base64) chose
 * ids[k] with top-2 margin margins[k]. `dequantized`: llama.cpp on its own float32 dequantisation of the same file
 * (ggml's to_float), its greedy ids and margins, and its logits along `ids`.
 */
interface GreedyRun {
  text: string; prompt_ids: number[]; ids: number[]; margins: number[]; logits_f32_base64: string;
  dequantized: { ids: number[]; margins: number[]; logits_along_ids_f32_base64: string };
}
interface HhFixture { file: string; sha256: string; greedy: GreedyRun[] }
interface LoraFixture {
  base: { file: string; sha256: string };
  export: { sha256: string; tensors: { name: string; type: string }[] };
  greedy: GreedyRun[];
  base_greedy: { text: string; ids: number[] }[];
}
const hh = JSON.parse(readFileSync(fixture("quant", "roundtrip-hh-llamacpp.json"), "utf8")) as HhFixture;
const lora = JSON.parse(readFileSync(fixture("quant", "roundtrip-lora-llamacpp.json"), "utf8")) as LoraFixture;
const be = testBackend();
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-quant-roundtrip-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * Allowed |Δlogit| against llama.cpp's float32 run on its own dequantisation of the file, as for stories260K in
 * float32 (test/llamacpp.test.ts): measured at most 1.5e-5 here, on either backend.
 */
const F32_TOLERANCE = 1e-4;

const sha256 = (path: string): string => createHash("sha256").update(readFileSync(path)).digest("hex");
const rowsOf = (b64: string): Float32Array => {
  const b = Buffer.from(b64, "base64");
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
};

/**
 * tsdpo on one of llama.cpp's greedy runs: its own greedy ids (generate, as `tsdpo sample` runs it), and its logits
 * along llama.cpp's ids (the same prompt, then llama.cpp's tokens one decode at a time, as llama.cpp decoded them).
 */
function tsdpoOn(backend: Backend, model: Model, run: GreedyRun): { ids: number[]; rows: Float32Array } {
  const n = run.ids.length, V = model.cfg.V;
  const { ids } = generate(backend, model, run.prompt_ids, [], { maxNewTokens: n, temperature: 0, topK: 0, topP: 1, seed: 0 });
  const rows = new Float32Array(n * V);
  const cache = createKvCache(model, run.prompt_ids.length + n);
  rows.set(decode(backend, model, cache, run.prompt_ids).subarray(0, V), 0);
  for (let k = 1; k < n; k++) rows.set(decode(backend, model, cache, [run.ids[k - 1]!]).subarray(0, V), k * V);
  return { ids, rows };
}

/** Where tsdpo's greedy ids first differ from `want` (want.length when they never do). */
const agreeing = (got: number[], want: number[]): number => {
  const k = got.findIndex((id, i) => id !== want[i]);
  return k < 0 ? want.length : k;
};

/**
 * tsdpo against llama.cpp on the quantised file: along llama.cpp's path tsdpo's logits are within `tol` of llama.cpp's,
 * and its argmax is llama.cpp's token wherever llama.cpp's top-2 margin is wider than 2·tol (the most the two margins
 * can differ by); tsdpo's own greedy ids equal llama.cpp's up to the first step where the two part, and that step must
 * be such a near tie. Then against llama.cpp's float32 run on its dequantisation of the same file: logits within
 * F32_TOLERANCE along the same path, and the same greedy ids (up to a tie within 2·F32_TOLERANCE, if one ever comes).
 * Returns how many leading ids agree with each, and at how many steps the quantised margin was wider than 2·tol.
 */
function check(what: string, run: GreedyRun, ours: { ids: number[]; rows: Float32Array }, tol: number): { agree: number; wide: number; agreeF32: number } {
  const name = `${what} ${JSON.stringify(run.text)}`;
  const V = ours.rows.length / run.ids.length;
  const worst = maxAbsDiff(ours.rows, rowsOf(run.logits_f32_base64));
  assert.ok(worst <= tol, `${name}: max |Δlogit| ${worst} > ${tol} against llama.cpp on the quantised file`);
  let wide = 0;
  for (let k = 0; k < run.ids.length; k++) {
    if (run.margins[k]! <= 2 * tol) continue;
    wide++;
    assert.equal(argmax(ours.rows.subarray(k * V, (k + 1) * V)), run.ids[k], `${name} step ${k}: tsdpo's argmax along llama.cpp's path (llama.cpp's margin ${run.margins[k]})`);
  }
  const agree = agreeing(ours.ids, run.ids);
  if (agree < run.ids.length)
    assert.ok(run.margins[agree]! <= 2 * tol,
      `${name}: tsdpo's greedy ids part from llama.cpp's at step ${agree}, where llama.cpp's margin ${run.margins[agree]} is wider than 2 × ${tol}`);

  const f32 = run.dequantized;
  const worstF32 = maxAbsDiff(ours.rows, rowsOf(f32.logits_along_ids_f32_base64));
  assert.ok(worstF32 <= F32_TOLERANCE, `${name}: max |Δlogit| ${worstF32} > ${F32_TOLERANCE} against llama.cpp in float32 on the file's dequantised weights`);
  const agreeF32 = agreeing(ours.ids, f32.ids);
  if (agreeF32 < f32.ids.length)
    assert.ok(f32.margins[agreeF32]! <= 2 * F32_TOLERANCE,
      `${name}: tsdpo's greedy ids part at step ${agreeF32} from llama.cpp's in float32 on the dequantised weights (margin ${f32.margins[agreeF32]})`);
  console.log(`${name}: quantised: max |Δlogit| ${worst.toFixed(4)} (tolerance ${tol}), ${agree}/${run.ids.length} greedy ids equal, ` +
    `${wide} steps with llama.cpp's margin > ${2 * tol} (smallest ${Math.min(...run.margins)}); float32 on the dequantised weights: ` +
    `max |Δlogit| ${worstF32.toExponential(2)}, ${agreeF32}/${f32.ids.length} greedy ids equal (smallest margin ${Math.min(...f32.margins)})`);
  return { agree, wide, agreeF32 };
}

test("HH-tuned stories260K made Q8_0 by llama.cpp: tsdpo's 32 greedy ids on llama.cpp's file equal llama.cpp's", () => {
  const path = join(repoRoot, hh.file);
  assert.equal(sha256(path), hh.sha256, `${hh.file} is not the file the fixture's numbers belong to`);
  const { model } = loadModel(path);
  assert.ok(model.quant.size > 0, "the Q8_0 matrices stay in their blocks");
  const tol = LLAMACPP_TOLERANCE["hh-stories260K Q8_0"]!;
  const [fromBos, hhPrompt] = hh.greedy.map((run) => ({ run, ...check("hh", run, tsdpoOn(be, model, run), tol) }));
  // Issue 14's criterion: from BOS all 32 ids equal, although two of llama.cpp's margins (0.137 at step 20, 0.204 at
  // step 30) are narrower than 2 × tol; tsdpo's own margins there are 0.170 and 0.244, on either backend.
  assert.equal(fromBos!.run.text, "");
  assert.equal(fromBos!.agree, 32, "from BOS: 32 equal greedy ids");
  // After the HH prompt the paths part at step 14, a near tie: llama.cpp's margin is 0.096, tsdpo's for the same two
  // tokens -0.026 (|Δ| 0.12, while each logit may differ by up to 0.29 here). That is llama.cpp's activation
  // rounding, not the weights: in float32 on the same dequantised weights llama.cpp takes tsdpo's token there, and
  // all 32 ids are equal (check requires the float32 run to agree, and the parting step to be a near tie).
  assert.ok(hhPrompt!.agree >= 14, `after the HH prompt: ${hhPrompt!.agree} equal greedy ids (measured: 14, then a near tie)`);
  for (const r of [fromBos!, hhPrompt!]) assert.equal(r.agreeF32, 32, `${JSON.stringify(r.run.text)}: 32 greedy ids equal to llama.cpp's in float32`);
});

test("round trip: LoRA DPO on llama.cpp's Q4_K_M file, exported as q4_k_m, is the file llama.cpp ran, and greedy ids agree", async () => {
  assert.equal(sha256(ROUNDTRIP_BASE), lora.base.sha256, `${lora.base.file} is not the file the fixture's numbers belong to`);
  // ROUNDTRIP_LORA_CONFIG says backend "js" (also in the native pass): the exported bytes depend on the last bits of
  // the trained adapters, and those are the js reference's, which gen-roundtrip.mjs ran
  const dir = join(tmp, "lora");
  await train(resolveTrainConfig({ ...ROUNDTRIP_LORA_CONFIG, output_dir: dir }, "test"), null, { quiet: true });
  const metrics = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);
  assert.equal(metrics[0]!.loss, Math.LN2, "step 1 starts at ln 2: with B = 0 the policy is exactly the quantised base");

  const out = join(tmp, "lora-Q4_K_M.gguf");
  exportGguf(loadModelForUse(dir), out, { dtype: "Q4_K_M" });
  const got = tensorDigests(out);
  assert.deepEqual(got.map((t) => `${t.name} ${t.type}`), lora.export.tensors.map((t) => `${t.name} ${t.type}`), "tensor types");
  assert.equal(sha256(out), lora.export.sha256,
    "the export is not the file llama.cpp ran: rerun tools/llama-ref/gen-roundtrip.mjs if the exporter or the js training numbers changed on purpose");

  // the adapters survive quantisation: every adapted matrix has other blocks than the base re-exported alone
  const baseOut = join(tmp, "base-Q4_K_M.gguf");
  exportGguf(loadModel(ROUNDTRIP_BASE), baseOut, { dtype: "Q4_K_M" });
  const baseDigests = new Map(tensorDigests(baseOut).map((t) => [t.name, t.sha256]));
  const adapted = got.filter((t) => /attn_(q|k|v|output)|ffn_(gate|up|down)/.test(t.name));
  assert.equal(adapted.length, 14);
  for (const t of adapted) assert.notEqual(t.sha256, baseDigests.get(t.name), `${t.name}: the adapters did not change its blocks`);
  assert.ok(lora.greedy.some((run, i) => run.ids.join() !== lora.base_greedy[i]!.ids.join()), "the adapters change one of llama.cpp's greedy paths");

  const { model } = loadModel(out);
  assert.ok(model.quant.size > 0, "the export's matrices stay in their blocks");
  const tol = LLAMACPP_TOLERANCE["wide Q4_K_M"]!;
  const results = lora.greedy.map((run) => check("lora", run, tsdpoOn(be, model, run), tol));
  const total = lora.greedy.reduce((n, run) => n + run.ids.length, 0);
  for (const [i, r] of results.entries()) assert.equal(r.agreeF32, 32, `${JSON.stringify(lora.greedy[i]!.text)}: 32 greedy ids equal to llama.cpp's in float32`);
  console.log(`lora: ${results.reduce((n, r) => n + r.agree, 0)}/${total} greedy ids equal to llama.cpp's on the quantised export, ` +
    `${results.reduce((n, r) => n + r.wide, 0)}/${total} steps with a margin wider than 2 × ${tol}`);
});
