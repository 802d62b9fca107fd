// A GGUF whose matrices are stored quantised runs with its blocks kept as they are (src/model/weights.ts: a panel of
// rows dequantised per product, one row per embedded token, the vocabulary a chunk at a time in the LM head). The
// reference is the same file loaded with `dequantize`, every block expanded to float32 up front by the codecs that
// test/quant.test.ts checks bit for bit against ggml: logits, training log-probs and their gradients through a
// LoRA step, generation, and export must agree up to float rounding order.
//
// The quantised files are stories260K's own weights re-encoded by tsdpo's quantiser (its widths, 64 and 172, are
// not multiples of 256, so this covers the 32-element block types; K-quants come with llama.cpp-made files).

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportGguf } from "../src/export/gguf.js";
import { exportHf } from "../src/export/hf.js";
import { readGguf } from "../src/io/gguf.js";
import { loadModel } from "../src/io/load.js";
import { type GgufTensorToWrite, readGgufMetadataTyped, writeGguf } from "../src/io/ggufwriter.js";
import { createLora } from "../src/model/lora.js";
import { backward, createActivations, forward, logitsOf } from "../src/model/decoder.js";
import { isQuant, matmulBackwardW, quantWeight } from "../src/model/weights.js";
import { BLOCK, GGML_TYPE_ID, type QuantType, quantizeRow, rowBytes } from "../src/quant/ggml.js";
import { generate } from "../src/sample/generate.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import { fixture, maxAbsDiff, storiesGguf, testBackend } from "./helpers.js";
import { SIMD_LEVELS, loadNative } from "../src/backend/native/index.js";
import { referenceBackend } from "../src/backend/js/kernels.js";
import { Rng } from "../src/rng.js";

const be = testBackend();
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-quant-model-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** stories260K with every matrix whose rows fit `type`'s blocks re-encoded as `type` (the rest stay F32). */
function quantisedStories(type: QuantType): string {
  const f32 = join(tmp, "stories-f32.gguf");
  exportGguf(loadModel(storiesGguf), f32, { dtype: "F32" });
  const f = readGguf(f32);
  const tensors: GgufTensorToWrite[] = [];
  for (const t of f.tensors.values()) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = f.buffer.readFloatLE(f.dataOffset + t.offset + 4 * i);
    const [cols, rows] = t.dims as [number, number];
    if (t.dims.length === 2 && cols % BLOCK[type].elems === 0) {
      const rb = rowBytes(type, cols);
      const bytes = new Uint8Array(rows * rb);
      for (let r = 0; r < rows; r++) quantizeRow(type, data, r * cols, cols, bytes, r * rb);
      tensors.push({ name: t.name, dims: t.dims, type: "F32", data: new Float32Array(0), blocks: { bytes, blockType: GGML_TYPE_ID[type] } });
    } else tensors.push({ name: t.name, dims: t.dims, type: "F32", data });
  }
  const out = join(tmp, `stories-${type}.gguf`);
  writeGguf(out, { metadata: readGgufMetadataTyped(f32), tensors });
  return out;
}

const TYPES: QuantType[] = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"];
// 255 and 511 end the LM head's vocabulary chunks (256 rows): targets there test the chunk edges
const ids = Int32Array.from([1, 403, 407, 262, 255, 350, 261, 399, 511, 278, 1, 65, 290, 7, 420, 300, 9, 2]);

for (const type of TYPES) {
  test(`${type}: blocks kept as stored give the logits of the dequantised model, with no float copy of them`, () => {
    const path = quantisedStories(type);
    const q = loadModel(path);
    const d = loadModel(path, Float32Array, { dequantize: true });
    assert.ok(q.model.quant.size >= 7, `matrices kept quantised (${q.model.quant.size})`);
    for (const w of q.model.quant.values()) assert.equal(w.type, type);
    assert.equal(d.model.quant.size, 0);
    assert.ok(q.model.params.length < d.model.params.length / 2, "the quantised matrices have no place in the float arena");
    assert.ok(isQuant(q.model.p.tokEmbd) && isQuant(q.model.p.layers[0]!.wq));
    const T = ids.length;
    const run = (m: typeof q.model): Float32Array => {
      const acts = createActivations(m, 1, T);
      forward(be, m, acts, ids, ids, 1, T);
      return logitsOf(be, m, acts) as Float32Array;
    };
    const lq = run(q.model), ld = run(d.model);
    // Same weights, different summation order (a panel of rows at a time): float32 rounding only.
    assert.ok(maxAbsDiff(lq, ld) < 2e-4, `max |Δlogit| ${maxAbsDiff(lq, ld)}`);
    // and the quantisation itself moved the logits (the test would pass vacuously if the loader dequantised both)
    const f = run(loadModel(storiesGguf).model);
    assert.ok(maxAbsDiff(lq, f) > 1e-4, `${type} differs from F32 (${maxAbsDiff(lq, f)})`);
    // greedy generation matches token for token
    const gq = generate(be, q.model, [1], [], { maxNewTokens: 24, temperature: 0, topK: 0, topP: 1, seed: 0 }).ids;
    const gd = generate(be, d.model, [1], [], { maxNewTokens: 24, temperature: 0, topK: 0, topP: 1, seed: 0 }).ids;
    assert.deepEqual(gq, gd);
  });
}

test("LoRA on a quantised base: log-probs and adapter gradients equal those on the dequantised base", () => {
  const path = quantisedStories("Q8_0");
  const grads: Float32Array[] = [];
  const logps: Float32Array[] = [];
  for (const dequantize of [false, true]) {
    const { model } = loadModel(path, Float32Array, { dequantize });
    model.lora = createLora(model, { r: 4, alpha: 8, dropout: 0, targets: ["wq", "wv", "w_up", "w_down"] }, 7);
    // B starts at zero (PEFT's init); give it values so that the adapters shape the gradients of A too
    for (let i = 0; i < model.lora.params.length; i++) model.lora.params[i] = Math.sin(i * 0.37) * 0.05;
    const T = ids.length;
    const acts = createActivations(model, 1, T);
    const lp = forward(be, model, acts, ids, ids.map((_, i) => ids[(i + 1) % T]!), 1, T);
    logps.push(Float32Array.from(lp));
    model.lora.grads.fill(0);
    backward(be, model, acts, null, lp.map((_, i) => ((i % 3) - 1) * 0.5));
    grads.push(Float32Array.from(model.lora.grads));
  }
  assert.ok(maxAbsDiff(logps[0]!, logps[1]!) < 1e-4, `log-probs ${maxAbsDiff(logps[0]!, logps[1]!)}`);
  const scale = Math.max(...grads[1]!.map(Math.abs));
  assert.ok(scale > 0);
  assert.ok(maxAbsDiff(grads[0]!, grads[1]!) < 1e-4 * scale, `adapter gradients ${maxAbsDiff(grads[0]!, grads[1]!)} of ${scale}`);
});

test("full fine-tuning refuses a quantised base with the way out; LoRA trains on it, and --dequantize trains float32", async () => {
  const path = quantisedStories("Q8_0");
  const base = { model: path, data: fixture("train", "pairs.jsonl"), max_length: 48, max_steps: 2, per_device_train_batch_size: 2, save_minutes: 0 };
  await assert.rejects(
    train(resolveTrainConfig({ ...base, output_dir: join(tmp, "full") }, "test"), null, { quiet: true }),
    (e: Error) => /holds quantised weights \(Q8_0\).*use_peft.*dequantize: true/.test(e.message),
  );
  const lora = await train(resolveTrainConfig({ ...base, use_peft: true, output_dir: join(tmp, "lora") }, "test"), null, { quiet: true });
  assert.ok(Math.abs(lora.lastMetrics.loss! - Math.LN2) < 0.05, "trains (loss near ln 2 after 2 steps)");
  const full = await train(resolveTrainConfig({ ...base, dequantize: true, output_dir: join(tmp, "deq") }, "test"), null, { quiet: true });
  assert.equal(full.steps, 2);
  // the exported LoRA run is the merge onto the dequantised base: it loads as a plain float model
  const out = join(tmp, "merged.gguf");
  const { loadModelForUse } = await import("../src/io/resolve.js");
  exportGguf(loadModelForUse(lora.runDir), out, { dtype: "F32" });
  assert.equal(loadModel(out).model.quant.size, 0);
});

test("the native addon's dequantizeRows equals the js one bit for bit, for every block type, and checks its bounds", (t) => {
  const native = loadNative();
  if (!native.ok) return t.skip(`native addon not available: ${native.reason}`);
  const rng = new Rng(99);
  const cols = 512, rows = 5;
  for (const type of Object.keys(GGML_TYPE_ID) as QuantType[]) {
    // any bytes are a valid block except halves that decode to NaN/Inf, which both sides pass through alike
    const src = new Uint8Array(3 + rows * rowBytes(type, cols));
    for (let i = 0; i < src.length; i++) src[i] = Math.floor(rng.next() * 256);
    const a = new Float32Array(rows * cols), b = new Float32Array(rows * cols);
    native.backend.dequantizeRows(a, src, GGML_TYPE_ID[type], 3, rows, cols);
    referenceBackend.dequantizeRows(b, src, GGML_TYPE_ID[type], 3, rows, cols);
    assert.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), `${type}: native and js differ`);
  }
  assert.throws(() => native.backend.dequantizeRows(new Float32Array(64), new Uint8Array(30), GGML_TYPE_ID.Q8_0, 0, 1, 64), /src has 30 elements but the sizes need 68/);
  assert.throws(() => native.backend.dequantizeRows(new Float32Array(64), new Uint8Array(300), 99, 0, 1, 64), /ggml type 99/);
});

test("ref_dtype keeps full fine-tuning's frozen reference as bf16 or q8_0 blocks; its step-1 rewards are the log-prob gaps", async () => {
  const base = { data: fixture("train", "pairs.jsonl"), max_length: 48, max_steps: 1, per_device_train_batch_size: 16, save_minutes: 0, learning_rate: 0 };
  const f32 = await train(resolveTrainConfig({ ...base, output_dir: join(tmp, "ref-f32") }, "test"), null, { quiet: true });
  assert.equal(f32.lastMetrics["rewards/chosen"], 0, "policy = reference");
  for (const dtype of ["bf16", "q8_0"] as const) {
    const r = await train(resolveTrainConfig({ ...base, ref_dtype: dtype, output_dir: join(tmp, `ref-${dtype}`) }, "test"), null, { quiet: true });
    const c = r.lastMetrics["rewards/chosen"]!;
    // β·(log π − log π_ref) over 16 pairs: no longer zero, and small (the reference moved by rounding only)
    assert.ok(c !== 0 && Math.abs(c) < 0.2, `${dtype}: rewards/chosen ${c}`);
    assert.equal(JSON.parse(readFileSync(join(tmp, `ref-${dtype}`, "config.json"), "utf8")).ref_dtype, dtype);
  }
});

test("bf16/f16 weights (HF safetensors, GGUF F16) stay halves when frozen and become float32 for full fine-tuning", async () => {
  const hf = join(tmp, "stories-bf16");
  exportHf(loadModel(storiesGguf), hf, { dtype: "BF16", maxShardBytes: 1e9 });
  const f16 = join(tmp, "stories-f16.gguf");
  exportGguf(loadModel(storiesGguf), f16, { dtype: "F16" });
  for (const [path, type] of [[hf, "BF16"], [f16, "F16"]] as const) {
    const kept = loadModel(path), floats = loadModel(path, Float32Array, { halvesAsFloat: true });
    const wq = kept.model.p.layers[0]!.wq;
    assert.ok(isQuant(wq) && wq.type === type, `${type} kept as stored`);
    assert.equal(floats.model.quant.size, 0);
    const T = ids.length;
    const run = (m: typeof kept.model): Float32Array => {
      const acts = createActivations(m, 1, T);
      forward(be, m, acts, ids, ids, 1, T);
      return logitsOf(be, m, acts) as Float32Array;
    };
    assert.ok(maxAbsDiff(run(kept.model), run(floats.model)) < 1e-4, `${type}: halves read as stored = as float32`);
  }
  // full fine-tuning reads them as float32 and trains; LoRA keeps them
  const full = await train(resolveTrainConfig({ model: hf, data: fixture("train", "pairs.jsonl"), max_length: 48, max_steps: 1, save_minutes: 0, output_dir: join(tmp, "bf16-full") }, "test"), null, { quiet: true });
  assert.equal(full.steps, 1);
});

test("LoRA on a quantised base resumes bit-identically after its later checkpoints are lost (as after kill -9)", async () => {
  const path = quantisedStories("Q4_0");
  const dir = join(tmp, "lora-resume");
  const cfg = resolveTrainConfig({
    model: path, data: fixture("train", "pairs.jsonl"), max_length: 48, max_steps: 4, save_steps: 2, save_minutes: 0,
    per_device_train_batch_size: 2, use_peft: true, lora_dropout: 0.1, learning_rate: 1e-2, output_dir: dir,
  }, "test");
  await train(cfg, null, { quiet: true });
  const adapter = (d: string): Buffer => readFileSync(join(d, "adapter_model.safetensors"));
  const uninterrupted = adapter(join(dir, "final"));
  rmSync(join(dir, "final"), { recursive: true });
  rmSync(join(dir, "checkpoints", "step-4"), { recursive: true });
  await train(cfg, dir, { resume: true, quiet: true });
  assert.ok(adapter(join(dir, "final")).equals(uninterrupted));
});

test("a quantised product's backward gives dinp and dbias as the float product's does (dbias needs no weight)", () => {
  const IN = 64, OUT = 96, N = 5;
  const rng = new Rng(3);
  const w = Float32Array.from({ length: OUT * IN }, () => rng.next() - 0.5);
  const bytes = new Uint8Array(OUT * rowBytes("Q8_0", IN));
  for (let o = 0; o < OUT; o++) quantizeRow("Q8_0", w, o * IN, IN, bytes, o * rowBytes("Q8_0", IN));
  const q = quantWeight("Q8_0", bytes, OUT, IN);
  const wd = new Float32Array(OUT * IN);
  referenceBackend.dequantizeRows(wd, bytes, GGML_TYPE_ID.Q8_0, 0, OUT, IN);
  const dout = Float32Array.from({ length: N * OUT }, () => rng.next() - 0.5);
  const inp = Float32Array.from({ length: N * IN }, () => rng.next() - 0.5);
  const [dinpQ, dbiasQ, dinpF, dbiasF] = [N * IN, OUT, N * IN, OUT].map((n) => new Float32Array(n).fill(0.25));
  matmulBackwardW(be, dinpQ, null, dbiasQ, dout, inp, q, N, IN, OUT);
  be.matmulBackward(dinpF, null, dbiasF, dout, inp, wd, N, IN, OUT);
  assert.ok(maxAbsDiff(dinpQ!, dinpF!) < 1e-5, `dinp ${maxAbsDiff(dinpQ!, dinpF!)}`);
  assert.ok(maxAbsDiff(dbiasQ!, dbiasF!) < 1e-5, `dbias ${maxAbsDiff(dbiasQ!, dbiasF!)}`);
});

test("the native fused quantised products and LM head have the bits of the float ones on the dequantised weights", (t) => {
  const native = loadNative();
  if (!native.ok) return t.skip(`native addon not available: ${native.reason}`);
  const nb = native.backend;
  const rng = new Rng(7);
  const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.next() - 0.5);
  const same = (a: Float32Array, b: Float32Array, what: string): void => assert.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), what);
  /** W (rows, cols) of random floats encoded as `type`, after `pad` leading bytes, and its dequantised floats. */
  const encoded = (type: QuantType, rows: number, cols: number, pad: number): { q: Uint8Array; f: Float32Array } => {
    const w = rand(rows * cols), rb = rowBytes(type, cols), q = new Uint8Array(pad + rows * rb);
    for (let r = 0; r < rows; r++) quantizeRow(type, w, r * cols, cols, q, pad + r * rb);
    const f = new Float32Array(rows * cols);
    nb.dequantizeRows(f, q, GGML_TYPE_ID[type], pad, rows, cols);
    return { q, f };
  };
  // IC 4864 = 19 blocks of 256 is cut into GEMM depths of 487, so packed spans start inside a block; OC 2600 walks
  // past the GEMM's 1536- and 2304-column spans; 3 threads split the columns off every block boundary.
  const shapes: [QuantType, number, number, number][] = [["Q4_K", 5, 4864, 40], ["Q8_0", 7, 96, 2600], ["Q6_K", 3, 512, 1100], ["Q5_0", 9, 160, 33], ["BF16", 4, 70, 50]];
  const weights = new Map(shapes.map(([type, , IC, OC]) => [type, encoded(type, OC, IC, 3)]));
  const heads = new Map((["Q8_0", "Q4_K"] as QuantType[]).map((type) => [type, encoded(type, 5000, 256, 0)]));
  const threadsBefore = native.info().threads, simdBefore = native.info().simd;
  // every instruction-set copy the CPU runs (each has its own packing and dequantisation loops), on 1, 2 and 3 threads
  for (const [level, threads] of SIMD_LEVELS.flatMap((l) => [1, 2, 3].map((n) => [l, n] as const))) {
    if (!native.setSimd(level)) continue;
    native.setThreads(threads);
    try {
      for (const [type, N, IC, OC] of shapes) {
        const { q, f } = weights.get(type)!;
        const inp = rand(N * IC), bias = rand(OC), dout = rand(N * OC);
        const o1 = new Float32Array(N * OC), o2 = new Float32Array(N * OC);
        nb.matmulForward(o1, inp, f, bias, N, IC, OC);
        nb.matmulForwardQuant!(o2, inp, q, GGML_TYPE_ID[type], 3, bias, N, IC, OC);
        same(o1, o2, `${level} ${type} forward (${N}, ${IC}, ${OC}), ${threads} threads`);
        const d1 = new Float32Array(N * IC).fill(0.5), d2 = new Float32Array(N * IC).fill(0.5);
        nb.matmulBackward(d1, null, null, dout, inp, f, N, IC, OC);
        nb.matmulBackwardQuant!(d2, dout, q, GGML_TYPE_ID[type], 3, N, IC, OC);
        same(d1, d2, `${level} ${type} backward dinp (${N}, ${IC}, ${OC}), ${threads} threads`);
      }
      // the head: V = 5000 crosses its 4096-entry vocabulary tile; rows repeat and one dlogp is 0
      for (const type of ["Q8_0", "Q4_K"] as QuantType[]) {
        const M = 6, C = 256, V = 5000, X = 4;
        const { q, f } = heads.get(type)!;
        const x = rand(X * C), rows = Int32Array.from([0, 1, 1, 3, 2, 0]), targets = Int32Array.from([0, 4095, 4096, 4999, 17, 3000]);
        const outs = [0, 1].map(() => ({ logp: new Float32Array(M), lse: new Float32Array(M), sum: new Float32Array(M), sq: new Float32Array(M), dx: new Float32Array(X * C) }));
        const dlogp = Float32Array.from([1, -0.5, 0, 2, 0.25, -1]);
        const [a, b] = outs as [(typeof outs)[0], (typeof outs)[0]];
        nb.lmHeadLogprobForward(a.logp, a.lse, a.sum, a.sq, x, rows, targets, f, M, C, V, 0);
        nb.lmHeadLogprobForwardQuant!(b.logp, b.lse, b.sum, b.sq, x, rows, targets, q, GGML_TYPE_ID[type], M, C, V, 0);
        for (const k of ["logp", "lse", "sum", "sq"] as const) same(a[k], b[k], `${level} ${type} head ${k}, ${threads} threads`);
        nb.lmHeadLogprobBackward(a.dx, null, dlogp, x, rows, targets, f, a.lse, M, C, V, 0);
        nb.lmHeadLogprobBackwardQuant!(b.dx, dlogp, x, rows, targets, q, GGML_TYPE_ID[type], b.lse, M, C, V, 0);
        same(a.dx, b.dx, `${level} ${type} head dx, ${threads} threads`);
      }
    } finally {
      native.setThreads(threadsBefore);
      native.setSimd(simdBefore);
    }
  }
});
