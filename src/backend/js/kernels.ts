// The pure-TypeScript backend: the living definition of every kernel in src/backend/contract.ts. Plain loops,
// written to be checked by eye; the native backend is tested against these. Accumulations run in the buffer's own
// precision except where a comment says otherwise.

import type { Backend, Buf } from "../contract.js";
import * as fast from "./fast.js";
import { GGML_TYPE_ID, type QuantType, dequantizeRow, rowBytes } from "../../quant/ggml.js";
import { attentionVisible, branchOf } from "./mask.js";
import { softcapped } from "./softcap.js";

export function embeddingForward(out: Buf, ids: Int32Array, table: Buf, N: number, C: number): void {
  for (let n = 0; n < N; n++) {
    const src = ids[n]! * C;
    const dst = n * C;
    for (let c = 0; c < C; c++) out[dst + c] = table[src + c]!;
  }
}

export function embeddingBackward(dtable: Buf, dout: Buf, ids: Int32Array, N: number, C: number): void {
  for (let n = 0; n < N; n++) {
    const dst = ids[n]! * C;
    const src = n * C;
    for (let c = 0; c < C; c++) dtable[dst + c] += dout[src + c]!;
  }
}

// y_c = x_c r (offset + w_c). With offset 0 the weight is used as stored (0 + w would turn a −0 weight into +0).
export function rmsnormForward(out: Buf, rstd: Buf, inp: Buf, weight: Buf, N: number, C: number, eps: number, offset: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * C;
    let ss = 0; // sum of squares in double precision: JS numbers are doubles
    for (let c = 0; c < C; c++) ss += inp[o + c]! * inp[o + c]!;
    const r = 1 / Math.sqrt(ss / C + eps);
    rstd[n] = r;
    const rs = rstd[n]!; // use the stored (possibly float32-rounded) value, as backward will
    for (let c = 0; c < C; c++) out[o + c] = inp[o + c]! * rs * (offset === 0 ? weight[c]! : offset + weight[c]!);
  }
}

// y_c = a_c x_c r with a_c = offset + w_c, r = (mean(x²)+eps)^(-1/2), dr/dx_j = -r³ x_j / C
// dx_j = r a_j dy_j − (r³/C) x_j Σ_c dy_c a_c x_c;  dw_j = Σ_n dy_j x_j r (da/dw = 1 whatever the offset)
export function rmsnormBackward(
  dinp: Buf, dweight: Buf | null, dout: Buf, inp: Buf, weight: Buf, rstd: Buf, N: number, C: number, offset: number,
): void {
  const a = (c: number): number => (offset === 0 ? weight[c]! : offset + weight[c]!);
  for (let n = 0; n < N; n++) {
    const o = n * C;
    const r = rstd[n]!;
    let dot = 0;
    for (let c = 0; c < C; c++) dot += dout[o + c]! * a(c) * inp[o + c]!;
    const k = (r * r * r * dot) / C;
    for (let c = 0; c < C; c++) {
      dinp[o + c] += r * a(c) * dout[o + c]! - k * inp[o + c]!;
      if (dweight) dweight[c] += dout[o + c]! * inp[o + c]! * r;
    }
  }
}

// y_c = (x_c − μ) r w_c + b_c, μ = mean(x), r = (Σ_c (x_c − μ)²/C + eps)^(-1/2): the biased variance, as
// torch.nn.LayerNorm, from the two-pass sum (no E[x²] − μ² cancellation). Without a bias, y is left as it is (+ 0
// would turn −0 into +0).
export function layernormForward(
  out: Buf, mean: Buf, rstd: Buf, inp: Buf, weight: Buf, bias: Buf | null, N: number, C: number, eps: number,
): void {
  for (let n = 0; n < N; n++) {
    const o = n * C;
    let s = 0; // sums in double precision: JS numbers are doubles
    for (let c = 0; c < C; c++) s += inp[o + c]!;
    const mu = s / C;
    let ss = 0;
    for (let c = 0; c < C; c++) ss += (inp[o + c]! - mu) * (inp[o + c]! - mu);
    mean[n] = mu;
    rstd[n] = 1 / Math.sqrt(ss / C + eps);
    const m = mean[n]!, r = rstd[n]!; // the stored (possibly float32-rounded) values, as backward will use
    for (let c = 0; c < C; c++) {
      const y = (inp[o + c]! - m) * r * weight[c]!;
      out[o + c] = bias ? y + bias[c]! : y;
    }
  }
}

// With x̂_c = (x_c − μ) r and g_c = dy_c w_c: dμ/dx_j = 1/C, dr/dx_j = −r³ (x_j − μ)/C, so
// dx_j = r g_j − (r/C) Σ_c g_c − (r/C) x̂_j Σ_c g_c x̂_c;  dw_j = Σ_n dy_j x̂_j;  db_j = Σ_n dy_j.
export function layernormBackward(
  dinp: Buf, dweight: Buf | null, dbias: Buf | null, dout: Buf, inp: Buf, weight: Buf, mean: Buf, rstd: Buf, N: number, C: number,
): void {
  for (let n = 0; n < N; n++) {
    const o = n * C;
    const m = mean[n]!, r = rstd[n]!;
    let sumG = 0, sumGx = 0;
    for (let c = 0; c < C; c++) {
      const g = dout[o + c]! * weight[c]!;
      sumG += g;
      sumGx += g * (inp[o + c]! - m) * r;
    }
    const a = sumG / C, b = sumGx / C;
    for (let c = 0; c < C; c++) {
      const xhat = (inp[o + c]! - m) * r;
      dinp[o + c] += r * (dout[o + c]! * weight[c]! - a - xhat * b);
      if (dweight) dweight[c] += dout[o + c]! * xhat;
      if (dbias) dbias[c] += dout[o + c]!;
    }
  }
}

export function matmulForward(out: Buf, inp: Buf, weight: Buf, bias: Buf | null, N: number, IC: number, OC: number): void {
  for (let n = 0; n < N; n++) {
    const io = n * IC;
    for (let o = 0; o < OC; o++) {
      const wo = o * IC;
      let acc = bias ? bias[o]! : 0;
      for (let i = 0; i < IC; i++) acc += inp[io + i]! * weight[wo + i]!;
      out[n * OC + o] = acc;
    }
  }
}

export function matmulBackward(
  dinp: Buf | null, dweight: Buf | null, dbias: Buf | null, dout: Buf, inp: Buf, weight: Buf, N: number, IC: number, OC: number,
): void {
  if (dinp) {
    // dinp[n,:] += Σ_o dout[n,o] · weight[o,:]
    for (let n = 0; n < N; n++) {
      const io = n * IC;
      for (let o = 0; o < OC; o++) {
        const g = dout[n * OC + o]!;
        if (g === 0) continue;
        const wo = o * IC;
        for (let i = 0; i < IC; i++) dinp[io + i] += g * weight[wo + i]!;
      }
    }
  }
  if (dweight || dbias) {
    // dweight[o,:] += Σ_n dout[n,o] · inp[n,:]
    for (let n = 0; n < N; n++) {
      const io = n * IC;
      for (let o = 0; o < OC; o++) {
        const g = dout[n * OC + o]!;
        if (dbias) dbias[o] += g;
        if (!dweight || g === 0) continue;
        const wo = o * IC;
        for (let i = 0; i < IC; i++) dweight[wo + i] += g * inp[io + i]!;
      }
    }
  }
}

// Partial RoPE (Phi-4-mini): only the first RD features of each head rotate, pairs (i, i + RD/2) for i < RD/2 (HF's
// rotate_half on the rotary slice); features RD..HS−1 pass through. RD = HS is the whole head.
function rope(x: Buf, cos: Buf, sin: Buf, posOf: Int32Array, N: number, H: number, HS: number, RD: number, sign: number): void {
  const half = RD >> 1;
  for (let n = 0; n < N; n++) {
    const pos = posOf[n]!;
    const row = n * H * HS;
    for (let h = 0; h < H; h++) {
      const base = row + h * HS;
      for (let i = 0; i < half; i++) {
        const c = cos[pos * half + i]!;
        const s = sign * sin[pos * half + i]!;
        const a = x[base + i]!;
        const b = x[base + i + half]!;
        x[base + i] = a * c - b * s;
        x[base + i + half] = b * c + a * s;
      }
    }
  }
}

export function ropeForward(x: Buf, cos: Buf, sin: Buf, pos: Int32Array, N: number, H: number, HS: number, RD: number): void {
  rope(x, cos, sin, pos, N, H, HS, RD, 1);
}

// Per pair, RoPE multiplies by m·R(θ) (m = 1, or LongRoPE's attention factor folded into the tables), so its
// backward multiplies by m·R(θ)ᵀ = m·R(−θ): the same kernel with the sine negated. The pass-through features have
// gradient 1, so they are left as they are.
export function ropeBackward(dx: Buf, cos: Buf, sin: Buf, pos: Int32Array, N: number, H: number, HS: number, RD: number): void {
  rope(dx, cos, sin, pos, N, H, HS, RD, -1);
}

// Straight from the definition: per (row, head, query) the scores of the visible keys (scaled, then capped), their
// softmax, the weighted sum of values, and the log-normaliser lse = max + log Σ exp(s − max) the backward
// recomputes p from.
export function attentionForward(
  out: Buf, lse: Buf, q: Buf, k: Buf, v: Buf, branch: Int32Array | null,
  R: number, T: number, NH: number, NKV: number, HS: number, window: number, scale: number, softcap: number,
): void {
  const group = NH / NKV;
  const qStride = NH * HS;
  const kvStride = NKV * HS;
  const s = attentionScratch(T);
  for (let r = 0; r < R; r++) {
    const [P, S] = branchOf(branch, r, T);
    for (let h = 0; h < NH; h++) {
      const kvh = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const qo = (r * T + t) * qStride + h * HS;
        const [a0, a1, b0, b1] = attentionVisible(t, P, S, window);
        let max = -Infinity;
        const score = (j: number): void => {
          const ko = (r * T + j) * kvStride + kvh * HS;
          let d = 0;
          for (let i = 0; i < HS; i++) d += q[qo + i]! * k[ko + i]!;
          s[j] = softcapped(d * scale, softcap);
          if (s[j]! > max) max = s[j]!;
        };
        for (let j = a0; j < a1; j++) score(j);
        for (let j = b0; j < b1; j++) score(j);
        let sum = 0;
        for (let j = a0; j < a1; j++) sum += Math.exp(s[j]! - max);
        for (let j = b0; j < b1; j++) sum += Math.exp(s[j]! - max);
        const l = max + Math.log(sum);
        lse[(r * NH + h) * T + t] = l;
        for (let i = 0; i < HS; i++) out[qo + i] = 0;
        const addValue = (j: number): void => {
          const p = Math.exp(s[j]! - l);
          const vo = (r * T + j) * kvStride + kvh * HS;
          for (let i = 0; i < HS; i++) out[qo + i] += p * v[vo + i]!;
        };
        for (let j = a0; j < a1; j++) addValue(j);
        for (let j = b0; j < b1; j++) addValue(j);
      }
    }
  }
}

let scratch = new Float64Array(0);
// Grows once to the longest T seen and is reused, so a training step allocates nothing here.
function attentionScratch(T: number): Float64Array {
  if (scratch.length < T) scratch = new Float64Array(T);
  return scratch;
}

// With p_j = exp(s_j − lse), s_j = cap(scale·q·k_j), out = Σ p_j v_j:
// dp_j = dout·v_j; ds_j = p_j (dp_j − Σ_k p_k dp_k), and Σ_k p_k dp_k = dout·out;
// cap(x) = c·tanh(x/c) has cap' = 1 − tanh²(x/c) (1 without a cap), so with ds'_j = ds_j · cap'_j:
// dq += scale Σ_j ds'_j k_j; dk_j += scale ds'_j q; dv_j += p_j dout.
export function attentionBackward(
  dq: Buf, dk: Buf, dv: Buf, dout: Buf, q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf, branch: Int32Array | null,
  R: number, T: number, NH: number, NKV: number, HS: number, window: number, scale: number, softcap: number,
): void {
  const group = NH / NKV;
  const qStride = NH * HS;
  const kvStride = NKV * HS;
  for (let r = 0; r < R; r++) {
    const [P, S] = branchOf(branch, r, T);
    for (let h = 0; h < NH; h++) {
      const kvh = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const qo = (r * T + t) * qStride + h * HS;
        const l = lse[(r * NH + h) * T + t]!;
        let D = 0;
        for (let i = 0; i < HS; i++) D += dout[qo + i]! * out[qo + i]!;
        const [a0, a1, b0, b1] = attentionVisible(t, P, S, window);
        const key = (j: number): void => {
          const ko = (r * T + j) * kvStride + kvh * HS;
          let sc = 0, dp = 0;
          for (let i = 0; i < HS; i++) {
            sc += q[qo + i]! * k[ko + i]!;
            dp += dout[qo + i]! * v[ko + i]!;
          }
          const th = softcap > 0 ? Math.tanh((sc * scale) / softcap) : 0;
          const p = Math.exp(softcapped(sc * scale, softcap) - l);
          const ds = p * (dp - D) * (1 - th * th) * scale;
          for (let i = 0; i < HS; i++) {
            dv[ko + i] += p * dout[qo + i]!;
            dq[qo + i] += ds * k[ko + i]!;
            dk[ko + i] += ds * q[qo + i]!;
          }
        };
        for (let j = a0; j < a1; j++) key(j);
        for (let j = b0; j < b1; j++) key(j);
      }
    }
  }
}

export function attentionDecode(
  out: Buf, q: Buf, kCache: Buf, vCache: Buf, T: number, pos0: number, NH: number, NKV: number, HS: number, window: number,
  scale: number, softcap: number,
): void {
  const group = NH / NKV;
  const qStride = NH * HS;
  const kvStride = NKV * HS;
  const p = attentionScratch(pos0 + T);
  for (let t = 0; t < T; t++) {
    const pos = pos0 + t;
    const first = window > 0 ? Math.max(0, pos - window + 1) : 0;
    for (let h = 0; h < NH; h++) {
      const kvh = Math.floor(h / group);
      const qo = t * qStride + h * HS;
      let max = -Infinity;
      for (let j = first; j <= pos; j++) {
        const ko = j * kvStride + kvh * HS;
        let s = 0;
        for (let i = 0; i < HS; i++) s += q[qo + i]! * kCache[ko + i]!;
        s = softcapped(s * scale, softcap);
        p[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = first; j <= pos; j++) {
        p[j] = Math.exp(p[j]! - max);
        sum += p[j]!;
      }
      for (let i = 0; i < HS; i++) out[qo + i] = 0;
      for (let j = first; j <= pos; j++) {
        const w = p[j]! / sum;
        const vo = j * kvStride + kvh * HS;
        for (let i = 0; i < HS; i++) out[qo + i] += w * vCache[vo + i]!;
      }
    }
  }
}

export function swigluForward(out: Buf, gate: Buf, up: Buf, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i]!;
    out[i] = (g / (1 + Math.exp(-g))) * up[i]!;
  }
}

// silu(g) = g σ(g); silu'(g) = σ(g) (1 + g (1 − σ(g)))
export function swigluBackward(dgate: Buf, dup: Buf, dout: Buf, gate: Buf, up: Buf, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i]!;
    const sg = 1 / (1 + Math.exp(-g));
    dgate[i] += dout[i]! * up[i]! * sg * (1 + g * (1 - sg));
    dup[i] += dout[i]! * g * sg;
  }
}

const GELU_K = Math.sqrt(2 / Math.PI);

// gelu_tanh(g) = 0.5 g (1 + tanh u), u = √(2/π) (g + 0.044715 g³), torch's approximate="tanh". Evaluated as g σ(2u),
// the same function (0.5 (1 + tanh u) = σ(2u)): for negative g, 1 + tanh u cancels to a relative error of
// ~1e-16 / σ(2u) (1e-4 at g = −5.5), while σ(2u) = 1/(1 + e^(−2u)) stays accurate to the last bits.
// test/gemma-kernels.test.ts checks it against the tanh form written out.
export function gegluForward(out: Buf, gate: Buf, up: Buf, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i]!;
    out[i] = (g / (1 + Math.exp(-2 * GELU_K * (g + 0.044715 * g * g * g)))) * up[i]!;
  }
}

// gelu_tanh'(g) = 0.5 (1 + tanh u) + 0.5 g (1 − tanh² u) u' = s + 2 g s (1 − s) u', with s = σ(2u) and
// u' = √(2/π) (1 + 3·0.044715 g²) (1 − tanh² u = 4 s (1 − s)).
export function gegluBackward(dgate: Buf, dup: Buf, dout: Buf, gate: Buf, up: Buf, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i]!;
    const s = 1 / (1 + Math.exp(-2 * GELU_K * (g + 0.044715 * g * g * g)));
    const dgelu = s + 2 * g * s * (1 - s) * GELU_K * (1 + 3 * 0.044715 * g * g);
    dgate[i] += dout[i]! * up[i]! * dgelu;
    dup[i] += dout[i]! * g * s;
  }
}

// GPT-2's plain GELU: gegluForward's and gegluBackward's expressions without the up factor, so that, up = 1 being an
// exact factor, gelu(x) and geglu(x, 1) agree bit for bit (test/gpt2-kernels.test.ts).
export function geluForward(out: Buf, inp: Buf, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = inp[i]!;
    out[i] = g / (1 + Math.exp(-2 * GELU_K * (g + 0.044715 * g * g * g)));
  }
}

export function geluBackward(dinp: Buf, dout: Buf, inp: Buf, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = inp[i]!;
    const s = 1 / (1 + Math.exp(-2 * GELU_K * (g + 0.044715 * g * g * g)));
    const dgelu = s + 2 * g * s * (1 - s) * GELU_K * (1 + 3 * 0.044715 * g * g);
    dinp[i] += dout[i]! * dgelu;
  }
}

export function addForward(out: Buf, a: Buf, b: Buf, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
}

export function accumulate(dst: Buf, src: Buf, n: number): void {
  for (let i = 0; i < n; i++) dst[i] += src[i]!;
}

export function scale(x: Buf, s: number, n: number): void {
  for (let i = 0; i < n; i++) x[i] *= s;
}

export function sumSquares(x: Buf, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i]! * x[i]!;
  return s;
}

// One row of logits at a time, in double: z_v = x·W_v (capped when softcap > 0), then the same reductions as a
// log-softmax would do.
export function lmHeadLogprobForward(
  logp: Buf, lse: Buf, logitSum: Buf, logSumSq: Buf | null, x: Buf, rows: Int32Array, targets: Int32Array, W: Buf,
  M: number, C: number, V: number, softcap: number, entropy: Buf | null = null, argmax: Int32Array | null = null,
): void {
  const z = lmHeadScratch(V);
  for (let m = 0; m < M; m++) {
    lmHeadRow(z, x, rows[m]! * C, W, C, V);
    if (softcap > 0) for (let v = 0; v < V; v++) z[v] = softcapped(z[v]!, softcap);
    let max = -Infinity, arg = 0, sum = 0;
    for (let v = 0; v < V; v++) {
      if (z[v]! > max) (max = z[v]!), (arg = v);
      sum += z[v]!;
    }
    let se = 0, se2 = 0, sez = 0;
    for (let v = 0; v < V; v++) {
      const e = Math.exp(z[v]! - max);
      se += e;
      se2 += e * e;
      sez += e * (z[v]! - max);
    }
    const l = max + Math.log(se);
    lse[m] = l;
    logitSum[m] = sum;
    logp[m] = z[targets[m]!]! - l;
    if (logSumSq) logSumSq[m] = Math.log(se2) - 2 * Math.log(se); // Σ p² = Σ e² / (Σ e)²
    if (entropy) entropy[m] = Math.log(se) - sez / se; // H = lse − Σ p·z, with the max taken out of both terms
    if (argmax) argmax[m] = arg;
  }
}

// dz_v = g (1[v = target] − p_v) with respect to the (capped) logit, times 1 − tanh²(z_v / softcap) for the raw one.
export function lmHeadLogprobBackward(
  dx: Buf, dW: Buf | null, dlogp: Buf, x: Buf, rows: Int32Array, targets: Int32Array, W: Buf, lse: Buf,
  M: number, C: number, V: number, softcap: number,
): void {
  const z = lmHeadScratch(V);
  for (let m = 0; m < M; m++) {
    const g = dlogp[m]!;
    if (g === 0) continue;
    const xo = rows[m]! * C;
    lmHeadRow(z, x, xo, W, C, V);
    const l = lse[m]!;
    for (let v = 0; v < V; v++) {
      const th = softcap > 0 ? Math.tanh(z[v]! / softcap) : 0;
      const dz = g * ((v === targets[m] ? 1 : 0) - Math.exp(softcapped(z[v]!, softcap) - l)) * (1 - th * th);
      const wo = v * C;
      for (let c = 0; c < C; c++) {
        dx[xo + c] += dz * W[wo + c]!;
        if (dW) dW[wo + c] += dz * x[xo + c]!;
      }
    }
  }
}

function lmHeadRow(z: Float64Array, x: Buf, xo: number, W: Buf, C: number, V: number): void {
  for (let v = 0; v < V; v++) {
    const wo = v * C;
    let d = 0;
    for (let c = 0; c < C; c++) d += x[xo + c]! * W[wo + c]!;
    z[v] = d;
  }
}

let zScratch = new Float64Array(0);
function lmHeadScratch(V: number): Float64Array {
  if (zScratch.length < V) zScratch = new Float64Array(V);
  return zScratch;
}

export function adamwStep(
  params: Buf, grads: Buf, m: Buf, v: Buf, n: number,
  lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number,
): void {
  const bc1 = 1 - beta1 ** step;
  const bc2 = 1 - beta2 ** step;
  const stepSize = lr / bc1;
  const bc2Sqrt = Math.sqrt(bc2);
  for (let i = 0; i < n; i++) {
    const g = grads[i]!;
    const p = params[i]! * (1 - lr * weightDecay); // torch: param.mul_(1 - lr * weight_decay)
    const mi = beta1 * m[i]! + (1 - beta1) * g;
    const vi = beta2 * v[i]! + (1 - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] = p - (stepSize * m[i]!) / (Math.sqrt(v[i]!) / bc2Sqrt + eps);
  }
}

/** The plain kernels above, every one: the reference the fast paths and the native backend are tested against. */
const QUANT_TYPE_OF_ID = new Map(Object.entries(GGML_TYPE_ID).map(([name, id]) => [id, name as QuantType]));

/** Backend.dequantizeRows, with the block formats of src/quant/ggml.ts (checked bit for bit against ggml's own). */
export function dequantizeRows(dst: Float32Array, src: Uint8Array, type: number, srcOffset: number, rows: number, cols: number): void {
  const t = QUANT_TYPE_OF_ID.get(type);
  if (t === undefined) throw new Error(`internal: ggml type ${type} has no dequantisation`);
  const rb = rowBytes(t, cols);
  for (let r = 0; r < rows; r++) dequantizeRow(t, src, srcOffset + r * rb, dst, r * cols, cols);
}

export const referenceBackend: Backend = {
  name: "js-reference",
  embeddingForward, embeddingBackward,
  rmsnormForward, rmsnormBackward,
  layernormForward, layernormBackward,
  matmulForward, matmulBackward,
  ropeForward, ropeBackward,
  attentionForward, attentionBackward, attentionDecode,
  swigluForward, swigluBackward,
  gegluForward, gegluBackward,
  geluForward, geluBackward,
  addForward, accumulate, scale, sumSquares,
  lmHeadLogprobForward, lmHeadLogprobBackward,
  adamwStep,
  dequantizeRows,
};

/** What tsdpo runs on without the native addon: the reference with the tiled matmul and attention of fast.ts. */
export const jsBackend: Backend = {
  ...referenceBackend,
  name: "js",
  matmulForward: fast.matmulForward,
  matmulBackward: fast.matmulBackward,
  attentionForward: fast.attentionForward,
  attentionBackward: fast.attentionBackward,
  lmHeadLogprobForward: fast.lmHeadLogprobForward,
  lmHeadLogprobBackward: fast.lmHeadLogprobBackward,
};
