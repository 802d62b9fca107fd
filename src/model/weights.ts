// Frozen weights kept in their stored GGUF block format (Q8_0, Q4_K, …) and the products that read them.
//
// A quantised matrix is never expanded whole. A backend with fused quantised products (the native one) dequantises
// inside its GEMM's packing, a panel's span at a time, with the bits of its float product on the dequantised matrix;
// the LM head likewise. Otherwise (js) each product dequantises CHUNK rows at a time into a small scratch buffer
// (Backend.dequantizeRows) and hands that panel to the float32 GEMM, and the LM head walks the vocabulary a chunk at
// a time with the log-softmax carried across chunks online. Either way the extra memory is a few hundred KB whatever
// the model's size, and the embedding lookup dequantises only the rows it reads. Quantised weights are frozen by
// construction: these functions have no weight gradient, which is what LoRA (and the reference model) need.

import type { Backend, Buf } from "../backend/contract.js";
import { GGML_TYPE_ID, type QuantType, rowBytes } from "../quant/ggml.js";

export interface QuantWeight {
  readonly kind: "quant";
  readonly type: QuantType;
  /** The stored blocks, rows × rowBytes bytes, row-major as in the file. */
  readonly data: Uint8Array;
  readonly rows: number;
  readonly cols: number;
  readonly rowBytes: number;
}

/** A matrix the model reads: a float view into the parameter arena, or frozen blocks in their stored format. */
export type Weight = Buf | QuantWeight;

export const isQuant = (w: Weight): w is QuantWeight => (w as QuantWeight).kind === "quant";

/** The float view of a weight that must be in the arena (tests, tools and float-only paths). */
export function floatWeight(w: Weight): Buf {
  if (isQuant(w)) throw new Error(`internal: expected a float weight, got ${w.type} blocks`);
  return w;
}

export function quantWeight(type: QuantType, data: Uint8Array, rows: number, cols: number): QuantWeight {
  const rb = rowBytes(type, cols);
  if (data.byteLength !== rows * rb) throw new Error(`internal: ${type} weight of ${rows}×${cols} needs ${rows * rb} bytes, got ${data.byteLength}`);
  return { kind: "quant", type, data, rows, cols, rowBytes: rb };
}

/** Rows of a quantised matrix dequantised per product: 64 rows of 4096 floats is 1 MiB, about an L2's worth. */
const CHUNK = 64;

// Scratch grows to the largest size asked for and is reused: no allocation per product once warmed up.
let wScratch: Float32Array = new Float32Array(0);
let oScratch: Float32Array = new Float32Array(0);
let xScratch: Float32Array = new Float32Array(0);
let dScratch: Float32Array = new Float32Array(0);
const grow = (a: Float32Array, n: number): Float32Array => (a.length >= n ? a : new Float32Array(n));

/** dst (rows × cols) = rows r0.. of w, dequantised. */
export function dequantRows(be: Backend, dst: Float32Array, w: QuantWeight, r0: number, rows: number): void {
  be.dequantizeRows(dst, w.data, GGML_TYPE_ID[w.type], r0 * w.rowBytes, rows, w.cols);
}

/** out = inp · Wᵀ + bias, for any weight. */
export function matmulForwardW(be: Backend, out: Buf, inp: Buf, W: Weight, bias: Buf | null, N: number, IN: number, OUT: number): void {
  if (!isQuant(W)) return be.matmulForward(out, inp, W, bias, N, IN, OUT);
  if (be.matmulForwardQuant) return be.matmulForwardQuant(out, inp, W.data, GGML_TYPE_ID[W.type], 0, bias, N, IN, OUT);
  wScratch = grow(wScratch, CHUNK * IN);
  oScratch = grow(oScratch, N * CHUNK);
  for (let o0 = 0; o0 < OUT; o0 += CHUNK) {
    const ch = Math.min(CHUNK, OUT - o0);
    dequantRows(be, wScratch, W, o0, ch);
    be.matmulForward(oScratch, inp, wScratch, bias ? bias.subarray(o0, o0 + ch) : null, N, IN, ch);
    for (let n = 0; n < N; n++) out.set(oScratch.subarray(n * ch, n * ch + ch), n * OUT + o0);
  }
}

/** dinp += dout · W (and dbias), for any weight; dW must be null for a quantised one (it is frozen). */
export function matmulBackwardW(
  be: Backend, dinp: Buf | null, dW: Buf | null, dbias: Buf | null, dout: Buf, inp: Buf, W: Weight, N: number, IN: number, OUT: number,
): void {
  if (!isQuant(W)) return be.matmulBackward(dinp, dW, dbias, dout, inp, W, N, IN, OUT);
  if (dW) throw new Error("internal: a quantised weight is frozen; it has no gradient");
  if (dbias) // dbias += column sums of dout: it reads neither W nor inp, so no backend product is needed
    for (let n = 0; n < N; n++) for (let o = 0; o < OUT; o++) dbias[o] += dout[n * OUT + o]!;
  if (!dinp) return;
  if (be.matmulBackwardQuant) return be.matmulBackwardQuant(dinp, dout, W.data, GGML_TYPE_ID[W.type], 0, N, IN, OUT);
  wScratch = grow(wScratch, CHUNK * IN);
  dScratch = grow(dScratch, N * CHUNK);
  for (let o0 = 0; o0 < OUT; o0 += CHUNK) {
    const ch = Math.min(CHUNK, OUT - o0);
    dequantRows(be, wScratch, W, o0, ch);
    for (let n = 0; n < N; n++) dScratch.set(dout.subarray(n * OUT + o0, n * OUT + o0 + ch), n * ch);
    be.matmulBackward(dinp, null, null, dScratch, inp, wScratch, N, IN, ch);
  }
}

/** out[n,:] = table[ids[n],:]: a quantised table dequantises only the rows it reads. */
export function embeddingForwardW(be: Backend, out: Buf, ids: Int32Array, table: Weight, N: number, C: number): void {
  if (!isQuant(table)) return be.embeddingForward(out, ids, table, N, C);
  if (!(out instanceof Float32Array)) throw new Error("internal: quantised weights run in float32");
  for (let n = 0; n < N; n++) dequantRows(be, out.subarray(n * C, (n + 1) * C), table, ids[n]!, 1);
}

/** Gathers x[rows[m],:] into a contiguous (M, C) block. */
function gatherRows(x: Buf, rows: Int32Array, M: number, C: number): Float32Array {
  xScratch = grow(xScratch, M * C);
  for (let m = 0; m < M; m++) xScratch.set(x.subarray(rows[m]! * C, rows[m]! * C + C), m * C);
  return xScratch;
}

/** Vocabulary rows per LM-head chunk (the logits of one chunk are (M, VCHUNK)). */
const VCHUNK = 256;

/** z (M, ch) = xr · W[v0 : v0 + ch]ᵀ: the logits of one vocabulary chunk. */
function chunkLogits(be: Backend, z: Float32Array, xr: Float32Array, W: QuantWeight, v0: number, ch: number, M: number, C: number): void {
  if (be.matmulForwardQuant) return be.matmulForwardQuant(z, xr, W.data, GGML_TYPE_ID[W.type], v0 * W.rowBytes, null, M, C, ch);
  dequantRows(be, wScratch, W, v0, ch);
  be.matmulForward(z, xr, wScratch, null, M, C, ch);
}

/**
 * Backend.lmHeadLogprobForward for any weight. A quantised head works through the vocabulary a chunk at a time,
 * carrying each row's running max (and the first index holding it), Σ e^(z−max), Σ e^(2(z−max)),
 * Σ e^(z−max)·(z−max) and Σ z across chunks (the online log-sum-exp). softcap > 0 caps each chunk's logits first
 * (z → softcap·tanh(z/softcap)), as the backends' heads do.
 */
export function lmHeadLogprobForwardW(
  be: Backend, logp: Buf, lse: Buf, logitSum: Buf, logSumSq: Buf | null, x: Buf, rows: Int32Array, targets: Int32Array, W: Weight,
  M: number, C: number, V: number, softcap: number, entropy: Buf | null = null, argmax: Int32Array | null = null,
): void {
  if (M === 0) return; // a forward for its hidden states only (a reward model's): no head, not even a quantised pass over V
  if (!isQuant(W)) return be.lmHeadLogprobForward(logp, lse, logitSum, logSumSq, x, rows, targets, W, M, C, V, softcap, entropy, argmax);
  if (be.lmHeadLogprobForwardQuant)
    return be.lmHeadLogprobForwardQuant(logp, lse, logitSum, logSumSq, x, rows, targets, W.data, GGML_TYPE_ID[W.type], M, C, V, softcap, entropy, argmax);
  const xr = gatherRows(x, rows, M, C);
  const mx = new Float64Array(M).fill(-Infinity), se = new Float64Array(M), se2 = new Float64Array(M), sez = new Float64Array(M);
  const sum = new Float64Array(M), zt = new Float64Array(M), arg = new Int32Array(M);
  wScratch = grow(wScratch, VCHUNK * C);
  oScratch = grow(oScratch, M * VCHUNK);
  for (let v0 = 0; v0 < V; v0 += VCHUNK) {
    const ch = Math.min(VCHUNK, V - v0);
    chunkLogits(be, oScratch, xr, W, v0, ch, M, C);
    if (softcap > 0) for (let i = 0; i < M * ch; i++) oScratch[i] = softcap * Math.tanh(oScratch[i]! / softcap);
    for (let m = 0; m < M; m++) {
      const z = oScratch.subarray(m * ch, m * ch + ch);
      let cmax = -Infinity, carg = 0;
      for (let j = 0; j < ch; j++) if (z[j]! > cmax) (cmax = z[j]!), (carg = j);
      if (cmax > mx[m]!) {
        // a strictly larger max (an earlier chunk keeps a tie); nothing to rescale while the max is still −∞
        if (se[m]! > 0) {
          const shift = mx[m]! - cmax, r = Math.exp(shift);
          sez[m] = r * (sez[m]! + shift * se[m]!);
          se[m] = se[m]! * r;
          se2[m] = se2[m]! * r * r;
        }
        mx[m] = cmax;
        arg[m] = v0 + carg;
      }
      let s = 0, s2 = 0, sx = 0, zs = 0;
      for (let j = 0; j < ch; j++) {
        const d = z[j]! - mx[m]!, e = Math.exp(d);
        s += e;
        s2 += e * e;
        sx += e * d;
        zs += z[j]!;
      }
      se[m] = se[m]! + s;
      se2[m] = se2[m]! + s2;
      sez[m] = sez[m]! + sx;
      sum[m] = sum[m]! + zs;
      const t = targets[m]! - v0;
      if (t >= 0 && t < ch) zt[m] = z[t]!;
    }
  }
  for (let m = 0; m < M; m++) {
    const l = mx[m]! + Math.log(se[m]!);
    lse[m] = l;
    logitSum[m] = sum[m]!;
    logp[m] = zt[m]! - l;
    if (logSumSq) logSumSq[m] = Math.log(se2[m]!) - 2 * Math.log(se[m]!);
    if (entropy) entropy[m] = Math.log(se[m]!) - sez[m]! / se[m]!;
    if (argmax) argmax[m] = arg[m]!;
  }
}

/** Backend.lmHeadLogprobBackward for any weight; dW must be null for a quantised head. */
export function lmHeadLogprobBackwardW(
  be: Backend, dx: Buf, dW: Buf | null, dlogp: Buf, x: Buf, rows: Int32Array, targets: Int32Array, W: Weight, lse: Buf,
  M: number, C: number, V: number, softcap: number,
): void {
  if (!isQuant(W)) return be.lmHeadLogprobBackward(dx, dW, dlogp, x, rows, targets, W, lse, M, C, V, softcap);
  if (dW) throw new Error("internal: a quantised weight is frozen; it has no gradient");
  if (be.lmHeadLogprobBackwardQuant)
    return be.lmHeadLogprobBackwardQuant(dx, dlogp, x, rows, targets, W.data, GGML_TYPE_ID[W.type], lse, M, C, V, softcap);
  const xr = gatherRows(x, rows, M, C); // (the chunks below use the weight and logit scratch, not this one)
  const dxr = new Float32Array(M * C);
  wScratch = grow(wScratch, VCHUNK * C);
  oScratch = grow(oScratch, M * VCHUNK);
  for (let v0 = 0; v0 < V; v0 += VCHUNK) {
    const ch = Math.min(VCHUNK, V - v0);
    chunkLogits(be, oScratch, xr, W, v0, ch, M, C);
    for (let m = 0; m < M; m++) {
      const g = dlogp[m]!;
      const l = lse[m]!;
      const t = targets[m]! - v0;
      for (let j = 0; j < ch; j++) {
        const i = m * ch + j;
        if (softcap > 0) {
          // through the cap: the capped logit's gradient times 1 − tanh²(z / softcap)
          const th = Math.tanh(oScratch[i]! / softcap);
          oScratch[i] = g === 0 ? 0 : g * ((j === t ? 1 : 0) - Math.exp(softcap * th - l)) * (1 - th * th);
        } else oScratch[i] = g === 0 ? 0 : g * ((j === t ? 1 : 0) - Math.exp(oScratch[i]! - l));
      }
    }
    if (be.matmulBackwardQuant) be.matmulBackwardQuant(dxr, oScratch, W.data, GGML_TYPE_ID[W.type], v0 * W.rowBytes, M, C, ch);
    else be.matmulBackward(dxr, null, null, oScratch, xr, wScratch, M, C, ch); // chunkLogits left the panel in wScratch
  }
  for (let m = 0; m < M; m++) {
    const o = rows[m]! * C;
    for (let c = 0; c < C; c++) dx[o + c] += dxr[m * C + c]!;
  }
}
