// Faster js versions of the two kernels that dominate a training step, matmul and attention, built on the tiled
// gemm. Same contract and results (up to summation order) as the plain versions in kernels.ts, which stay as the
// reference they are tested against (test/kernels.test.ts).
//
// Attention works per (row, head) on causal 4-row blocks, so the product for query rows m..m+3 only touches keys
// 0..m+3: the masked upper triangle is never computed.

import type { Buf } from "../contract.js";
import { gemm } from "./gemm.js";

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

let scratch = new Float64Array(0);
function scratchTT(T: number): Float64Array {
  if (scratch.length < T * T) scratch = new Float64Array(T * T);
  return scratch;
}

export function attentionForward(
  out: Buf, att: Buf, q: Buf, k: Buf, v: Buf, R: number, T: number, NH: number, NKV: number, HS: number, window: number,
): void {
  const scale = 1 / Math.sqrt(HS);
  const group = NH / NKV;
  const qStride = NH * HS;
  const kvStride = NKV * HS;
  const s = scratchTT(T);
  for (let r = 0; r < R; r++) {
    for (let h = 0; h < NH; h++) {
      const qOff = r * T * qStride + h * HS;
      const kOff = r * T * kvStride + Math.floor(h / group) * HS;
      const ao = (r * NH + h) * T * T;
      for (let m = 0; m < T; m += 4) {
        const mb = Math.min(4, T - m);
        gemm(s, m * T, T, q, qOff + m * qStride, qStride, 1, k, kOff, kvStride, 1, mb, m + mb, HS, false, null);
      }
      for (let t = 0; t < T; t++) {
        const first = window > 0 ? Math.max(0, t - window + 1) : 0;
        const row = t * T;
        let max = -Infinity;
        for (let j = first; j <= t; j++) if (s[row + j]! > max) max = s[row + j]!;
        let sum = 0;
        for (let j = first; j <= t; j++) {
          const e = Math.exp((s[row + j]! - max) * scale);
          s[row + j] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let j = 0; j < T; j++) att[ao + row + j] = j >= first && j <= t ? s[row + j]! * inv : 0;
      }
      for (let m = 0; m < T; m += 4) {
        const mb = Math.min(4, T - m);
        gemm(out, qOff + m * qStride, qStride, att, ao + m * T, T, 1, v, kOff, 1, kvStride, mb, HS, m + mb, false, null);
      }
    }
  }
}

export function attentionBackward(
  dq: Buf, dk: Buf, dv: Buf, dout: Buf, q: Buf, k: Buf, v: Buf, att: Buf,
  R: number, T: number, NH: number, NKV: number, HS: number, window: number,
): void {
  const scale = 1 / Math.sqrt(HS);
  const group = NH / NKV;
  const qStride = NH * HS;
  const kvStride = NKV * HS;
  const ds = scratchTT(T);
  for (let r = 0; r < R; r++) {
    for (let h = 0; h < NH; h++) {
      const qOff = r * T * qStride + h * HS;
      const kOff = r * T * kvStride + Math.floor(h / group) * HS;
      const ao = (r * NH + h) * T * T;
      // dp = dout · vᵀ on the causal blocks, then ds = p ⊙ (dp − Σ p·dp) · scale in place
      for (let m = 0; m < T; m += 4) {
        const mb = Math.min(4, T - m);
        gemm(ds, m * T, T, dout, qOff + m * qStride, qStride, 1, v, kOff, kvStride, 1, mb, m + mb, HS, false, null);
      }
      for (let t = 0; t < T; t++) {
        const row = t * T;
        const first = window > 0 ? Math.max(0, t - window + 1) : 0;
        let pdp = 0;
        for (let j = first; j <= t; j++) pdp += att[ao + row + j]! * ds[row + j]!;
        for (let j = 0; j < T; j++) ds[row + j] = j >= first && j <= t ? att[ao + row + j]! * (ds[row + j]! - pdp) * scale : 0;
      }
      for (let m = 0; m < T; m += 4) {
        const mb = Math.min(4, T - m);
        // dq[t] += Σ_j ds[t,j] k[j]   (j ≤ t < m + mb)
        gemm(dq, qOff + m * qStride, qStride, ds, m * T, T, 1, k, kOff, 1, kvStride, mb, HS, m + mb, true, null);
        // dk[j] += Σ_t ds[t,j] q[t]   and   dv[j] += Σ_t p[t,j] dout[t]   (t ≥ j ≥ m)
        gemm(dk, kOff + m * kvStride, kvStride, ds, m * T + m, 1, T, q, qOff + m * qStride, 1, qStride, mb, HS, T - m, true, null);
        gemm(dv, kOff + m * kvStride, kvStride, att, ao + m * T + m, 1, T, dout, qOff + m * qStride, 1, qStride, mb, HS, T - m, true, null);
      }
    }
  }
}
