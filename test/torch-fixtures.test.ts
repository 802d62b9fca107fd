// The model against PyTorch (tools/torch_fixtures.py, float64 reference): logits, per-token log-probs, the gradient
// of the summed completion log-probs for every parameter tensor, and a ten-step AdamW trajectory; for Gemma 2 and 3,
// the gradient of a DPO loss (below).
// Tolerances from the issue: gradients 1e-4 abs / 1e-3 rel; losses 1e-4.

import { test } from "node:test";
import assert from "node:assert/strict";
import type { Backend } from "../src/backend/contract.js";
import { jsBackend } from "../src/backend/js/kernels.js";
import { llamaConfigFromHf } from "../src/io/hfconfig.js";
import { hfTensorName } from "../src/io/names.js";
import { fusedHfLayout } from "../src/io/hflayout.js";
import { readSafetensors, type SafetensorsContents } from "../src/io/safetensors.js";
import { backward, createActivations, createGradients, createModel, forward, logitsOf, type Model } from "../src/model/decoder.js";
import { computeLoss } from "../src/loss/losses.js";
import { defaultLossConfig } from "../src/loss/config.js";
import { assertAllClose, fixture, testBackend } from "./helpers.js";

// float32 runs on the backend under test; float64 on the js kernels (the native backend is float32 only).
const backendFor = (ctor: Float32ArrayConstructor | Float64ArrayConstructor): Backend => (ctor === Float64Array ? jsBackend : testBackend());

interface Inputs { ids: number[][]; targets: number[][]; mask: number[][] }

function load(name: string, ctor: Float32ArrayConstructor | Float64ArrayConstructor = Float32Array): { st: SafetensorsContents; model: Model; ids: Int32Array; targets: Int32Array; mask: Float32Array; R: number; T: number } {
  const path = fixture("torch", `${name}.safetensors`);
  const st = readSafetensors(path);
  assert.equal(st.metadata.format, "tsdpo-torch-fixture");
  assert.equal(st.metadata.fixture_version, "1");
  const cfg = llamaConfigFromHf(JSON.parse(st.metadata.config!), path);
  const model = createModel(cfg, ctor);
  // fused (Phi-3) and transposed (GPT-2) tensors go through the loader's own split (io/hflayout.ts)
  const fused = fusedHfLayout(cfg)?.fromHf(cfg, (n) => st.tensors.get(n)!.data as Float32Array) ?? null;
  for (const e of model.entries) {
    if (fused) {
      model.params.set(fused.get(e.name)!, e.offset);
      continue;
    }
    const t = st.tensors.get(hfTensorName(e.name, model.cfg.family));
    assert.ok(t, `fixture lacks ${hfTensorName(e.name, model.cfg.family)}`);
    assert.deepEqual(t.shape, e.shape, e.name);
    model.params.set(t.data as Float32Array, e.offset);
  }
  const inputs = JSON.parse(st.metadata.inputs!) as Inputs;
  const R = inputs.ids.length, T = inputs.ids[0]!.length;
  return {
    st, model, R, T,
    ids: Int32Array.from(inputs.ids.flat()), targets: Int32Array.from(inputs.targets.flat()), mask: Float32Array.from(inputs.mask.flat()),
  };
}

for (const name of ["llama", "qwen2", "qwen3"]) {
  test(`${name}: logits, log-probs and every parameter gradient match PyTorch`, () => {
    const { st, model, ids, targets, mask, R, T } = load(name);
    const be = backendFor(Float32Array);
    const acts = createActivations(model, R, T);
    const logp = forward(be, model, acts, ids, targets, R, T);
    assertAllClose(logitsOf(be, model, acts).subarray(0, R * T * model.cfg.V), st.tensors.get("logits")!.data as Float32Array, 1e-4, 0, `${name} logits`);
    assertAllClose(logp, st.tensors.get("logp")!.data as Float32Array, 1e-4, 0, `${name} logp`);
    let S = 0;
    for (let i = 0; i < R * T; i++) S += mask[i]! * logp[i]!;
    assert.ok(Math.abs(S - Number(st.metadata.S)) < 1e-4, `S ${S} vs ${st.metadata.S}`);
    const grads = createGradients(model);
    backward(be, model, acts, grads, mask);
    for (const e of model.entries) {
      const want = st.tensors.get(`grad.${hfTensorName(e.name, model.cfg.family)}`)!.data as Float32Array;
      assertAllClose(grads.grads.subarray(e.offset, e.offset + e.size), want, 1e-4, 1e-3, `${name} grad ${e.name}`);
    }
  });

  // The reference trajectory is float64. In float64 tsdpo follows it to rounding error. In float32 it follows it
  // to 1e-4 except on `llama`, where one coordinate of layers.0.wq has a true gradient of 6e-9 but float32
  // cancellation noise of ~1e-7: Adam's first step is lr·g/(|g|+eps), so that noise alone moves the weight by
  // 0.005 and the loss drifts by step 10 — how far depends on float32 rounding alone: 3.7e-4 with attention that
  // normalised stored probabilities, 1.7e-3 with the fused kernel that recomputes them from the log-normaliser.
  // That is float32 arithmetic, not a modelling difference, and PyTorch in float32 has the same exposure; the
  // float64 run is the exact check. The native backend (float32 through OpenBLAS) rounds differently again: its llama
  // loss drifts by 3.0e-3 at step 10 (3.2e-4 at most before; measured with OpenBLAS 0.3.21 on AVX2, 2 threads), so
  // its llama tolerance is 6e-3, 0.2% of the 3.0 the loss falls over these steps; qwen2 and qwen3, the same kernels on
  // fixtures without such a coordinate, keep 1e-4 on native too (measured 2.6e-5 and 1.1e-6).
  const llamaTol = backendFor(Float32Array).name === "native" ? 6e-3 : 2.5e-3;
  for (const [ctor, tol] of [[Float64Array, 1e-9], [Float32Array, name === "llama" ? llamaTol : 1e-4]] as const) {
    test(`${name}: ten AdamW steps follow the PyTorch loss trajectory (${ctor.name}, tol ${tol})`, () => {
      const { st, model, ids, targets, mask, R, T } = load(name, ctor);
      const be = backendFor(ctor);
      const adamw = JSON.parse(st.metadata.adamw!) as {
        lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; steps: number; losses: number[]; loss_after: number;
      };
      const acts = createActivations(model, R, T);
      const grads = createGradients(model);
      const m = new ctor(model.params.length), v = new ctor(model.params.length);
      const count = mask.reduce((a, b) => a + b, 0);
      const dlogp = ctor.from(Array.from(mask, (x) => -x / count)); // loss = −S / Σmask
      const lossNow = (): number => {
        const logp = forward(be, model, acts, ids, targets, R, T);
        let s = 0;
        for (let i = 0; i < R * T; i++) s += mask[i]! * logp[i]!;
        return -s / count;
      };
      const losses: number[] = [];
      for (let step = 1; step <= adamw.steps; step++) {
        losses.push(lossNow());
        grads.grads.fill(0);
        backward(be, model, acts, grads, dlogp);
        be.adamwStep(model.params, grads.grads, m, v, model.params.length, adamw.lr, adamw.beta1, adamw.beta2, adamw.eps, adamw.weight_decay, step);
      }
      assert.equal(losses.length, 10);
      assertAllClose(losses, adamw.losses, tol, 0, `${name} AdamW losses`);
      if (ctor === Float64Array) assert.ok(Math.abs(lossNow() - adamw.loss_after) < tol, "loss after the last step");
      if (ctor === Float64Array && st.tensors.has(`adamw_final.${hfTensorName("tok_embd", model.cfg.family)}`))
        for (const e of model.entries)
          assertAllClose(model.params.subarray(e.offset, e.offset + e.size), st.tensors.get(`adamw_final.${hfTensorName(e.name, model.cfg.family)}`)!.data as Float32Array, 1e-6, 0, `${name} final ${e.name}`);
    });
  }
}

// Gemma 2, Gemma 3, SmolLM3, Granite, OLMo 2, GPT-2 and Phi-3 (tools/torch_fixtures.py writes them from Hugging Face's definitions, by hand): the logits,
// log-probs and the gradient of a DPO loss (pairs (0,2) and (1,3), fixed reference log-probs, β from the fixture)
// for every parameter, through tsdpo's own loss (computeLoss), against the fixture's float64 results: to 1e-9 in
// float64 on the js kernels, and to the float32 tolerances above in float32 on the backend under test.
interface DpoMeta { beta: number; chosen_rows: number[]; rejected_rows: number[]; ref_logps: number[]; loss: number }

function dpoGradients(be: Backend, model: Model, st: SafetensorsContents, ids: Int32Array, targets: Int32Array, mask: Float32Array, R: number, T: number) {
  const dpo = JSON.parse(st.metadata.dpo!) as DpoMeta;
  const acts = createActivations(model, R, T);
  const logp = forward(be, model, acts, ids, targets, R, T);
  const rowSum = (r: number): number => {
    let s = 0;
    for (let t = 0; t < T; t++) s += mask[r * T + t]! * logp[r * T + t]!;
    return s;
  };
  const B = dpo.chosen_rows.length;
  const pick = (rows: number[]): Float64Array => Float64Array.from(rows, rowSum);
  const lengths = (rows: number[]): Int32Array => Int32Array.from(rows, (r) => mask.subarray(r * T, (r + 1) * T).reduce((a, b) => a + b, 0));
  const out = computeLoss({ ...defaultLossConfig(), beta: dpo.beta }, {
    policyChosenLogps: pick(dpo.chosen_rows), policyRejectedLogps: pick(dpo.rejected_rows),
    refChosenLogps: Float64Array.from(dpo.chosen_rows, (r) => dpo.ref_logps[r]!), refRejectedLogps: Float64Array.from(dpo.rejected_rows, (r) => dpo.ref_logps[r]!),
    chosenLengths: lengths(dpo.chosen_rows), rejectedLengths: lengths(dpo.rejected_rows),
  });
  const dlogp = new model.ctor(R * T);
  for (let i = 0; i < B; i++)
    for (const [r, d] of [[dpo.chosen_rows[i]!, out.dPolicyChosenLogps[i]!], [dpo.rejected_rows[i]!, out.dPolicyRejectedLogps[i]!]] as const)
      for (let t = 0; t < T; t++) dlogp[r * T + t] = mask[r * T + t]! * d;
  const logits = logitsOf(be, model, acts);
  const grads = createGradients(model);
  backward(be, model, acts, grads, dlogp);
  return { loss: out.loss, want: dpo.loss, logits, logp: Float64Array.from(logp), grads };
}

// phi3-longrope and phi3-shortrope: Phi-4-mini's partial RoPE (6 of 8 features rotate) and LongRoPE, at a length
// past original_max_position_embeddings (long factors) and within it (short factors).
for (const name of ["gemma2", "gemma3", "smollm3", "granite", "olmo2", "gpt2", "phi3", "phi3-longrope", "phi3-shortrope"]) {
  for (const ctor of [Float64Array, Float32Array]) {
    const f64 = ctor === Float64Array;
    test(`${name}: logits, log-probs and the DPO loss's gradient of every parameter match PyTorch (${f64 ? "float64, 1e-9" : "float32"})`, () => {
      const { st, model, ids, targets, mask, R, T } = load(name, ctor);
      const be = backendFor(ctor);
      const got = dpoGradients(be, model, st, ids, targets, mask, R, T);
      const t = (k: string): Float64Array => st.tensors.get(k)!.data as Float64Array; // the float64 results, for both
      const tol = f64 ? 1e-9 : 1e-4;
      assert.ok(Math.abs(got.loss - got.want) <= tol, `DPO loss ${got.loss} vs PyTorch ${got.want}`);
      assertAllClose(got.logits.subarray(0, R * T * model.cfg.V), t("logits64"), tol, 0, `${name} logits`);
      assertAllClose(got.logp, t("logp64"), tol, 0, `${name} logp`);
      // the reference's gradients in tsdpo's layout (fused ones split as their weights are)
      const layout = fusedHfLayout(model.cfg);
      const want = layout
        ? layout.fromHf(model.cfg, (n) => t(`dpo64.grad.${n}`))
        : new Map(model.entries.map((e) => [e.name, t(`dpo64.grad.${hfTensorName(e.name, model.cfg.family)}`)]));
      for (const e of model.entries)
        assertAllClose(got.grads.grads.subarray(e.offset, e.offset + e.size), want.get(e.name)!, tol, f64 ? 0 : 1e-3, `${name} DPO grad ${e.name}`);
    });
  }
}
