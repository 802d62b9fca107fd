// Kernel benchmark: js against native.
//   npx tsc -p . && node dist/bench/kernels.js [--reps 7]
// 0. native: this machine's float32 FMA peak, measured on the spot with every thread (the yardstick for GEMM);
// 1. matmul GFLOP/s at SmolLM-135M's shapes (C = 576, FF = 1536, one sequence of T = 256 tokens): the up/gate
//    projection forward, the down projection forward, and the up projection's backward (dinp and dweight); native
//    also as a share of the FMA peak;
// 2. native: fused attention (one packed preference row of T = 384: prompt 128, chosen 128, rejected 128; NH = 9,
//    NKV = 3, HS = 64) and the fused LM head (M = 256 rows, C = 576, V = 49152), forward and backward;
// 3. one full forward + backward of stories260K on a (2×4, 128) batch: 2B = 8 rows of 128 tokens;
// 4. with --smollm, native only: forward + backward of the SmolLM-135M architecture (random weights) on (2×1, 256).
// Medians over --reps runs after one warm-up. Run it on an otherwise idle machine: it prints the load average
// before and after, and the numbers mean little if that was above ~0.5.

import { availableParallelism, loadavg } from "node:os";
import { parseArgs } from "node:util";
import type { Backend } from "../src/backend/contract.js";
import { jsBackend } from "../src/backend/js/kernels.js";
import { loadNative } from "../src/backend/native/index.js";
import { loadModel } from "../src/io/load.js";
import { assetPath } from "../src/paths.js";
import type { LlamaConfig } from "../src/model/config.js";
import { backward, createActivations, createGradients, createModel, forward } from "../src/model/decoder.js";
import { Rng } from "../src/rng.js";

const { values } = parseArgs({ options: { reps: { type: "string", default: "7" }, smollm: { type: "boolean", default: false } } });
const reps = Number(values.reps);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median wall time of fn in ms, after one warm-up call. */
function time(fn: () => void, n = reps): number {
  fn();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

function random(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next() * 2 - 1;
  return a;
}

const native = loadNative();
const backends: Backend[] = [jsBackend];
if (native.ok) backends.push(native.backend);
else console.log(`native backend unavailable: ${native.reason}`);

const load = (): string => loadavg().map((x) => x.toFixed(2)).join(" ");
console.log(`cpus ${availableParallelism()}, load average before: ${load()}`);
if (native.ok) console.log(`native: ${JSON.stringify(native.info())}`);
const peak = native.ok ? native.fmaPeakGflops(300) : 0;
if (native.ok) console.log(`native FMA peak (${native.info().simd}, ${native.info().threads} threads): ${peak.toFixed(1)} GFLOP/s`);

const rng = new Rng(1);
const T = 256, C = 576, FF = 1536;
const cases = [
  { what: `matmul fwd  ${T}x${C} · (${FF}x${C})ᵀ`, N: T, IC: C, OC: FF, bwd: false },
  { what: `matmul fwd  ${T}x${FF} · (${C}x${FF})ᵀ`, N: T, IC: FF, OC: C, bwd: false },
  { what: `matmul bwd  ${T}x${C} · (${FF}x${C})ᵀ (dinp + dW)`, N: T, IC: C, OC: FF, bwd: true },
];
console.log("\nmatmul GFLOP/s (median)");
for (const c of cases) {
  const inp = random(c.N * c.IC, rng), w = random(c.OC * c.IC, rng), out = random(c.N * c.OC, rng);
  const dinp = new Float32Array(c.N * c.IC), dw = new Float32Array(c.OC * c.IC);
  const flops = 2 * c.N * c.IC * c.OC * (c.bwd ? 2 : 1);
  const row = [c.what.padEnd(46)];
  for (const be of backends) {
    const ms = time(
      c.bwd ? () => be.matmulBackward(dinp, dw, null, out, inp, w, c.N, c.IC, c.OC) : () => be.matmulForward(out, inp, w, null, c.N, c.IC, c.OC),
      be.name === "js" ? Math.min(reps, 5) : Math.max(reps, 20),
    );
    const gflops = flops / ms / 1e6;
    row.push(`${be.name} ${gflops.toFixed(1).padStart(7)}${be.name === "native" && peak > 0 ? ` (${((100 * gflops) / peak).toFixed(0)}% of peak)` : ""}`);
  }
  console.log(row.join("   "));
}

if (native.ok) {
  const be = native.backend;
  const AT = 384, NH = 9, NKV = 3, HS = 64;
  const q = random(AT * NH * HS, rng), k = random(AT * NKV * HS, rng), v = random(AT * NKV * HS, rng);
  const dout = random(AT * NH * HS, rng);
  const out = new Float32Array(q.length), lse = new Float32Array(NH * AT);
  const dq = new Float32Array(q.length), dk = new Float32Array(k.length), dv = new Float32Array(v.length);
  console.log(`\nnative fused attention, T = ${AT}, NH = ${NH}, NKV = ${NKV}, HS = ${HS}, ms (median)`);
  for (const branch of [null, Int32Array.from([128, 256])]) {
    const f = time(() => be.attentionForward(out, lse, q, k, v, branch, 1, AT, NH, NKV, HS, 0, 1 / Math.sqrt(HS), 0));
    const b = time(() => be.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, branch, 1, AT, NH, NKV, HS, 0, 1 / Math.sqrt(HS), 0));
    console.log(`${(branch ? "packed pair [P, S] = [128, 256]" : "plain causal").padEnd(32)} forward ${f.toFixed(2)}   backward ${b.toFixed(2)}`);
  }
  const M = 256, V = 49152;
  const x = random(M * C, rng), W = random(V * C, rng).map((a) => a * 0.05);
  const rows = Int32Array.from({ length: M }, (_, m) => m);
  const targets = Int32Array.from({ length: M }, () => Math.floor(rng.next() * V));
  const logp = new Float32Array(M), hlse = new Float32Array(M), logitSum = new Float32Array(M), logSumSq = new Float32Array(M);
  const dx = new Float32Array(M * C), dW = new Float32Array(V * C), dlogp = new Float32Array(M).fill(-1 / M);
  const f = time(() => be.lmHeadLogprobForward(logp, hlse, logitSum, logSumSq, x, rows, targets, W, M, C, V, 0), Math.min(reps, 5));
  const b = time(() => be.lmHeadLogprobBackward(dx, dW, dlogp, x, rows, targets, W, hlse, M, C, V, 0), Math.min(reps, 5));
  const gf = (2 * M * C * V) / 1e6; // one (M,C)·(C,V) product, in MFLOP: forward does one, backward three
  console.log(`\nnative fused LM head, M = ${M}, C = ${C}, V = ${V}, ms (median)`);
  console.log(`forward ${f.toFixed(1)} (${(gf / f).toFixed(0)} GFLOP/s)   backward with dW ${b.toFixed(1)} (${((3 * gf) / b).toFixed(0)} GFLOP/s)`);
}

const { model } = loadModel(assetPath("models", "stories260K", "stories260K.gguf"));
const R = 2 * 4, TT = 128, V = model.cfg.V;
const ids = Int32Array.from({ length: R * TT }, () => 1 + Math.floor(rng.next() * (V - 1)));
const targets = Int32Array.from({ length: R * TT }, (_, i) => ids[(i + 1) % (R * TT)]!);
const dlogp = new Float32Array(R * TT).fill(-1 / (R * TT));
const acts = createActivations(model, R, TT);
const grads = createGradients(model);
console.log(`\nstories260K forward + backward, (2×4, ${TT}) batch, ms (median)`);
const row: string[] = [];
const ms: Record<string, number> = {};
for (const be of backends) {
  ms[be.name] = time(() => {
    forward(be, model, acts, ids, targets, R, TT);
    grads.grads.fill(0);
    backward(be, model, acts, grads, dlogp);
  });
  row.push(`${be.name} ${ms[be.name]!.toFixed(1)}`);
}
if (ms.native !== undefined) row.push(`speed-up ${(ms.js! / ms.native).toFixed(1)}×`);
console.log(row.join("   "));

if (values.smollm && native.ok) {
  // SmolLM-135M's config.json
  const cfg: LlamaConfig = {
    family: "llama", V: 49152, C: 576, L: 30, NH: 9, NKV: 3, HS: 64, FF: 1536, ropeTheta: 10000,
    ropeScaling: { type: "none" }, rmsEps: 1e-5, tiedEmbeddings: true, qkvBias: false, qkNorm: false, maxSeqLen: 2048,
    slidingWindow: null,
  };
  const big = createModel(cfg);
  for (let i = 0; i < big.params.length; i++) big.params[i] = (rng.next() * 2 - 1) * 0.05;
  const R2 = 2, T2 = 256;
  const ids2 = Int32Array.from({ length: R2 * T2 }, () => Math.floor(rng.next() * cfg.V));
  const targets2 = Int32Array.from({ length: R2 * T2 }, (_, i) => ids2[(i + 1) % (R2 * T2)]!);
  const dlogp2 = new Float32Array(R2 * T2).fill(-1 / (R2 * T2));
  const acts2 = createActivations(big, R2, T2);
  const grads2 = createGradients(big);
  const be = native.backend;
  const ms2 = time(() => {
    forward(be, big, acts2, ids2, targets2, R2, T2);
    grads2.grads.fill(0);
    backward(be, big, acts2, grads2, dlogp2);
  }, Math.min(reps, 3));
  console.log(`\nSmolLM-135M forward + backward, (2×1, ${T2}) batch: native ${ms2.toFixed(0)} ms (median)`);
}
console.log(`\nload average after: ${load()}`);
