// The kernels Gemma 2 and 3 add (issue 16): attention with a chosen score scale and tanh soft-capping, the LM head
// with final-logit soft-capping, GeGLU with the tanh GELU, and RMSNorm with a weight offset.
//
// js: each kernel (the reference, and the fast path where the js backend has one) against a hand-written float64
// computation straight from the formula (O(T²) loops, its own visibility rule for packed rows), and every backward
// against central finite differences in float64.
// native: each kernel against the float64 reference on the same float32 inputs, on every instruction set this CPU
// runs, with test/native.test.ts's tolerances (its header derives them): sums of K products to
// |a − b| ≤ rel·max|b| + rel·|b| with rel = 1e-5 (or the score error √HS·u·|q||k| when larger), one rounding of a
// double to 1e-6. Soft-capping adds tanh_f32's error (≲ 2 u relative on a capped value ≤ softcap) to each score or
// logit, which the LM head's bound includes.

import { test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, Buf } from "../src/backend/contract.js";
import { jsBackend, referenceBackend as ref } from "../src/backend/js/kernels.js";
import { loadNative, SIMD_LEVELS } from "../src/backend/native/index.js";
import { GGML_TYPE_ID, dequantizeRow, quantizeRow, rowBytes } from "../src/quant/ggml.js";
import { lmHeadLogprobBackwardW, lmHeadLogprobForwardW, quantWeight } from "../src/model/weights.js";
import { assertAllClose, checkGradients, logitScale, nativeSimdRuns, rng } from "./helpers.js";

const u = 2 ** -24;
const f64 = (n: number, r: () => number, scale = 1): Float64Array => Float64Array.from({ length: n }, () => (r() * 2 - 1) * scale);
const f32 = (n: number, r: () => number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
const wide = (a: Float32Array): Float64Array => Float64Array.from(a);
const maxAbs = (a: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
};
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};
const cap = (s: number, c: number): number => (c > 0 ? c * Math.tanh(s / c) : s);

// ---------------------------------------------------------------------------------------------------------------
// Attention: direct from the definition

/**
 * Whether query i may see key j in a row packing prompt ++ chosen ++ rejected with branch [P, S] (S ≥ T: no branch),
 * written from the rule itself: causal; a rejected-answer query (i ≥ S) skips the chosen answer P..S−1 and counts
 * positions as if the chosen answer were not there; the window bounds the position distance.
 */
function sees(i: number, j: number, P: number, S: number, window: number): boolean {
  if (j > i) return false;
  let pi = i, pj = j;
  if (i >= S) {
    if (j >= P && j < S) return false;
    pi = i - (S - P);
    pj = j < P ? j : j - (S - P);
  }
  return window === 0 || pi - pj < window;
}

interface AttentionCase {
  R: number; T: number; NH: number; NKV: number; HS: number; window: number; branch: [number, number][] | null; scale: number; softcap: number;
}

function attentionDirect(c: AttentionCase, q: Buf, k: Buf, v: Buf): { out: Float64Array; lse: Float64Array } {
  const { R, T, NH, NKV, HS, window, branch, scale, softcap } = c;
  const out = new Float64Array(R * T * NH * HS), lse = new Float64Array(R * NH * T);
  for (let r = 0; r < R; r++) {
    const [P, S] = branch ? branch[r]! : [T, T];
    for (let h = 0; h < NH; h++) {
      const kvh = Math.floor(h / (NH / NKV));
      for (let i = 0; i < T; i++) {
        const js: number[] = [], s: number[] = [];
        for (let j = 0; j < T; j++) {
          if (!sees(i, j, P, S, window)) continue;
          let d = 0;
          for (let e = 0; e < HS; e++) d += q[((r * T + i) * NH + h) * HS + e]! * k[((r * T + j) * NKV + kvh) * HS + e]!;
          js.push(j);
          s.push(cap(scale * d, softcap));
        }
        const mx = Math.max(...s);
        const z = s.reduce((a, x) => a + Math.exp(x - mx), 0);
        lse[(r * NH + h) * T + i] = mx + Math.log(z);
        js.forEach((j, n) => {
          const p = Math.exp(s[n]! - mx) / z;
          for (let e = 0; e < HS; e++) out[((r * T + i) * NH + h) * HS + e] += p * v[((r * T + j) * NKV + kvh) * HS + e]!;
        });
      }
    }
  }
  return { out, lse };
}

const branchArray = (c: AttentionCase): Int32Array | null => (c.branch ? Int32Array.from(c.branch.flat()) : null);
const attArgs = (c: AttentionCase) => [c.R, c.T, c.NH, c.NKV, c.HS, c.window, c.scale, c.softcap] as const;

// Small enough for finite differences over every element; softcaps near the scores' size, so tanh is far from linear.
const jsAttentionCases: AttentionCase[] = [
  { R: 1, T: 1, NH: 1, NKV: 1, HS: 2, window: 0, branch: null, scale: 0.5, softcap: 1 },
  { R: 2, T: 7, NH: 4, NKV: 2, HS: 3, window: 0, branch: null, scale: 0.3, softcap: 2 }, // GQA
  { R: 1, T: 11, NH: 2, NKV: 1, HS: 4, window: 3, branch: null, scale: 0.5, softcap: 1.5 }, // sliding window
  { R: 2, T: 12, NH: 2, NKV: 2, HS: 4, window: 0, branch: [[3, 7], [4, 12]], scale: 0.4, softcap: 2 }, // packed rows
  { R: 1, T: 13, NH: 3, NKV: 1, HS: 2, window: 4, branch: [[4, 8]], scale: 0.7, softcap: 1 }, // packed + window
  { R: 1, T: 9, NH: 2, NKV: 1, HS: 4, window: 0, branch: [[2, 5]], scale: 0.9, softcap: 0 }, // a scale alone
];

for (const c of jsAttentionCases) {
  const name = `R=${c.R} T=${c.T} NH=${c.NH} NKV=${c.NKV} HS=${c.HS} window=${c.window} branch=${JSON.stringify(c.branch)} scale=${c.scale} softcap=${c.softcap}`;
  test(`js attention ${name}: reference and fast equal the direct computation; backward by finite differences`, (t) => {
    const r = rng(100 + c.T + c.NH);
    const qn = c.R * c.T * c.NH * c.HS, kn = c.R * c.T * c.NKV * c.HS;
    const q = f64(qn, r, 3), k = f64(kn, r, 3), v = f64(kn, r);
    const branch = branchArray(c);
    const want = attentionDirect(c, q, k, v);
    for (const be of [ref, jsBackend]) {
      const out = new Float64Array(qn), lse = new Float64Array(c.R * c.NH * c.T);
      be.attentionForward(out, lse, q, k, v, branch, ...attArgs(c));
      assertAllClose(out, want.out, 1e-12, 0, `${be.name} out`);
      assertAllClose(lse, want.lse, 1e-12, 0, `${be.name} lse`);
    }
    // the fast backward against the reference one, from the same forward, onto non-zero gradients
    const out = new Float64Array(qn), lse = new Float64Array(c.R * c.NH * c.T), dout = f64(qn, r);
    ref.attentionForward(out, lse, q, k, v, branch, ...attArgs(c));
    const g = [ref, jsBackend].map((be) => {
      const d = [f64(qn, rng(7)), f64(kn, rng(8)), f64(kn, rng(9))];
      be.attentionBackward(d[0]!, d[1]!, d[2]!, dout, q, k, v, out, lse, branch, ...attArgs(c));
      return d;
    });
    for (let i = 0; i < 3; i++) assertAllClose(g[1]![i]!, g[0]![i]!, 1e-12, 1e-10, `fast d${"qkv"[i]}`);
    const fd = checkGradients("attention", { q, k, v }, () => (ref.attentionForward(out, lse, q, k, v, branch, ...attArgs(c)), out), (d) => {
      ref.attentionForward(out, lse, q, k, v, branch, ...attArgs(c));
      const gq = new Float64Array(qn), gk = new Float64Array(kn), gv = new Float64Array(kn);
      ref.attentionBackward(gq, gk, gv, d, q, k, v, out, lse, branch, ...attArgs(c));
      return { q: gq, k: gk, v: gv };
    }, r);
    t.diagnostic(`max |analytic − finite difference| ${fd.toExponential(2)}`);
  });
}

test("js attentionDecode with a scale and a soft cap equals the direct computation, window or not", () => {
  const r = rng(120);
  const T = 9, NH = 4, NKV = 2, HS = 3;
  for (const window of [0, 4]) {
    const c: AttentionCase = { R: 1, T, NH, NKV, HS, window, branch: null, scale: 0.6, softcap: 1.25 };
    const q = f64(T * NH * HS, r, 3), k = f64(T * NKV * HS, r, 3), v = f64(T * NKV * HS, r);
    const want = attentionDirect(c, q, k, v).out;
    for (const be of [ref, jsBackend]) {
      const dec = new Float64Array(T * NH * HS);
      be.attentionDecode(dec.subarray(0, 3 * NH * HS), q.subarray(0, 3 * NH * HS), k, v, 3, 0, NH, NKV, HS, window, 0.6, 1.25);
      for (let t = 3; t < T; t++)
        be.attentionDecode(dec.subarray(t * NH * HS, (t + 1) * NH * HS), q.subarray(t * NH * HS, (t + 1) * NH * HS), k, v, 1, t, NH, NKV, HS, window, 0.6, 1.25);
      assertAllClose(dec, want, 1e-12, 0, `${be.name} decode window=${window}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------------------------
// LM head with final-logit soft-capping

function headDirect(x: Buf, W: Buf, rows: Int32Array, targets: Int32Array, M: number, C: number, V: number, softcap: number): Float64Array[] {
  const [logp, lse, sum, lss] = [0, 1, 2, 3].map(() => new Float64Array(M)) as [Float64Array, Float64Array, Float64Array, Float64Array];
  for (let m = 0; m < M; m++) {
    const z = Array.from({ length: V }, (_, v) => {
      let d = 0;
      for (let c = 0; c < C; c++) d += x[rows[m]! * C + c]! * W[v * C + c]!;
      return cap(d, softcap);
    });
    const mx = Math.max(...z);
    const l = mx + Math.log(z.reduce((a, zv) => a + Math.exp(zv - mx), 0));
    logp[m] = z[targets[m]!]! - l;
    lse[m] = l;
    sum[m] = z.reduce((a, b) => a + b, 0);
    lss[m] = Math.log(z.reduce((a, zv) => a + Math.exp(zv - l) ** 2, 0));
  }
  return [logp, lse, sum, lss];
}

test("js LM head with a soft cap: reference, fast and the chunked quantised path equal the direct computation; backward by finite differences", (t) => {
  const r = rng(130);
  const softcap = 3;
  for (const [N, C, V, M] of [[1, 1, 1, 1], [5, 3, 9, 4], [40, 9, 37, 35]] as const) {
    const x = f64(N * C, r, 2), W = f64(V * C, r, 2);
    if (N > 1) x[C] = 300; // row 1's raw logits reach hundreds: capped to ±3, and still finite
    const rows = Int32Array.from({ length: M }, (_, m) => (m * 7 + 1) % N);
    const targets = Int32Array.from({ length: M }, (_, m) => (m * 5 + 1) % V);
    const want = headDirect(x, W, rows, targets, M, C, V, softcap);
    for (const be of [ref, jsBackend]) {
      const o = [0, 1, 2, 3].map(() => new Float64Array(M));
      be.lmHeadLogprobForward(o[0]!, o[1]!, o[2]!, o[3]!, x, rows, targets, W, M, C, V, softcap);
      for (let i = 0; i < 4; i++) assertAllClose(o[i]!, want[i]!, 1e-11, 1e-12, `${be.name} ${["logp", "lse", "logitSum", "logSumSq"][i]} M=${M}`);
    }
    const dlogp = f64(M, r);
    dlogp[0] = 0; // a masked position
    const lse = want[1]!;
    const g = [ref, jsBackend].map((be) => {
      const d = [f64(N * C, rng(1)), f64(V * C, rng(2))];
      be.lmHeadLogprobBackward(d[0]!, d[1]!, dlogp, x, rows, targets, W, lse, M, C, V, softcap);
      return d;
    });
    for (let i = 0; i < 2; i++) assertAllClose(g[1]![i]!, g[0]![i]!, 1e-11, 1e-11, `fast ${["dx", "dW"][i]} M=${M}`);
  }
  // finite differences on moderate values, where the cap bends but does not flatten the gradient
  const N = 5, C = 3, V = 9, M = 4;
  const x = f64(N * C, r, 2), W = f64(V * C, r, 2);
  const rows = Int32Array.from([1, 3, 1, 4]), targets = Int32Array.from([0, 2, 8, 5]);
  const logp = new Float64Array(M), lse = new Float64Array(M), sum = new Float64Array(M);
  const fd = checkGradients("capped lm head", { x, W }, () => (ref.lmHeadLogprobForward(logp, lse, sum, null, x, rows, targets, W, M, C, V, 1.5), logp), (d) => {
    ref.lmHeadLogprobForward(logp, lse, sum, null, x, rows, targets, W, M, C, V, 1.5);
    const dx = new Float64Array(x.length), dW = new Float64Array(W.length);
    ref.lmHeadLogprobBackward(dx, dW, d, x, rows, targets, W, lse, M, C, V, 1.5);
    return { x: dx, W: dW };
  }, r);
  // logitSum is a sum of capped logits: its gradient by finite differences too (through the same forward)
  const fdSum = checkGradients("capped logit sum", { x }, () => (ref.lmHeadLogprobForward(logp, lse, sum, null, x, rows, targets, W, M, C, V, 1.5), sum), (d) => {
    // d Σ_v cap(z_v) / dx = Σ_v d_m (1 − tanh²(z_v/c)) W_v, written out directly
    const dx = new Float64Array(x.length);
    for (let m = 0; m < M; m++)
      for (let v = 0; v < V; v++) {
        let z = 0;
        for (let c = 0; c < C; c++) z += x[rows[m]! * C + c]! * W[v * C + c]!;
        const th = Math.tanh(z / 1.5);
        for (let c = 0; c < C; c++) dx[rows[m]! * C + c] += d[m]! * (1 - th * th) * W[v * C + c]!;
      }
    return { x: dx };
  }, r);
  t.diagnostic(`max |analytic − finite difference|: logp ${fd.toExponential(2)}, logitSum ${fdSum.toExponential(2)}`);
});

test("js chunked LM head over a quantised weight (src/model/weights.ts) applies the soft cap as the float head does", () => {
  const r = rng(140);
  const M = 7, C = 64, V = 600, N = 5, softcap = 2; // V crosses the 256-entry chunks
  const wf = f32(V * C, r);
  const rb = rowBytes("Q8_0", C), data = new Uint8Array(V * rb);
  for (let v = 0; v < V; v++) quantizeRow("Q8_0", wf, v * C, C, data, v * rb);
  const deq = new Float32Array(V * C);
  for (let v = 0; v < V; v++) dequantizeRow("Q8_0", data, v * rb, deq, v * C, C);
  const W = quantWeight("Q8_0", data, V, C);
  const x = f32(N * C, r, 2);
  const rows = Int32Array.from([0, 1, 1, 4, 2, 3, 0]), targets = Int32Array.from([0, 255, 256, 599, 17, 300, 3]);
  const want = headDirect(wide(x), wide(deq), rows, targets, M, C, V, softcap);
  const o = [0, 1, 2, 3, 4].map(() => new Float32Array(M)), argmax = new Int32Array(M);
  lmHeadLogprobForwardW(jsBackend, o[0]!, o[1]!, o[2]!, o[3]!, x, rows, targets, W, M, C, V, softcap, o[4]!, argmax);
  // float32 logits of sums of 64 products (|terms| ≤ 2): ≲ 1e-5 each; logitSum adds 600 of them
  for (let i = 0; i < 4; i++) assertAllClose(o[i]!, want[i]!, i === 2 ? 1e-3 : 2e-5, 1e-6, `chunked ${["logp", "lse", "logitSum", "logSumSq"][i]}`);
  const wantEntropy = new Float64Array(M), wantArgmax = new Int32Array(M), scratch = [0, 1, 2, 3].map(() => new Float64Array(M));
  ref.lmHeadLogprobForward(scratch[0]!, scratch[1]!, scratch[2]!, scratch[3]!, wide(x), rows, targets, wide(deq), M, C, V, softcap, wantEntropy, wantArgmax);
  assertAllClose(o[4]!, wantEntropy, 1e-4, 1e-6, "chunked entropy");
  // the reference's argmax, or a capped logit closer to it than the float32 logits' error (the cap crowds the top)
  const capped = (m: number, v: number): number => {
    let z = 0;
    for (let c = 0; c < C; c++) z += x[rows[m]! * C + c]! * deq[v * C + c]!;
    return softcap * Math.tanh(z / softcap);
  };
  for (let m = 0; m < M; m++)
    assert.ok(argmax[m] === wantArgmax[m] || Math.abs(capped(m, argmax[m]!) - capped(m, wantArgmax[m]!)) < 2e-5,
      `chunked argmax, row ${m}: ${argmax[m]} against ${wantArgmax[m]}`);
  const dlogp = Float32Array.from([1, -0.5, 0, 2, 0.25, -1, 0.5]);
  const dx = new Float32Array(N * C);
  lmHeadLogprobBackwardW(jsBackend, dx, null, dlogp, x, rows, targets, W, o[1]!, M, C, V, softcap);
  const dx64 = new Float64Array(N * C);
  ref.lmHeadLogprobBackward(dx64, null, wide(dlogp), wide(x), rows, targets, wide(deq), want[1]!, M, C, V, softcap);
  assertAllClose(dx, dx64, 1e-5 * maxAbs(dx64), 1e-5, "chunked dx");
});

// ---------------------------------------------------------------------------------------------------------------
// GeGLU and RMSNorm with an offset

test("js GeGLU: gelu_tanh against its tanh form written out and a 40-digit value at 1, gelu(x) − gelu(−x) = x, in place, backward by finite differences", (t) => {
  // torch's formula as written (the kernel evaluates it as x σ(2u); the tanh form is accurate in absolute terms)
  const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  const r = rng(150);
  const n = 23;
  const gate = f64(n, r, 4), up = f64(n, r, 2);
  for (const [i, g] of [30, -30, 6, -6, 0, 1, -1].entries()) gate[i] = g;
  const out = new Float64Array(n);
  ref.gegluForward(out, gate, up, n);
  for (let i = 0; i < n; i++) assert.ok(Math.abs(out[i]! - geluTanh(gate[i]!) * up[i]!) < 1e-13 * (1 + Math.abs(out[i]!)), `geglu ${i}`);
  const one = new Float64Array(1), minusOne = new Float64Array(1);
  ref.gegluForward(one, Float64Array.of(1), Float64Array.of(1), 1);
  ref.gegluForward(minusOne, Float64Array.of(-1), Float64Array.of(1), 1);
  // gelu_tanh(1) to 40 digits by Python's decimal module (tanh from exp): 0.84119199060827670912276…
  assert.ok(Math.abs(one[0]! - 0.8411919906082767091) < 3e-16, `gelu_tanh(1) = ${one[0]}`);
  assert.ok(Math.abs(one[0]! - minusOne[0]! - 1) < 1e-15, "gelu(1) − gelu(−1) = 1");
  for (const alias of ["gate", "up"] as const) {
    const a = Float64Array.from(alias === "gate" ? gate : up);
    ref.gegluForward(a, alias === "gate" ? a : gate, alias === "up" ? a : up, n);
    assertAllClose(a, out, 0, 0, `out aliasing ${alias}`);
  }
  const fd = checkGradients("geglu", { gate, up }, () => (ref.gegluForward(out, gate, up, n), out), (d) => {
    const dgate = new Float64Array(n), dup = new Float64Array(n);
    jsBackend.gegluBackward(dgate, dup, d, gate, up, n);
    return { gate: dgate, up: dup };
  }, r);
  t.diagnostic(`max |analytic − finite difference| ${fd.toExponential(2)}`);
});

test("js RMSNorm with offset 1 (Gemma): y = x·rstd·(1 + w) by hand; backward by finite differences, dweight included", (t) => {
  const r = rng(160);
  let fd = 0;
  for (const [N, C] of [[1, 1], [3, 7], [4, 17]] as const) {
    const inp = f64(N * C, r, 3), weight = f64(C, r, 0.5);
    const out = new Float64Array(N * C), rstd = new Float64Array(N);
    ref.rmsnormForward(out, rstd, inp, weight, N, C, 1e-6, 1);
    for (let n = 0; n < N; n++) {
      let ms = 0;
      for (let c = 0; c < C; c++) ms += inp[n * C + c]! ** 2 / C;
      for (let c = 0; c < C; c++)
        assert.ok(Math.abs(out[n * C + c]! - (inp[n * C + c]! / Math.sqrt(ms + 1e-6)) * (1 + weight[c]!)) < 1e-12, `y[${n},${c}]`);
    }
    fd = Math.max(fd, checkGradients(`rmsnorm+1 ${N}x${C}`, { inp, weight }, () => (ref.rmsnormForward(out, rstd, inp, weight, N, C, 1e-6, 1), out), (d) => {
      ref.rmsnormForward(out, rstd, inp, weight, N, C, 1e-6, 1);
      const dinp = new Float64Array(N * C), dweight = new Float64Array(C);
      ref.rmsnormBackward(dinp, dweight, d, inp, weight, rstd, N, C, 1);
      return { inp: dinp, weight: dweight };
    }, r));
  }
  t.diagnostic(`max |analytic − finite difference| ${fd.toExponential(2)}`);
});

// ---------------------------------------------------------------------------------------------------------------
// Native against the float64 reference, on every instruction set this CPU runs

const native = loadNative();
const skip = native.ok ? false : `native addon not available: ${native.reason}`;
const nb = (native.ok ? native.backend : null) as Backend;
const threadCounts = native.ok ? [...new Set([1, native.info().threads, 3])] : [1];
function withThreads<T>(n: number, fn: () => T): T {
  if (!native.ok) return fn();
  const before = native.info().threads;
  native.setThreads(n);
  try {
    return fn();
  } finally {
    native.setThreads(before);
  }
}
function close(got: Buf, want: Buf, what: string, rel = 1e-5): number {
  assertAllClose(got, want, rel * maxAbs(want), rel, what);
  return maxDiff(got, want) / Math.max(maxAbs(want), 1e-30);
}
function bitEqual(got: Buf, want: Buf, what: string): void {
  for (let i = 0; i < got.length; i++) if (!Object.is(got[i], want[i])) assert.fail(`${what}: element ${i} is ${got[i]} vs ${want[i]}`);
}
const best = native.ok ? native.info().simd : "portable";

const nativeAttentionCases: (AttentionCase & { s: number })[] = [
  { R: 1, T: 1, NH: 1, NKV: 1, HS: 1, window: 0, branch: null, scale: 0.5, softcap: 1, s: 1 },
  { R: 2, T: 17, NH: 4, NKV: 2, HS: 7, window: 0, branch: null, scale: 0.25, softcap: 5, s: 3 },
  { R: 1, T: 70, NH: 2, NKV: 1, HS: 16, window: 0, branch: null, scale: 0.0625, softcap: 50, s: 4 }, // crosses the 64-row block
  { R: 1, T: 130, NH: 4, NKV: 2, HS: 8, window: 40, branch: null, scale: 0.35, softcap: 2, s: 2 }, // window past a block start
  { R: 3, T: 17, NH: 3, NKV: 1, HS: 7, window: 0, branch: [[5, 17], [4, 9], [3, 40]], scale: 0.3, softcap: 3, s: 2 },
  { R: 1, T: 230, NH: 3, NKV: 3, HS: 5, window: 50, branch: [[70, 150]], scale: 0.45, softcap: 1.5, s: 2 }, // packed, window, blocks
  { R: 1, T: 40, NH: 2, NKV: 1, HS: 8, window: 0, branch: [[10, 25]], scale: 0.35, softcap: 0, s: 2 }, // a scale alone
];

for (const level of SIMD_LEVELS) {
  const skipFor = { skip: skip || (nativeSimdRuns(level) ? false : `this CPU cannot run the ${level} loops`) };
  const useSimd = (): void => void (native.ok && assert.ok(native.setSimd(level), level));

  test(`[${level}] native attention with scale and soft cap: forward, backward and decode against the reference`, skipFor, (t) => {
    useSimd();
    const worst = { out: 0, grad: 0, decode: 0 };
    for (const c of nativeAttentionCases) {
      const r = rng(200 + c.T + c.NH);
      const qn = c.R * c.T * c.NH * c.HS, kn = c.R * c.T * c.NKV * c.HS;
      const q = f32(qn, r, c.s), k = f32(kn, r, c.s), v = f32(kn, r, 10), dout = f32(qn, r);
      const branch = branchArray(c);
      const name = `T=${c.T} window=${c.window} branch=${JSON.stringify(c.branch)} softcap=${c.softcap}`;
      const out64 = new Float64Array(qn), lse64 = new Float64Array(c.R * c.NH * c.T);
      ref.attentionForward(out64, lse64, wide(q), wide(k), wide(v), branch, ...attArgs(c));
      const g0 = [f32(qn, r), f32(kn, r), f32(kn, r)], g64 = g0.map(wide);
      ref.attentionBackward(g64[0]!, g64[1]!, g64[2]!, wide(dout), wide(q), wide(k), wide(v), out64, lse64, branch, ...attArgs(c));
      const run = (): Float32Array[] => {
        const out = new Float32Array(qn).fill(NaN), lse = new Float32Array(c.R * c.NH * c.T).fill(NaN);
        nb.attentionForward(out, lse, q, k, v, branch, ...attArgs(c));
        const g = g0.map((a) => Float32Array.from(a));
        nb.attentionBackward(g[0]!, g[1]!, g[2]!, dout, q, k, v, out, lse, branch, ...attArgs(c));
        return [out, lse, ...g];
      };
      // scores' float32 error √HS·u·|q||k|·scale·√HS, as in native.test.ts (there scale·√HS = 1)
      const rel = Math.max(1e-5, Math.sqrt(c.HS) * u * c.s * c.s * c.scale * Math.sqrt(c.HS));
      let first: Float32Array[] | null = null;
      for (const threads of threadCounts) {
        const [out, lse, ...g] = withThreads(threads, run);
        worst.out = Math.max(worst.out, close(out!, out64, `${name} out, ${threads} threads`, rel));
        assertAllClose(lse!, lse64, rel * Math.max(1, maxAbs(lse64)), 1e-6, `${name} lse, ${threads} threads`);
        for (let i = 0; i < 3; i++) worst.grad = Math.max(worst.grad, close(g[i]!, g64[i]!, `${name} d${"qkv"[i]}, ${threads} threads`, rel));
        if (first) for (let i = 0; i < 5; i++) bitEqual([out, lse, ...g][i]!, first[i]!, `${name} output ${i} on ${threads} threads`);
        first ??= [out!, lse!, ...g];
      }
      if (branch) continue;
      // decode row 0: the first 3 positions at once, then one at a time
      const qs = c.NH * c.HS;
      const dec = new Float32Array(c.T * qs), n0 = Math.min(3, c.T);
      nb.attentionDecode(dec.subarray(0, n0 * qs), q.subarray(0, n0 * qs), k, v, n0, 0, c.NH, c.NKV, c.HS, c.window, c.scale, c.softcap);
      for (let i = n0; i < c.T; i++)
        nb.attentionDecode(dec.subarray(i * qs, (i + 1) * qs), q.subarray(i * qs, (i + 1) * qs), k, v, 1, i, c.NH, c.NKV, c.HS, c.window, c.scale, c.softcap);
      worst.decode = Math.max(worst.decode, close(dec, out64.subarray(0, c.T * qs), `${name} decode`, rel));
    }
    t.diagnostic(`max |native − reference| / max|reference|: out ${worst.out.toExponential(2)}, dq/dk/dv ${worst.grad.toExponential(2)}, decode ${worst.decode.toExponential(2)}`);
  });

  test(`[${level}] native LM head with a soft cap, float and Q8_0 weights: forward and backward against the reference`, skipFor, (t) => {
    useSimd();
    let worstFwd = 0, worstBwd = 0;
    // M, C, V, N, |x|, softcap. V = 9000 is three of the head's 4096-entry tiles; |x| = 40 pushes logits to hundreds
    for (const [M, C, V, N, xScale, softcap] of [[1, 1, 1, 1, 1, 2], [9, 17, 33, 6, 1, 1.5], [40, 64, 9000, 31, 1, 30], [6, 32, 4200, 4, 40, 30]] as const) {
      const r = rng(300 + M + V);
      const x = f32(N * C, r, xScale), W = f32(V * C, r);
      const rows = Int32Array.from({ length: M }, (_, m) => (m * 7 + (m >> 2)) % N);
      const targets = Int32Array.from({ length: M }, () => Math.floor(r() * V));
      const dlogp = f32(M, r);
      for (let m = 1; m < M; m += 3) dlogp[m] = 0;
      const zScale = logitScale(x, rows, W, M, C, V);
      // the raw logits' float32 error (native.test.ts), shrunk by the cap's slope ≤ 1, plus tanh_f32's on the capped value
      const zErr = Math.sqrt(C) * u * zScale + 4 * u * softcap;
      const want = [0, 1, 2, 3, 4].map(() => new Float64Array(M));
      ref.lmHeadLogprobForward(want[0]!, want[1]!, want[2]!, want[3]!, wide(x), rows, targets, wide(W), M, C, V, softcap, want[4]!);
      const dx0 = f32(N * C, r), dW0 = f32(V * C, r), dx64 = wide(dx0), dW64 = wide(dW0);
      ref.lmHeadLogprobBackward(dx64, dW64, wide(dlogp), wide(x), rows, targets, wide(W), want[1]!, M, C, V, softcap);
      const o = [0, 1, 2, 3, 4].map(() => new Float32Array(M).fill(NaN));
      nb.lmHeadLogprobForward(o[0]!, o[1]!, o[2]!, o[3]!, x, rows, targets, W, M, C, V, softcap, o[4]!);
      const at = `M=${M} V=${V} softcap=${softcap}`;
      assertAllClose(o[1]!, want[1]!, zErr, 1e-6, `lse ${at}`);
      // capped logits lie within ±softcap: H = Σ p·(lse − z) moves by at most 2·softcap per unit of logit error
      assertAllClose(o[4]!, want[4]!, 4 * zErr * (1 + 2 * softcap) + 1e-6, 1e-5, `entropy ${at}`);
      assertAllClose(o[0]!, want[0]!, 2 * zErr, 1e-6, `logp ${at}`);
      assertAllClose(o[3]!, want[3]!, 4 * zErr, 1e-6, `logSumSq ${at}`);
      assertAllClose(o[2]!, want[2]!, Math.sqrt(V) * 10 * zErr, 1e-6, `logitSum ${at}`);
      for (let i = 0; i < 4; i++) worstFwd = Math.max(worstFwd, maxDiff(o[i]!, want[i]!));
      const dx = Float32Array.from(dx0), dW = Float32Array.from(dW0);
      nb.lmHeadLogprobBackward(dx, dW, dlogp, x, rows, targets, W, o[1]!, M, C, V, softcap);
      const rel = Math.max(1e-5, 3 * zErr);
      worstBwd = Math.max(worstBwd, close(dx, dx64, `dx ${at}`, rel), close(dW, dW64, `dW ${at}`, rel));
      // the quantised head: the float head's bits on the dequantised weight (the GEMM dequantises while packing)
      if (C % 32 !== 0) continue;
      const rb = rowBytes("Q8_0", C), data = new Uint8Array(V * rb), deq = new Float32Array(V * C);
      for (let v = 0; v < V; v++) {
        quantizeRow("Q8_0", W, v * C, C, data, v * rb);
        dequantizeRow("Q8_0", data, v * rb, deq, v * C, C);
      }
      const a = [0, 1, 2, 3, 4].map(() => new Float32Array(M)), b = [0, 1, 2, 3, 4].map(() => new Float32Array(M));
      const argA = new Int32Array(M), argB = new Int32Array(M).fill(-1);
      nb.lmHeadLogprobForward(a[0]!, a[1]!, a[2]!, a[3]!, x, rows, targets, deq, M, C, V, softcap, a[4]!, argA);
      nb.lmHeadLogprobForwardQuant!(b[0]!, b[1]!, b[2]!, b[3]!, x, rows, targets, data, GGML_TYPE_ID.Q8_0, M, C, V, softcap, b[4]!, argB);
      for (let i = 0; i < 5; i++) bitEqual(b[i]!, a[i]!, `quant head output ${i} ${at}`);
      assert.deepEqual(argB, argA, `quant head argmax ${at}`);
      const da = Float32Array.from(dx0), db = Float32Array.from(dx0);
      nb.lmHeadLogprobBackward(da, null, dlogp, x, rows, targets, deq, a[1]!, M, C, V, softcap);
      nb.lmHeadLogprobBackwardQuant!(db, dlogp, x, rows, targets, data, GGML_TYPE_ID.Q8_0, a[1]!, M, C, V, softcap);
      bitEqual(db, da, `quant head dx ${at}`);
    }
    t.diagnostic(`max |native − reference|: forward outputs ${worstFwd.toExponential(2)}; dx/dW relative to their max ${worstBwd.toExponential(2)}`);
  });

  test(`[${level}] native GeGLU forward (also in place) and backward on odd lengths, |gate| up to 100`, skipFor, (t) => {
    useSimd();
    let worst = 0;
    const r = rng(400);
    for (const n of [1, 3, 7, 17, 33, 1031, 40009]) {
      const gate = f32(n, r, 8), up = f32(n, r, 100), dout = f32(n, r);
      for (const [i, g] of [30, -30, 100, -100, 0, 5.5, -5.5, 1e-4].entries()) if (i < n) gate[i] = g;
      const out = new Float32Array(n), out64 = new Float64Array(n);
      nb.gegluForward(out, gate, up, n);
      ref.gegluForward(out64, wide(gate), wide(up), n);
      // gelu_tanh(g) = g σ(2u): float32 rounds the exponent 2u (|2u| ≈ 1.6 |g| + 0.07 |g|³) to ~2 ulp, and exp turns
      // that into a relative error of ~2u·|2u| in σ where it is small (g < 0); 1e-6 plus 8u·|2u| covers it
      for (let i = 0; i < n; i++) {
        const g = gate[i]!, arg = Math.abs(2 * Math.sqrt(2 / Math.PI) * (g + 0.044715 * g ** 3));
        const tol = 1e-30 + Math.abs(out64[i]!) * (1e-6 + 8 * u * arg);
        if (!(Math.abs(out[i]! - out64[i]!) <= tol)) assert.fail(`geglu fwd n=${n}: gelu(${g})·${up[i]} is ${out[i]}, reference ${out64[i]}`);
      }
      const inPlace = Float32Array.from(gate);
      nb.gegluForward(inPlace, inPlace, up, n);
      bitEqual(inPlace, out, `geglu in place n=${n}`);
      const dg = f32(n, r), du = f32(n, r), dg64 = wide(dg), du64 = wide(du);
      nb.gegluBackward(dg, du, dout, gate, up, n);
      ref.gegluBackward(dg64, du64, wide(dout), wide(gate), wide(up), n);
      worst = Math.max(worst, close(dg, dg64, `geglu dgate n=${n}`, 1e-6), close(du, du64, `geglu dup n=${n}`, 1e-6));
    }
    t.diagnostic(`max |native − reference| / max|reference| of the gradients ${worst.toExponential(2)}`);
  });

  test(`[${level}] native RMSNorm with offset 1 on odd widths and large magnitudes`, skipFor, (t) => {
    useSimd();
    let worst = 0;
    const r = rng(500);
    for (const [N, C, scale] of [[1, 1, 1], [3, 7, 1e4], [5, 17, 1e-3], [4, 576, 300], [41, 1031, 3]] as const) {
      const inp = f32(N * C, r, scale), w = f32(C, r, 0.5), dout = f32(N * C, r, 5);
      const out = new Float32Array(N * C), rstd = new Float32Array(N), out64 = new Float64Array(N * C), rstd64 = new Float64Array(N);
      nb.rmsnormForward(out, rstd, inp, w, N, C, 1e-6, 1);
      ref.rmsnormForward(out64, rstd64, wide(inp), wide(w), N, C, 1e-6, 1);
      assertAllClose(rstd, rstd64, 0, 1e-6, `rstd ${N}x${C}`);
      assertAllClose(out, out64, 1e-6 * maxAbs(out64), 1e-6, `rmsnorm+1 out ${N}x${C}`);
      const dinp = f32(N * C, r), dw = f32(C, r), dinp64 = wide(dinp), dw64 = wide(dw);
      nb.rmsnormBackward(dinp, dw, dout, inp, w, rstd, N, C, 1);
      ref.rmsnormBackward(dinp64, dw64, wide(dout), wide(inp), wide(w), wide(rstd), N, C, 1);
      // dx = r a dy − (r³/C) x Σ dy a x cancels: the error scale is that of the two terms (as native.test.ts)
      let terms = 0;
      for (let n = 0; n < N; n++) {
        let dot = 0;
        for (let c = 0; c < C; c++) dot += dout[n * C + c]! * (1 + w[c]!) * inp[n * C + c]!;
        for (let c = 0; c < C; c++)
          terms = Math.max(terms, Math.abs(rstd[n]! * (1 + w[c]!) * dout[n * C + c]!) + Math.abs((rstd[n]! ** 3 / C) * dot * inp[n * C + c]!));
      }
      assertAllClose(dinp, dinp64, 1e-5 * Math.max(terms, maxAbs(dinp64)), 1e-5, `rmsnorm+1 dinp ${N}x${C}`);
      worst = Math.max(worst, maxDiff(dinp, dinp64) / Math.max(terms, maxAbs(dinp64)), close(dw, dw64, `rmsnorm+1 dweight ${N}x${C}`));
    }
    t.diagnostic(`max |native − reference| of the gradients relative to their scale ${worst.toExponential(2)}`);
  });
}

test("native: the best instruction set is restored; a negative or non-finite cap or scale is refused", { skip }, () => {
  if (!native.ok) return;
  assert.ok(native.setSimd(best));
  const a = new Float32Array(8);
  assert.throws(() => nb.attentionForward(a, a, a, a, a, null, 1, 1, 1, 1, 2, 0, 0.5, -1), /softcap must be a finite number >= 0/);
  assert.throws(() => nb.attentionDecode(a, a, a, a, 1, 0, 1, 1, 2, 0, NaN, 0), /scale must be a finite number/);
  assert.throws(() => nb.lmHeadLogprobForward(a, a, a, null, a, Int32Array.of(0), Int32Array.of(0), a, 1, 2, 3, Infinity), /softcap must be a finite number/);
  assert.throws(() => nb.rmsnormForward(a, a, a, a, 1, 2, 1e-6, NaN), /offset must be a finite number/);
});
