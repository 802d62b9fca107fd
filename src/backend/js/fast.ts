// Faster js versions of the kernels that dominate a training step, matmul, attention and the LM head, built on the
// tiled gemm. Same contract and results (up to summation order) as the plain versions in kernels.ts, which stay as the
// reference they are tested against (test/kernels.test.ts).
//
// Attention works per (row, head) on causal 4-row blocks, so the product for query rows m..m+3 only touches keys
// 0..m+3: the masked upper triangle is never computed, and the probabilities live only in a (4, T) scratch.

import type { Buf } from "../contract.js";
import { gemm } from "./gemm.js";
import { attentionVisible, branchOf } from "./mask.js";
import { softcapped } from "./softcap.js";

export function matmulForward(out: Buf, inp: Buf, weight: Buf, bias: Buf | null, N: number, IC: number, OC: number): void {
  gemm(out, 0, OC, inp, 0, IC, 1, weight, 0, IC, 1, N, OC, IC, false, bias);
}

export function matmulBackward(
  dinp: Buf | null, dweight: Buf | null, dbias: Buf | null, dout: Buf, inp: Buf, weight: Buf, N: number, IC: number, OC: number,
): void {
  if (dinp) gemm(dinp, 0, IC, dout, 0, OC, 1, weight, 0, 1, IC, N, IC, OC, true, null); // dinp += dout · W
  if (dweight) gemm(dweight, 0, IC, dout, 0, 1, OC, inp, 0, 1, IC, OC, IC, N, true, null); // dW += doutᵀ · inp
  if (dbias)
    for (let n = 0; n < N; n++) {
      const o = n * OC;
      for (let j = 0; j < OC; j++) dbias[j] += dout[o + j]!;
    }
}

// Attention and the LM head work on blocks of rows with a small scratch: (4, T) scores for attention, (16, V)
// logits for the head. Nothing (T,T) or (M,V) is ever allocated.
let scratchA = new Float64Array(0);
let scratchB = new Float64Array(0);
function blockScratch(n: number): [Float64Array, Float64Array] {
  if (scratchA.length < n) {
    scratchA = new Float64Array(n);
    scratchB = new Float64Array(n);
  }
  return [scratchA, scratchB];
}

const QUERY_BLOCK = 4;

// The backward's (4, T) tile of 1 − tanh² factors, only with a soft cap.
let scratchC = new Float64Array(0);
function capScratch(n: number): Float64Array {
  if (scratchC.length < n) scratchC = new Float64Array(n);
  return scratchC;
}

/**
 * Softmax probabilities of query t over keys 0..kEnd−1 in place in s (cap(scores · scale) − lse, masked), where s
 * holds unscaled scores. Keys outside attentionVisible are zeroed. With a cap, dcap (when given) receives each
 * key's 1 − tanh²(scores · scale / softcap), the factor the backward multiplies by.
 */
function probabilities(
  s: Float64Array, so: number, kEnd: number, t: number, P: number, S: number, window: number, scale: number, softcap: number, lse: number,
  dcap: Float64Array | null,
): void {
  const [a0, a1, b0, b1] = attentionVisible(t, P, S, window);
  if (softcap > 0 && dcap)
    for (let j = 0; j < kEnd; j++) {
      const th = Math.tanh((s[so + j]! * scale) / softcap);
      dcap[so + j] = 1 - th * th;
    }
  for (let j = 0; j < kEnd; j++)
    s[so + j] = (j >= a0 && j < a1) || (j >= b0 && j < b1) ? Math.exp(softcapped(s[so + j]! * scale, softcap) - lse) : 0;
}

/** lse of query t from its unscaled scores s[so..so+kEnd) over the visible keys. */
function logNormaliser(s: Float64Array, so: number, t: number, P: number, S: number, window: number, scale: number, softcap: number): number {
  const [a0, a1, b0, b1] = attentionVisible(t, P, S, window);
  const score = (j: number): number => softcapped(s[so + j]! * scale, softcap);
  let max = -Infinity;
  for (let j = a0; j < a1; j++) max = Math.max(max, score(j));
  for (let j = b0; j < b1; j++) max = Math.max(max, score(j));
  let sum = 0;
  for (let j = a0; j < a1; j++) sum += Math.exp(score(j) - max);
  for (let j = b0; j < b1; j++) sum += Math.exp(score(j) - max);
  return max + Math.log(sum);
}

export function attentionForward(
  out: Buf, lse: Buf, q: Buf, k: Buf, v: Buf, branch: Int32Array | null,
  R: number, T: number, NH: number, NKV: number, HS: number, window: number, scale: number, softcap: number,
): void {
  const group = NH / NKV;
  const qStride = NH * HS;
  const kvStride = NKV * HS;
  const [s] = blockScratch(QUERY_BLOCK * T);
  for (let r = 0; r < R; r++) {
    const [P, S] = branchOf(branch, r, T);
    for (let h = 0; h < NH; h++) {
      const qOff = r * T * qStride + h * HS;
      const kOff = r * T * kvStride + Math.floor(h / group) * HS;
      for (let m = 0; m < T; m += QUERY_BLOCK) {
        const mb = Math.min(QUERY_BLOCK, T - m);
        const kEnd = m + mb; // causal: no query of the block sees a later key
        gemm(s, 0, T, q, qOff + m * qStride, qStride, 1, k, kOff, kvStride, 1, mb, kEnd, HS, false, null);
        for (let i = 0; i < mb; i++) {
          const l = logNormaliser(s, i * T, m + i, P, S, window, scale, softcap);
          lse[(r * NH + h) * T + m + i] = l;
          probabilities(s, i * T, kEnd, m + i, P, S, window, scale, softcap, l, null);
        }
        gemm(out, qOff + m * qStride, qStride, s, 0, T, 1, v, kOff, 1, kvStride, mb, HS, kEnd, false, null);
      }
    }
  }
}

export function attentionBackward(
  dq: Buf, dk: Buf, dv: Buf, dout: Buf, q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf, branch: Int32Array | null,
  R: number, T: number, NH: number, NKV: number, HS: number, window: number, scale: number, softcap: number,
): void {
  const group = NH / NKV;
  const qStride = NH * HS;
  const kvStride = NKV * HS;
  const [p, ds] = blockScratch(QUERY_BLOCK * T);
  const dcap = softcap > 0 ? capScratch(QUERY_BLOCK * T) : null;
  for (let r = 0; r < R; r++) {
    const [P, S] = branchOf(branch, r, T);
    for (let h = 0; h < NH; h++) {
      const qOff = r * T * qStride + h * HS;
      const kOff = r * T * kvStride + Math.floor(h / group) * HS;
      for (let m = 0; m < T; m += QUERY_BLOCK) {
        const mb = Math.min(QUERY_BLOCK, T - m);
        const kEnd = m + mb;
        gemm(p, 0, T, q, qOff + m * qStride, qStride, 1, k, kOff, kvStride, 1, mb, kEnd, HS, false, null);
        gemm(ds, 0, T, dout, qOff + m * qStride, qStride, 1, v, kOff, kvStride, 1, mb, kEnd, HS, false, null);
        for (let i = 0; i < mb; i++) {
          const t = m + i;
          probabilities(p, i * T, kEnd, t, P, S, window, scale, softcap, lse[(r * NH + h) * T + t]!, dcap);
          let D = 0; // Σ_j p_j dp_j = dout · out
          for (let c = 0; c < HS; c++) D += dout[qOff + t * qStride + c]! * out[qOff + t * qStride + c]!;
          if (dcap) for (let j = 0; j < kEnd; j++) ds[i * T + j] = p[i * T + j]! * (ds[i * T + j]! - D) * dcap[i * T + j]! * scale;
          else for (let j = 0; j < kEnd; j++) ds[i * T + j] = p[i * T + j]! * (ds[i * T + j]! - D) * scale;
        }
        // dq[t] += Σ_j ds[t,j] k[j];  dk[j] += Σ_t ds[t,j] q[t];  dv[j] += Σ_t p[t,j] dout[t]
        gemm(dq, qOff + m * qStride, qStride, ds, 0, T, 1, k, kOff, 1, kvStride, mb, HS, kEnd, true, null);
        gemm(dk, kOff, kvStride, ds, 0, 1, T, q, qOff + m * qStride, 1, qStride, kEnd, HS, mb, true, null);
        gemm(dv, kOff, kvStride, p, 0, 1, T, dout, qOff + m * qStride, 1, qStride, kEnd, HS, mb, true, null);
      }
    }
  }
}

const HEAD_CHUNK = 16;

/** Gathers rows m0..m0+mb−1 of x (as listed in `rows`) into xs and writes their logits z = xs · Wᵀ, (mb, V). */
function headLogits(z: Float64Array, xs: Float64Array, x: Buf, rows: Int32Array, W: Buf, m0: number, mb: number, C: number, V: number): void {
  for (let i = 0; i < mb; i++) {
    const xo = rows[m0 + i]! * C;
    for (let c = 0; c < C; c++) xs[i * C + c] = x[xo + c]!;
  }
  gemm(z, 0, V, xs, 0, C, 1, W, 0, C, 1, mb, V, C, false, null);
}

export function lmHeadLogprobForward(
  logp: Buf, lse: Buf, logitSum: Buf, logSumSq: Buf | null, x: Buf, rows: Int32Array, targets: Int32Array, W: Buf,
  M: number, C: number, V: number, softcap: number, entropy: Buf | null = null, argmax: Int32Array | null = null,
): void {
  const [z, xs] = blockScratch(HEAD_CHUNK * Math.max(V, C));
  for (let m0 = 0; m0 < M; m0 += HEAD_CHUNK) {
    const mb = Math.min(HEAD_CHUNK, M - m0);
    headLogits(z, xs, x, rows, W, m0, mb, C, V);
    if (softcap > 0) for (let i = 0; i < mb * V; i++) z[i] = softcapped(z[i]!, softcap);
    for (let i = 0; i < mb; i++) {
      const o = i * V;
      let max = -Infinity, arg = 0, sum = 0;
      for (let v = 0; v < V; v++) {
        if (z[o + v]! > max) (max = z[o + v]!), (arg = v);
        sum += z[o + v]!;
      }
      let se = 0, se2 = 0, sez = 0;
      for (let v = 0; v < V; v++) {
        const d = z[o + v]! - max, e = Math.exp(d);
        se += e;
        se2 += e * e;
        sez += e * d;
      }
      const l = max + Math.log(se);
      const m = m0 + i;
      lse[m] = l;
      logitSum[m] = sum;
      logp[m] = z[o + targets[m]!]! - l;
      if (logSumSq) logSumSq[m] = Math.log(se2) - 2 * Math.log(se);
      if (entropy) entropy[m] = Math.log(se) - sez / se;
      if (argmax) argmax[m] = arg;
    }
  }
}

export function lmHeadLogprobBackward(
  dx: Buf, dW: Buf | null, dlogp: Buf, x: Buf, rows: Int32Array, targets: Int32Array, W: Buf, lse: Buf,
  M: number, C: number, V: number, softcap: number,
): void {
  const [z, xs] = blockScratch(HEAD_CHUNK * Math.max(V, C));
  const dxs = new Float64Array(HEAD_CHUNK * C);
  for (let m0 = 0; m0 < M; m0 += HEAD_CHUNK) {
    const mb = Math.min(HEAD_CHUNK, M - m0);
    headLogits(z, xs, x, rows, W, m0, mb, C, V);
    for (let i = 0; i < mb; i++) {
      const o = i * V;
      const m = m0 + i;
      const g = dlogp[m]!;
      const l = lse[m]!;
      if (softcap > 0) {
        // dz with respect to the capped logit, then through the cap: × (1 − tanh²(z / softcap))
        const t = targets[m]!;
        for (let v = 0; v < V; v++) {
          const th = Math.tanh(z[o + v]! / softcap);
          z[o + v] = g === 0 ? 0 : g * ((v === t ? 1 : 0) - Math.exp(softcap * th - l)) * (1 - th * th);
        }
        continue;
      }
      for (let v = 0; v < V; v++) z[o + v] = g === 0 ? 0 : -g * Math.exp(z[o + v]! - l);
      z[o + targets[m]!] += g;
    }
    gemm(dxs, 0, C, z, 0, V, 1, W, 0, 1, C, mb, C, V, false, null); // dz · W
    for (let i = 0; i < mb; i++) {
      const xo = rows[m0 + i]! * C;
      for (let c = 0; c < C; c++) dx[xo + c] += dxs[i * C + c]!;
    }
    if (dW) gemm(dW, 0, C, z, 0, 1, V, xs, 0, 1, C, V, C, mb, true, null); // dzᵀ · x
  }
}
