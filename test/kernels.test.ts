// Every backward kernel of the js backend against central finite differences in float64, plus forward kernels
// against direct formulas. The objective is L = Σ w ⊙ out for a fixed random w, so dL/dout = w.

import { test } from "node:test";
import assert from "node:assert/strict";
import { jsBackend, referenceBackend as be } from "../src/backend/js/kernels.js";
import { longropeAttentionFactor, ropeTables, ropeInvFreq } from "../src/model/rope.js";
import type { LlamaConfig } from "../src/model/config.js";
import { lmHeadLogprobForwardW, quantWeight } from "../src/model/weights.js";
import { quantizeRow, rowBytes } from "../src/quant/ggml.js";
import { assertAllClose, checkGradients, randomArray, rng } from "./helpers.js";

const f64 = (n: number, r: () => number, scale = 1): Float64Array => randomArray(n, r, scale, Float64Array) as Float64Array;

test("embedding backward matches finite differences (repeated ids accumulate)", () => {
  const r = rng(1);
  const V = 7, C = 5, N = 6;
  const table = f64(V * C, r);
  const ids = Int32Array.from([3, 0, 3, 6, 1, 3]);
  const out = new Float64Array(N * C);
  checkGradients("embedding", { table }, () => (be.embeddingForward(out, ids, table, N, C), out), (dout) => {
    const dtable = new Float64Array(V * C);
    be.embeddingBackward(dtable, dout, ids, N, C);
    return { table: dtable };
  }, r);
});

test("rmsnorm forward matches the formula and backward matches finite differences", () => {
  const r = rng(2);
  for (const [N, C] of [[1, 1], [3, 7], [4, 17]] as const) {
    const inp = f64(N * C, r, 3);
    const weight = f64(C, r);
    const out = new Float64Array(N * C);
    const rstd = new Float64Array(N);
    be.rmsnormForward(out, rstd, inp, weight, N, C, 1e-5, 0);
    for (let n = 0; n < N; n++) {
      let ms = 0;
      for (let c = 0; c < C; c++) ms += inp[n * C + c]! ** 2 / C;
      for (let c = 0; c < C; c++)
        assert.ok(Math.abs(out[n * C + c]! - (inp[n * C + c]! / Math.sqrt(ms + 1e-5)) * weight[c]!) < 1e-12);
    }
    checkGradients(`rmsnorm ${N}x${C}`, { inp, weight }, () => (be.rmsnormForward(out, rstd, inp, weight, N, C, 1e-5, 0), out), (dout) => {
      const dinp = new Float64Array(N * C);
      const dweight = new Float64Array(C);
      be.rmsnormBackward(dinp, dweight, dout, inp, weight, rstd, N, C, 0);
      return { inp: dinp, weight: dweight };
    }, r);
  }
});

test("matmul with and without bias: backward matches finite differences; accumulation is +=", () => {
  const r = rng(3);
  for (const [N, IC, OC, withBias] of [[1, 1, 1, true], [3, 5, 4, true], [5, 9, 3, false]] as const) {
    const inp = f64(N * IC, r);
    const weight = f64(OC * IC, r);
    const bias = f64(OC, r);
    const out = new Float64Array(N * OC);
    const inputs: Record<string, Float64Array> = withBias ? { inp, weight, bias } : { inp, weight };
    checkGradients(`matmul ${N}x${IC}x${OC}`, inputs, () => (be.matmulForward(out, inp, weight, withBias ? bias : null, N, IC, OC), out), (dout) => {
      const dinp = new Float64Array(N * IC);
      const dweight = new Float64Array(OC * IC);
      const dbias = new Float64Array(OC);
      be.matmulBackward(dinp, dweight, withBias ? dbias : null, dout, inp, weight, N, IC, OC);
      return { inp: dinp, weight: dweight, bias: dbias };
    }, r);
  }
  // Accumulation: calling backward twice doubles the gradient.
  const N = 2, IC = 3, OC = 2;
  const inp = f64(N * IC, r), weight = f64(OC * IC, r), dout = f64(N * OC, r);
  const once = new Float64Array(OC * IC), twice = new Float64Array(OC * IC);
  be.matmulBackward(null, once, null, dout, inp, weight, N, IC, OC);
  be.matmulBackward(null, twice, null, dout, inp, weight, N, IC, OC);
  be.matmulBackward(null, twice, null, dout, inp, weight, N, IC, OC);
  assertAllClose(twice, once.map((x) => 2 * x), 1e-15, 0, "accumulate");
});

test("rope: rotate-half layout at the right angles, inverse is the backward, gradients by finite differences", () => {
  const r = rng(4);
  const cfg = { HS: 6, ropeTheta: 10000, ropeScaling: { type: "none" as const } };
  const R = 2, T = 3, H = 2, HS = 6, pos0 = 2;
  const { cos, sin } = ropeTables(cfg, pos0 + T, Float64Array);
  const x0 = f64(R * T * H * HS, r);
  const x = Float64Array.from(x0);
  const N = R * T;
  const pos = Int32Array.from({ length: N }, (_, n) => pos0 + (n % T));
  be.ropeForward(x, cos, sin, pos, N, H, HS, HS);
  // element i pairs with i + HS/2 and rotates by pos · theta^(−2i/HS)
  const row = 1 * T + 2, head = 1, i = 1;
  const base = (row * H + head) * HS;
  const angle = (pos0 + 2) * 10000 ** (-(2 * i) / HS);
  const a = x0[base + i]!, b = x0[base + i + 3]!;
  assert.ok(Math.abs(x[base + i]! - (a * Math.cos(angle) - b * Math.sin(angle))) < 1e-12);
  assert.ok(Math.abs(x[base + i + 3]! - (b * Math.cos(angle) + a * Math.sin(angle))) < 1e-12);
  be.ropeBackward(x, cos, sin, pos, N, H, HS, HS);
  assertAllClose(x, x0, 1e-12, 0, "rope inverse");
  // positions are per row: one row at position p rotates exactly as row p of a whole sequence does
  const y = Float64Array.from(x0.subarray(5 * H * HS, 6 * H * HS));
  be.ropeForward(y, cos, sin, Int32Array.from([pos[5]!]), 1, H, HS, HS);
  const all = Float64Array.from(x0);
  be.ropeForward(all, cos, sin, pos, N, H, HS, HS);
  assertAllClose(y, all.subarray(5 * H * HS, 6 * H * HS), 0, 0, "one row at its own position");
  const inp = f64(R * T * H * HS, r);
  const out = new Float64Array(inp.length);
  checkGradients("rope", { inp }, () => (out.set(inp), be.ropeForward(out, cos, sin, pos, N, H, HS, HS), out), (dout) => {
    const d = Float64Array.from(dout);
    be.ropeBackward(d, cos, sin, pos, N, H, HS, HS);
    return { inp: d };
  }, r);
});

// Partial RoPE (Phi-4-mini's partial_rotary_factor) against transformers' apply_rotary_pos_emb written out: with
// RD = int(HS · factor), q_rot = q[:RD] becomes q_rot·cos + rotate_half(q_rot)·sin, with cos = cat(c, c) over the
// RD/2 frequencies theta^(−2i/RD), and q[RD:] passes through; LongRoPE's attention factor m multiplies cos and sin.
test("partial rope: the first RD features rotate in pairs (i, i + RD/2) at theta^(-2i/RD), the rest pass; scaled tables; backward by finite differences", () => {
  const r = rng(44);
  const H = 3, HS = 10, maxT = 7;
  for (const [RD, scaling] of [
    [6, { type: "none" }],
    [4, { type: "longrope", shortFactor: [1.5, 3], longFactor: [2, 7], originalMaxPositionEmbeddings: 4, attentionFactor: 1.25 }],
    [HS, { type: "none" }],
  ] as const) {
    for (const long of [false, true]) {
      const cfg = { HS, ropeDim: RD, ropeTheta: 100, ropeScaling: scaling as LlamaConfig["ropeScaling"] };
      const { cos, sin } = ropeTables(cfg, maxT, Float64Array, long);
      assert.equal(cos.length, maxT * (RD / 2));
      const m = scaling.type === "longrope" ? scaling.attentionFactor : 1;
      const pos = Int32Array.from([0, 5, 2, 6]);
      const N = pos.length;
      const x0 = f64(N * H * HS, r), x = Float64Array.from(x0);
      be.ropeForward(x, cos, sin, pos, N, H, HS, RD);
      for (let n = 0; n < N; n++)
        for (let h = 0; h < H; h++) {
          const at = (n * H + h) * HS, q = Array.from(x0.subarray(at, at + HS));
          const rot = q.slice(0, RD), half = RD / 2;
          const rotateHalf = (j: number): number => (j < half ? -rot[j + half]! : rot[j - half]!); // cat(-x2, x1)
          for (let j = 0; j < HS; j++) {
            let want = q[j]!;
            if (j < RD) {
              const i = j % half;
              const factor = scaling.type === "longrope" ? (long ? scaling.longFactor : scaling.shortFactor)[i]! : 1;
              const angle = pos[n]! / (factor * 100 ** ((2 * i) / RD));
              want = m * (rot[j]! * Math.cos(angle) + rotateHalf(j) * Math.sin(angle));
            }
            assert.ok(Math.abs(x[at + j]! - want) < 1e-12, `RD ${RD} long ${long} n ${n} h ${h} j ${j}: ${x[at + j]} vs ${want}`);
          }
        }
      // the features past RD are untouched bit for bit, in the backward as well
      const d = Float64Array.from(x0);
      be.ropeBackward(d, cos, sin, pos, N, H, HS, RD);
      for (let n = 0; n < N * H; n++)
        for (let j = RD; j < HS; j++) assert.equal(d[n * HS + j], x0[n * HS + j]);
      const inp = f64(N * H * HS, r), out = new Float64Array(inp.length);
      checkGradients(`partial rope RD=${RD} long=${long}`, { inp }, () => (out.set(inp), be.ropeForward(out, cos, sin, pos, N, H, HS, RD), out), (dout) => {
        const g = Float64Array.from(dout);
        be.ropeBackward(g, cos, sin, pos, N, H, HS, RD);
        return { inp: g };
      }, r);
    }
  }
  // RD = HS and no scaling: the tables and the rotation of before, bit for bit
  const plain = ropeTables({ HS, ropeTheta: 100, ropeScaling: { type: "none" } }, maxT, Float64Array);
  const full = ropeTables({ HS, ropeDim: HS, ropeTheta: 100, ropeScaling: { type: "none" } }, maxT, Float64Array);
  assert.deepEqual([...full.cos, ...full.sin], [...plain.cos, ...plain.sin]);
});

test("longrope inv_freq: 1 / (factor_i · theta^(2i/RD)), short or long; the attention factor is HF's sqrt(1 + ln s / ln original)", () => {
  const cfg = { HS: 8, ropeDim: 6, ropeTheta: 10000, ropeScaling: { type: "longrope" as const, shortFactor: [1, 2, 4], longFactor: [3, 5, 9], originalMaxPositionEmbeddings: 16, attentionFactor: 1 } };
  const base = [1, 10000 ** (-2 / 6), 10000 ** (-4 / 6)];
  assertAllClose(ropeInvFreq(cfg), base.map((f, i) => f / [1, 2, 4][i]!), 1e-15, 1e-13, "short");
  assertAllClose(ropeInvFreq(cfg, true), base.map((f, i) => f / [3, 5, 9][i]!), 1e-15, 1e-13, "long");
  // Phi-3-mini-128k / Phi-4-mini: 131072 / 4096 = 32, sqrt(1 + ln 32 / ln 4096) = sqrt(1 + 5/12)
  assert.ok(Math.abs(longropeAttentionFactor(131072, 4096) - Math.sqrt(17 / 12)) < 1e-15);
  assert.equal(longropeAttentionFactor(4096, 4096), 1);
  assert.equal(longropeAttentionFactor(2048, 4096), 1);
});

test("rope scaling: linear divides frequencies; llama3 keeps high, slows low, interpolates between", () => {
  const base = ropeInvFreq({ HS: 8, ropeTheta: 10000, ropeScaling: { type: "none" } });
  assertAllClose(base, [1, 0.1, 0.01, 0.001], 1e-15, 1e-12, "plain inv_freq");
  const lin = ropeInvFreq({ HS: 8, ropeTheta: 10000, ropeScaling: { type: "linear", factor: 2 } });
  assertAllClose(lin, [0.5, 0.05, 0.005, 0.0005], 1e-15, 1e-12, "linear");
  // original 128, low 1, high 4: wavelengths 2π/f = 6.28, 62.8, 628, 6283; high-freq cut 128/4 = 32, low-freq cut
  // 128/1 = 128. So 6.28 is kept, 62.8 is blended with s = (128/62.83 − 1)/(4 − 1) = 0.3457, the rest divided by 4.
  const l3 = ropeInvFreq({
    HS: 8, ropeTheta: 10000,
    ropeScaling: { type: "llama3", factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 128 },
  });
  const s = (128 / ((2 * Math.PI) / 0.1) - 1) / 3;
  assert.ok(Math.abs(s - 0.3457) < 1e-4);
  assertAllClose(l3, [1, (1 - s) * 0.025 + s * 0.1, 0.01 / 4, 0.001 / 4], 1e-15, 1e-12, "llama3");
});

for (const [R, T, NH, NKV, HS, window] of [
  [1, 1, 1, 1, 2, 0],
  [2, 4, 4, 2, 3 * 2, 0],
  [1, 5, 3, 1, 4, 0],
  [1, 6, 2, 2, 2, 3],
] as const) {
  test(`attention R=${R} T=${T} NH=${NH} NKV=${NKV} HS=${HS} window=${window}: causal softmax, gradients by finite differences`, () => {
    const r = rng(5 + T);
    const q = f64(R * T * NH * HS, r, 2), k = f64(R * T * NKV * HS, r, 2), v = f64(R * T * NKV * HS, r);
    const out = new Float64Array(R * T * NH * HS);
    const lse = new Float64Array(R * NH * T);
    be.attentionForward(out, lse, q, k, v, null, R, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
    // Direct check of one query: last row, last head.
    const rr = R - 1, h = NH - 1, t = T - 1, kvh = Math.floor(h / (NH / NKV));
    const first = window > 0 ? Math.max(0, t - window + 1) : 0;
    const scores: number[] = [];
    for (let j = first; j <= t; j++) {
      let s = 0;
      for (let i = 0; i < HS; i++) s += q[((rr * T + t) * NH + h) * HS + i]! * k[((rr * T + j) * NKV + kvh) * HS + i]!;
      scores.push(s / Math.sqrt(HS));
    }
    const mx = Math.max(...scores);
    const e = scores.map((s) => Math.exp(s - mx));
    const z = e.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(lse[(rr * NH + h) * T + t]! - (mx + Math.log(z))) < 1e-12, "log-normaliser");
    for (let i = 0; i < HS; i++) {
      let want = 0;
      for (let j = first; j <= t; j++) want += (e[j - first]! / z) * v[((rr * T + j) * NKV + kvh) * HS + i]!;
      assert.ok(Math.abs(out[((rr * T + t) * NH + h) * HS + i]! - want) < 1e-12, "attention output");
    }
    checkGradients("attention", { q, k, v }, () => (be.attentionForward(out, lse, q, k, v, null, R, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0), out), (dout) => {
      be.attentionForward(out, lse, q, k, v, null, R, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
      const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
      be.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, null, R, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
      return { q: dq, k: dk, v: dv };
    }, r);
  });
}

/** Copies token rows [from, to) of a (T, width) row-major block into dst starting at row `at`. */
function copyRows(dst: Float64Array, src: Float64Array, width: number, from: number, to: number, at: number): void {
  dst.set(src.subarray(from * width, to * width), at * width);
}

// A packed row prompt ++ chosen ++ rejected with branch [P, S] must give, for each answer, what plain causal
// attention gives on prompt ++ that answer alone; and the prompt's gradients are the sum of both computations'.
for (const [P, Cw, Cl, NH, NKV, HS, window] of [
  [3, 2, 4, 2, 1, 4, 0],
  [1, 3, 1, 4, 2, 2, 0],
  [4, 3, 3, 2, 2, 4, 3],
  [2, 1, 2, 1, 1, 2, 0],
] as const) {
  test(`attention with a shared prompt P=${P} chosen=${Cw} rejected=${Cl} window=${window} equals two separate sequences`, () => {
    const r = rng(40 + P + Cw);
    const T = P + Cw + Cl, qw = NH * HS, kw = NKV * HS;
    const q = f64(T * qw, r, 2), k = f64(T * kw, r, 2), v = f64(T * kw, r), dout = f64(T * qw, r);
    const branch = Int32Array.from([P, P + Cw]);
    const out = new Float64Array(T * qw), lse = new Float64Array(NH * T);
    be.attentionForward(out, lse, q, k, v, branch, 1, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
    const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
    be.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, branch, 1, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
    const wantDq = new Float64Array(q.length), wantDk = new Float64Array(k.length), wantDv = new Float64Array(v.length);
    for (const [start, len] of [[P, Cw], [P + Cw, Cl]] as const) {
      // the unpacked sequence: prompt rows, then this answer's rows
      const n = P + len;
      const sq = new Float64Array(n * qw), sk = new Float64Array(n * kw), sv = new Float64Array(n * kw), sd = new Float64Array(n * qw);
      for (const [dst, src, w] of [[sq, q, qw], [sk, k, kw], [sv, v, kw], [sd, dout, qw]] as const) {
        copyRows(dst, src, w, 0, P, 0);
        copyRows(dst, src, w, start, start + len, P);
      }
      // the prompt's output gradient counts once: only the chosen pass carries it
      if (start !== P) sd.fill(0, 0, P * qw);
      const so = new Float64Array(n * qw), sl = new Float64Array(NH * n);
      be.attentionForward(so, sl, sq, sk, sv, null, 1, n, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
      assertAllClose(out.subarray(start * qw, (start + len) * qw), so.subarray(P * qw), 1e-13, 0, "answer outputs");
      assertAllClose(out.subarray(0, P * qw), so.subarray(0, P * qw), 1e-13, 0, "prompt outputs");
      const gq = new Float64Array(sq.length), gk = new Float64Array(sk.length), gv = new Float64Array(sv.length);
      be.attentionBackward(gq, gk, gv, sd, sq, sk, sv, so, sl, null, 1, n, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
      for (const [want, got, w] of [[wantDq, gq, qw], [wantDk, gk, kw], [wantDv, gv, kw]] as const) {
        for (let i = 0; i < P * w; i++) want[i] += got[i]!;
        for (let i = 0; i < len * w; i++) want[start * w + i] += got[P * w + i]!;
      }
    }
    assertAllClose(dq, wantDq, 1e-12, 0, "dq");
    assertAllClose(dk, wantDk, 1e-12, 0, "dk");
    assertAllClose(dv, wantDv, 1e-12, 0, "dv");
    checkGradients("branched attention", { q, k, v }, () => (be.attentionForward(out, lse, q, k, v, branch, 1, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0), out), (d) => {
      be.attentionForward(out, lse, q, k, v, branch, 1, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
      const gq = new Float64Array(q.length), gk = new Float64Array(k.length), gv = new Float64Array(v.length);
      be.attentionBackward(gq, gk, gv, d, q, k, v, out, lse, branch, 1, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
      return { q: gq, k: gk, v: gv };
    }, r);
  });
}

test("attentionDecode over a KV cache equals the training attention row by row", () => {
  const r = rng(11);
  const T = 7, NH = 4, NKV = 2, HS = 4;
  for (const window of [0, 3]) {
    const q = f64(T * NH * HS, r), k = f64(T * NKV * HS, r), v = f64(T * NKV * HS, r);
    const out = new Float64Array(T * NH * HS), lse = new Float64Array(NH * T);
    be.attentionForward(out, lse, q, k, v, null, 1, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
    // first 4 positions in one call, then one at a time
    const dec = new Float64Array(T * NH * HS);
    be.attentionDecode(dec.subarray(0, 4 * NH * HS), q.subarray(0, 4 * NH * HS), k, v, 4, 0, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
    for (let t = 4; t < T; t++)
      be.attentionDecode(dec.subarray(t * NH * HS, (t + 1) * NH * HS), q.subarray(t * NH * HS, (t + 1) * NH * HS), k, v, 1, t, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
    assertAllClose(dec, out, 1e-13, 0, `decode window=${window}`);
  }
});

test("swiglu backward matches finite differences, including large |gate|", () => {
  const r = rng(6);
  const n = 11;
  const gate = f64(n, r, 4), up = f64(n, r);
  gate[0] = 30; gate[1] = -30;
  const out = new Float64Array(n);
  checkGradients("swiglu", { gate, up }, () => (be.swigluForward(out, gate, up, n), out), (dout) => {
    const dgate = new Float64Array(n), dup = new Float64Array(n);
    be.swigluBackward(dgate, dup, dout, gate, up, n);
    return { gate: dgate, up: dup };
  }, r);
});

test("residual add and accumulate", () => {
  const r = rng(7);
  const a = f64(9, r), b = f64(9, r), out = new Float64Array(9);
  be.addForward(out, a, b, 9);
  assertAllClose(out, a.map((x, i) => x + b[i]!), 0, 0, "add");
  be.accumulate(out, a, 9);
  assertAllClose(out, a.map((x, i) => 2 * x + b[i]!), 1e-15, 0, "accumulate");
});

test("fused LM head log-prob: values against logits built by hand, stable at large logits, gradients by finite differences", () => {
  const r = rng(8);
  const N = 5, C = 3, V = 9, M = 4;
  const x = f64(N * C, r, 2), W = f64(V * C, r, 2);
  x[3 * C] = 300; // row 3's logits reach ±hundreds: a naive exp would overflow
  const rows = Int32Array.from([1, 3, 1, 4]); // row 1 asked twice (the rejected answer's first token does that)
  const targets = Int32Array.from([0, 2, 8, 5]);
  const logp = new Float64Array(M), lse = new Float64Array(M), logitSum = new Float64Array(M), lss = new Float64Array(M);
  const entropy = new Float64Array(M), argmax = new Int32Array(M);
  be.lmHeadLogprobForward(logp, lse, logitSum, lss, x, rows, targets, W, M, C, V, 0, entropy, argmax);
  for (let m = 0; m < M; m++) {
    const z = Array.from({ length: V }, (_, v) => {
      let d = 0;
      for (let c = 0; c < C; c++) d += x[rows[m]! * C + c]! * W[v * C + c]!;
      return d;
    });
    const mx = Math.max(...z);
    const l = mx + Math.log(z.reduce((a, zv) => a + Math.exp(zv - mx), 0));
    assert.ok(Math.abs(logp[m]! - (z[targets[m]!]! - l)) < 1e-12, `logp ${m}`);
    assert.ok(Math.abs(logitSum[m]! - z.reduce((a, b) => a + b, 0)) < 1e-10, `logit sum ${m}`);
    assert.ok(Math.abs(lss[m]! - Math.log(z.reduce((a, zv) => a + Math.exp(zv - l) ** 2, 0))) < 1e-12, `log Σp² ${m}`);
    // H = −Σ p·log p
    assert.ok(Math.abs(entropy[m]! + z.reduce((a, zv) => a + Math.exp(zv - l) * (zv - l), 0)) < 1e-12, `entropy ${m}`);
    assert.equal(argmax[m], z.indexOf(mx), `argmax ${m}`);
  }
  assert.ok(Number.isFinite(logp[1]!), "stable at large logits");
  const x0 = Float64Array.from(x);
  x.set(x0.map((a, i) => (i === 3 * C ? 0.5 : a))); // finite differences on moderate values
  checkGradients("lm head", { x, W }, () => (be.lmHeadLogprobForward(logp, lse, logitSum, null, x, rows, targets, W, M, C, V, 0), logp), (dout) => {
    be.lmHeadLogprobForward(logp, lse, logitSum, null, x, rows, targets, W, M, C, V, 0);
    const dx = new Float64Array(x.length), dW = new Float64Array(W.length);
    be.lmHeadLogprobBackward(dx, dW, dout, x, rows, targets, W, lse, M, C, V, 0);
    return { x: dx, W: dW };
  }, r);
});

test("LM head argmax, js backends and the chunked head of a quantised weight: the first of tied largest logits", () => {
  const C = 32, V = 700, N = 2; // the chunked head works through 256 entries at a time
  const x = Float64Array.from({ length: N * C }, (_, i) => 0.5 + (i % 3) * 0.25);
  for (const [tied, first] of [[[10, 300, 699], 10], [[520, 600], 520]] as const) {
    const r = rng(first);
    const W = Float64Array.from({ length: V * C }, () => (r() - 0.5) * 0.2);
    for (const v of tied) W.fill(3, v * C, v * C + C);
    const rows = Int32Array.from([0, 1, 1]), targets = Int32Array.from([0, 1, 2]);
    for (const backend of [be, jsBackend]) {
      const o = [0, 1, 2].map(() => new Float64Array(3)), argmax = new Int32Array(3).fill(-1);
      backend.lmHeadLogprobForward(o[0]!, o[1]!, o[2]!, null, x, rows, targets, W, 3, C, V, 0, null, argmax);
      assert.deepEqual(Array.from(argmax), [first, first, first], `${backend.name}: tied at ${tied.join(", ")}`);
    }
    // a Q8_0 weight (3s and small values quantise to equal rows where equal) through weights.ts's chunked online head
    const rb = rowBytes("Q8_0", C), data = new Uint8Array(V * rb);
    const W32 = Float32Array.from(W);
    for (let v = 0; v < V; v++) quantizeRow("Q8_0", W32, v * C, C, data, v * rb);
    const o = [0, 1, 2].map(() => new Float32Array(3)), argmax = new Int32Array(3).fill(-1);
    lmHeadLogprobForwardW(jsBackend, o[0]!, o[1]!, o[2]!, null, Float32Array.from(x), rows, targets, quantWeight("Q8_0", data, V, C), 3, C, V, 0, null, argmax);
    assert.deepEqual(Array.from(argmax), [first, first, first], `chunked quantised head: tied at ${tied.join(", ")}`);
  }
});

test("AdamW matches torch.optim.AdamW's update written out by hand for three steps", () => {
  const lr = 0.01, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  const p = Float64Array.from([0.5, -1.5, 2]);
  const m = new Float64Array(3), v = new Float64Array(3);
  const grads = [[0.1, -0.2, 0.3], [0.05, 0.4, -1], [-0.3, 0, 2]];
  // Reference: the same recurrence in plain arithmetic.
  const rp = [0.5, -1.5, 2], rm = [0, 0, 0], rv = [0, 0, 0];
  for (let t = 1; t <= 3; t++) {
    const g = grads[t - 1]!;
    be.adamwStep(p, Float64Array.from(g), m, v, 3, lr, b1, b2, eps, wd, t);
    for (let i = 0; i < 3; i++) {
      rp[i] = rp[i]! * (1 - lr * wd);
      rm[i] = b1 * rm[i]! + (1 - b1) * g[i]!;
      rv[i] = b2 * rv[i]! + (1 - b2) * g[i]! ** 2;
      const mhat = rm[i]! / (1 - b1 ** t);
      const vhat = rv[i]! / (1 - b2 ** t);
      rp[i] = rp[i]! - (lr * mhat) / (Math.sqrt(vhat) + eps);
    }
  }
  // The first step of Adam moves each coordinate by lr·sign(g) (m̂ = g, v̂ = g²), plus decay: check that exactly.
  const q = Float64Array.from([0.5, -1.5, 2]);
  be.adamwStep(q, Float64Array.from([0.1, -0.2, 0.3]), new Float64Array(3), new Float64Array(3), 3, lr, b1, b2, 0, wd, 1);
  assertAllClose(q, [0.5 * 0.999 - 0.01, -1.5 * 0.999 + 0.01, 2 * 0.999 - 0.01], 1e-15, 0, "first AdamW step");
  assertAllClose(p, rp, 1e-9, 0, "three AdamW steps");
});

test("fast js matmul, attention and LM head equal the reference kernels on odd shapes and large magnitudes", () => {
  const r = rng(21);
  for (const [N, IC, OC] of [[1, 1, 1], [1, 7, 5], [5, 3, 9], [6, 17, 13], [9, 64, 33]] as const) {
    const inp = f64(N * IC, r, 50), w = f64(OC * IC, r, 50), bias = f64(OC, r), dout = f64(N * OC, r, 10);
    const a = new Float64Array(N * OC), b = new Float64Array(N * OC);
    be.matmulForward(a, inp, w, bias, N, IC, OC);
    jsBackend.matmulForward(b, inp, w, bias, N, IC, OC);
    assertAllClose(b, a, 1e-9, 1e-12, `matmul fwd ${N}x${IC}x${OC}`);
    const g = [new Float64Array(N * IC), new Float64Array(OC * IC), new Float64Array(OC)];
    const h = [new Float64Array(N * IC).fill(1), new Float64Array(OC * IC).fill(1), new Float64Array(OC).fill(1)];
    g.forEach((x) => x.fill(1)); // both accumulate onto the same starting values
    be.matmulBackward(g[0]!, g[1]!, g[2]!, dout, inp, w, N, IC, OC);
    jsBackend.matmulBackward(h[0]!, h[1]!, h[2]!, dout, inp, w, N, IC, OC);
    for (let i = 0; i < 3; i++) assertAllClose(h[i]!, g[i]!, 1e-8, 1e-12, `matmul bwd ${i} ${N}x${IC}x${OC}`);
  }
  for (const [R, T, NH, NKV, HS, window, P, S] of [
    [1, 1, 1, 1, 2, 0, 0, 0], [2, 5, 4, 2, 6, 0, 0, 0], [1, 9, 3, 1, 4, 0, 0, 0], [1, 11, 2, 2, 8, 4, 0, 0],
    [2, 13, 2, 1, 4, 0, 5, 9], [1, 10, 2, 2, 4, 3, 3, 6], [1, 6, 1, 1, 2, 0, 2, 6],
  ] as const) {
    const branch = S > 0 ? Int32Array.from({ length: 2 * R }, (_, i) => (i % 2 === 0 ? P : S)) : null;
    const q = f64(R * T * NH * HS, r, 3), k = f64(R * T * NKV * HS, r, 3), v = f64(R * T * NKV * HS, r, 3), dout = f64(R * T * NH * HS, r);
    const outs = [new Float64Array(q.length), new Float64Array(q.length)];
    const lses = [new Float64Array(R * NH * T), new Float64Array(R * NH * T)];
    be.attentionForward(outs[0]!, lses[0]!, q, k, v, branch, R, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
    jsBackend.attentionForward(outs[1]!, lses[1]!, q, k, v, branch, R, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
    assertAllClose(outs[1]!, outs[0]!, 1e-12, 1e-12, `attention out T=${T}`);
    assertAllClose(lses[1]!, lses[0]!, 1e-12, 1e-12, `attention lse T=${T}`);
    const grads = [0, 1].map(() => [new Float64Array(q.length), new Float64Array(k.length), new Float64Array(v.length)]);
    be.attentionBackward(grads[0]![0]!, grads[0]![1]!, grads[0]![2]!, dout, q, k, v, outs[0]!, lses[0]!, branch, R, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
    jsBackend.attentionBackward(grads[1]![0]!, grads[1]![1]!, grads[1]![2]!, dout, q, k, v, outs[0]!, lses[0]!, branch, R, T, NH, NKV, HS, window, 1 / Math.sqrt(HS), 0);
    for (let i = 0; i < 3; i++) assertAllClose(grads[1]![i]!, grads[0]![i]!, 1e-12, 1e-10, `attention grad ${"qkv"[i]} T=${T}`);
  }
  for (const [N, C, V, M] of [[1, 1, 1, 1], [3, 5, 7, 4], [40, 9, 37, 35]] as const) {
    const x = f64(N * C, r, 3), W = f64(V * C, r, 3), dlogp = f64(M, r);
    const rows = Int32Array.from({ length: M }, (_, m) => (m * 7) % N);
    const targets = Int32Array.from({ length: M }, (_, m) => (m * 5 + 1) % V);
    const o = [0, 1].map(() => [0, 1, 2, 3, 4].map(() => new Float64Array(M)));
    const am = [0, 1].map(() => new Int32Array(M));
    be.lmHeadLogprobForward(o[0]![0]!, o[0]![1]!, o[0]![2]!, o[0]![3]!, x, rows, targets, W, M, C, V, 0, o[0]![4]!, am[0]!);
    jsBackend.lmHeadLogprobForward(o[1]![0]!, o[1]![1]!, o[1]![2]!, o[1]![3]!, x, rows, targets, W, M, C, V, 0, o[1]![4]!, am[1]!);
    for (let i = 0; i < 5; i++) assertAllClose(o[1]![i]!, o[0]![i]!, 1e-11, 1e-11, `lm head output ${i} M=${M}`);
    assert.deepEqual(am[1], am[0], `lm head argmax M=${M}`);
    const g = [0, 1].map(() => [new Float64Array(N * C).fill(1), new Float64Array(V * C).fill(1)]);
    be.lmHeadLogprobBackward(g[0]![0]!, g[0]![1]!, dlogp, x, rows, targets, W, o[0]![1]!, M, C, V, 0);
    jsBackend.lmHeadLogprobBackward(g[1]![0]!, g[1]![1]!, dlogp, x, rows, targets, W, o[0]![1]!, M, C, V, 0);
    for (let i = 0; i < 2; i++) assertAllClose(g[1]![i]!, g[0]![i]!, 1e-11, 1e-11, `lm head grad ${i} M=${M}`);
    const dxOnly = new Float64Array(N * C).fill(1);
    jsBackend.lmHeadLogprobBackward(dxOnly, null, dlogp, x, rows, targets, W, o[0]![1]!, M, C, V, 0);
    assertAllClose(dxOnly, g[0]![0]!, 1e-11, 1e-11, "dW null leaves dx unchanged");
  }
});
