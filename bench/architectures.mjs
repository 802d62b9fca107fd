// The numbers of README's architecture table: for each architecture row, how far tsdpo is from its two independent
// references, measured on the committed fixtures:
//   - llama.cpp: max |Δlogit| over every position of CHECK_TEXT between tsdpo and llama.cpp on the GGUF file tsdpo
//     exported (test/fixtures/gguf-export-llamacpp.json, made by tools/llama-ref/check-export.mjs; the file's sha256
//     is checked first, so the numbers belong to these bytes), tsdpo loading that GGUF back;
//   - PyTorch: max |Δgrad| over every parameter between tsdpo and the float64 PyTorch reference
//     (test/fixtures/torch/*.safetensors, tools/torch_fixtures.py): the gradient of the summed completion log-probs
//     (Llama-family files, stored in float32) or of a DPO loss (Gemma, SmolLM3, Granite and OLMo 2 files, stored in
//     float64).
// Each on the js backend in float64 (where a fixture is float64, this is the arithmetic's own agreement) and on the
// native backend in float32 (what training runs).
//
//   node scripts/build-ts.js && node bench/architectures.mjs [--out bench/results/architectures.json]
//
// The test suite checks the same fixtures against tolerances (torch-fixtures, gguf-export, gemma-export,
// families-export, fused-gguf-export tests); this script only records the measured distances for README
// (test/readme-numbers.test.ts checks the quotes).

import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dist = new URL("../dist/", import.meta.url).pathname;
const { jsBackend } = await import(join(dist, "src/backend/js/kernels.js"));
const { loadNative } = await import(join(dist, "src/backend/native/index.js"));
const { exportGguf } = await import(join(dist, "src/export/gguf.js"));
const { loadModel } = await import(join(dist, "src/io/load.js"));
const { llamaConfigFromHf } = await import(join(dist, "src/io/hfconfig.js"));
const { hfTensorName } = await import(join(dist, "src/io/names.js"));
const { fusedHfLayout } = await import(join(dist, "src/io/hflayout.js"));
const { readSafetensors } = await import(join(dist, "src/io/safetensors.js"));
const { createActivations, createGradients, createModel, forward, backward, logitsOf } = await import(join(dist, "src/model/decoder.js"));
const { computeLoss } = await import(join(dist, "src/loss/losses.js"));
const { defaultLossConfig } = await import(join(dist, "src/loss/config.js"));
const { checkModels, CHECK_FIXTURE } = await import(join(dist, "test/gguf-export-models.js"));
const { environment } = await import(new URL("./common.mjs", import.meta.url).href);

const args = process.argv.slice(2);
const outPath = args.includes("--out") ? args[args.indexOf("--out") + 1] : null;
const native = loadNative();
if (!native.ok) throw new Error(`the native backend is needed: ${native.reason}`);
const backends = [["js_f64", jsBackend, Float64Array], ["native_f32", native.backend, Float32Array]];
const root = new URL("..", import.meta.url).pathname;

const maxAbs = (a, b) => {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

/** A loaded model's float parameters in another float type (float64 for the js row). */
function retyped(model, ctor) {
  if (model.ctor === ctor) return model;
  const copy = createModel(model.cfg, ctor);
  copy.params.set(model.params);
  return copy;
}

function llamaCppDistance(name) {
  const fixture = JSON.parse(readFileSync(CHECK_FIXTURE, "utf8"));
  const ref = fixture.checks.find((c) => c.name === name);
  if (!ref) throw new Error(`${name}: not in ${CHECK_FIXTURE}`);
  const check = checkModels().find((c) => c.name === name);
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-arch-"));
  try {
    const path = join(dir, `${name}.gguf`);
    exportGguf(check.loaded, path);
    const sha = createHash("sha256").update(readFileSync(path)).digest("hex");
    if (sha !== ref.sha256) throw new Error(`${name}: exported bytes differ from the ones llama.cpp ran (${sha} vs ${ref.sha256})`);
    const loaded = loadModel(path);
    const out = {};
    for (const [key, be, ctor] of backends) {
      const model = retyped(loaded.model, ctor);
      const T = ref.ids.length;
      const acts = createActivations(model, 1, T);
      forward(be, model, acts, Int32Array.from(ref.ids), new Int32Array(T), 1, T);
      out[key] = maxAbs(logitsOf(be, model, acts), ref.logits.flat());
    }
    return { fixture: name, ...out };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function torchDistance(file) {
  const path = join(root, "test/fixtures/torch", `${file}.safetensors`);
  const st = readSafetensors(path);
  const cfg = llamaConfigFromHf(JSON.parse(st.metadata.config), path);
  const inputs = JSON.parse(st.metadata.inputs);
  const R = inputs.ids.length, T = inputs.ids[0].length;
  const ids = Int32Array.from(inputs.ids.flat()), targets = Int32Array.from(inputs.targets.flat()), mask = Float64Array.from(inputs.mask.flat());
  const dpo = st.metadata.dpo ? JSON.parse(st.metadata.dpo) : null;
  const out = { fixture: `test/fixtures/torch/${file}.safetensors`, gradient: dpo ? "DPO loss (float64 reference)" : "summed log-probs (float32 reference)" };
  for (const [key, be, ctor] of backends) {
    const model = createModel(cfg, ctor);
    // fused or transposed HF tensors (GPT-2, Phi-3) are split by the loader's own io/hflayout.ts; the others map one to one
    const layout = fusedHfLayout(cfg);
    const weights = layout ? layout.fromHf(cfg, (n) => st.tensors.get(n).data) : null;
    for (const e of model.entries) model.params.set(layout ? weights.get(e.name) : st.tensors.get(hfTensorName(e.name, cfg.family)).data, e.offset);
    const acts = createActivations(model, R, T);
    const logp = forward(be, model, acts, ids, targets, R, T);
    const dlogp = new ctor(R * T);
    if (dpo) {
      const sum = (r) => { let s = 0; for (let t = 0; t < T; t++) s += mask[r * T + t] * logp[r * T + t]; return s; };
      const len = (r) => mask.subarray(r * T, (r + 1) * T).reduce((a, b) => a + b, 0);
      const res = computeLoss({ ...defaultLossConfig(), beta: dpo.beta }, {
        policyChosenLogps: Float64Array.from(dpo.chosen_rows, sum), policyRejectedLogps: Float64Array.from(dpo.rejected_rows, sum),
        refChosenLogps: Float64Array.from(dpo.chosen_rows, (r) => dpo.ref_logps[r]), refRejectedLogps: Float64Array.from(dpo.rejected_rows, (r) => dpo.ref_logps[r]),
        chosenLengths: Int32Array.from(dpo.chosen_rows, len), rejectedLengths: Int32Array.from(dpo.rejected_rows, len),
      });
      dpo.chosen_rows.forEach((r, i) => { for (let t = 0; t < T; t++) dlogp[r * T + t] = mask[r * T + t] * res.dPolicyChosenLogps[i]; });
      dpo.rejected_rows.forEach((r, i) => { for (let t = 0; t < T; t++) dlogp[r * T + t] = mask[r * T + t] * res.dPolicyRejectedLogps[i]; });
    } else for (let i = 0; i < R * T; i++) dlogp[i] = mask[i];
    const grads = createGradients(model);
    backward(be, model, acts, grads, dlogp);
    let worst = 0, scale = 0;
    const prefix = dpo ? "dpo64.grad." : "grad.";
    const wantGrads = layout ? layout.fromHf(cfg, (n) => st.tensors.get(prefix + n).data) : null;
    for (const e of model.entries) {
      const want = layout ? wantGrads.get(e.name) : st.tensors.get(`${prefix}${hfTensorName(e.name, cfg.family)}`).data;
      worst = Math.max(worst, maxAbs(grads.grads.subarray(e.offset, e.offset + e.size), want));
      for (const x of want) scale = Math.max(scale, Math.abs(x));
    }
    out[key] = worst;
    out.max_abs_grad = scale;
  }
  return out;
}

const rows = [
  { architecture: "Llama 3.x GGUF (llama3 RoPE as rope_freqs)", llamacpp: "stories260K-perturbed-llama3-rope", torch: "llama" },
  { architecture: "Gemma 2", llamacpp: "gemma2-tiny", torch: "gemma2" },
  { architecture: "Gemma 3 (text)", llamacpp: "gemma3-tiny", torch: "gemma3" },
  { architecture: "SmolLM3", llamacpp: "smollm3-tiny", torch: "smollm3" },
  { architecture: "Granite 3", llamacpp: "granite-tiny", torch: "granite" },
  { architecture: "OLMo 2", llamacpp: "olmo2-tiny", torch: "olmo2" },
  // GPT-2's distance is the plain float32 forward's, like Gemma's: llama.cpp's CPU GELU works in fp16
  // (test/fused-gguf-export.test.ts emulates it)
  { architecture: "GPT-2", llamacpp: "gpt2-tiny", torch: "gpt2" },
  { architecture: "Phi-3", llamacpp: "phi3-tiny", torch: "phi3" },
  // Phi-4-mini's RoPE: partial (6 of 8 features) and LongRoPE at a length that selects the long factors; its GGUF
  // export is refused (llama.cpp keeps LongRoPE's factors in tensors tsdpo does not write yet)
  { architecture: "Phi-3 with partial RoPE and LongRoPE", llamacpp: null, torch: "phi3-longrope" },
];
const result = { environment: environment(), rows: {} };
for (const row of rows) {
  const key = row.torch;
  result.rows[key] = { architecture: row.architecture, llamacpp_max_abs_logit: row.llamacpp ? llamaCppDistance(row.llamacpp) : null, torch_max_abs_grad: torchDistance(row.torch) };
  console.error(`${row.architecture}: llama.cpp ${JSON.stringify(result.rows[key].llamacpp_max_abs_logit)}; PyTorch ${JSON.stringify(result.rows[key].torch_max_abs_grad)}`);
}
const text = JSON.stringify(result, null, 2) + "\n";
if (outPath) writeFileSync(outPath, text);
else process.stdout.write(text);
