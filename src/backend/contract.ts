// The kernel contract. Every backend (js/ here, native/ later) implements exactly these functions with flat numeric
// signatures: buffers, integer sizes and scalars, never a config object. Conventions, after llm.c:
// - outputs come first, then inputs, then sizes;
// - every `*Backward` ACCUMULATES into its gradient outputs (+=), so callers zero gradients once per step;
// - a gradient output passed as null is not computed (frozen parameters);
// - shapes are given in comments with the letters of src/model/config.ts; N is a count of rows (N = rows·T).
//
// Buffers are Float32Array in training; the js backend also accepts Float64Array so that finite-difference tests
// can run whole kernels and models in double precision.

export type Buf = Float32Array | Float64Array;

export interface Backend {
  readonly name: string;

  /** out[n,:] = table[ids[n],:] */
  embeddingForward(out: Buf /* (N,C) */, ids: Int32Array /* (N) */, table: Buf /* (V,C) */, N: number, C: number): void;
  /** dtable[ids[n],:] += dout[n,:] */
  embeddingBackward(dtable: Buf /* (V,C) */, dout: Buf /* (N,C) */, ids: Int32Array /* (N) */, N: number, C: number): void;

  /**
   * out = x / sqrt(mean(x²) + eps) · (offset + weight), per row; rstd saved for backward. offset is 0 for Llama-family
   * norms and 1 for Gemma's, which store the weight as a deviation from 1 (HF Gemma*RMSNorm: x̂ · (1 + w)).
   */
  rmsnormForward(out: Buf /* (N,C) */, rstd: Buf /* (N) */, inp: Buf /* (N,C) */, weight: Buf /* (C) */, N: number, C: number, eps: number, offset: number): void;
  /** dinp += the input gradient through (offset + weight); dweight += Σ_n dout · x · rstd (the same form for any offset). */
  rmsnormBackward(dinp: Buf /* (N,C) */, dweight: Buf | null /* (C) */, dout: Buf /* (N,C) */, inp: Buf, weight: Buf, rstd: Buf, N: number, C: number, offset: number): void;

  /**
   * LayerNorm with bias (GPT-2, torch.nn.LayerNorm), per row: out = (x − mean) · rstd · weight + bias, with
   * rstd = 1/sqrt(var + eps) and var the biased variance (Σ (x − mean)² / C). mean and rstd are saved for backward.
   * bias null: no bias (elementwise_affine with bias=False).
   */
  layernormForward(
    out: Buf /* (N,C) */, mean: Buf /* (N) */, rstd: Buf /* (N) */, inp: Buf /* (N,C) */, weight: Buf /* (C) */, bias: Buf | null /* (C) */,
    N: number, C: number, eps: number,
  ): void;
  /**
   * With x̂ = (x − mean) · rstd: dinp += rstd · (g − mean_c(g) − x̂ · mean_c(g · x̂)), g = dout · weight;
   * dweight += Σ_n dout · x̂; dbias += Σ_n dout (either null: not computed).
   */
  layernormBackward(
    dinp: Buf /* (N,C) */, dweight: Buf | null /* (C) */, dbias: Buf | null /* (C) */, dout: Buf /* (N,C) */, inp: Buf /* (N,C) */,
    weight: Buf /* (C) */, mean: Buf /* (N) */, rstd: Buf /* (N) */, N: number, C: number,
  ): void;

  /** out = inp · weightᵀ + bias (nn.Linear) */
  matmulForward(out: Buf /* (N,OC) */, inp: Buf /* (N,IC) */, weight: Buf /* (OC,IC) */, bias: Buf | null /* (OC) */, N: number, IC: number, OC: number): void;
  matmulBackward(
    dinp: Buf | null /* (N,IC) */, dweight: Buf | null /* (OC,IC) */, dbias: Buf | null /* (OC) */,
    dout: Buf /* (N,OC) */, inp: Buf /* (N,IC) */, weight: Buf /* (OC,IC) */, N: number, IC: number, OC: number,
  ): void;

  /**
   * Rotary embedding in place, Hugging Face rotate-half layout over the first RD features of each head: element i
   * pairs with i + RD/2 (i < RD/2), and features RD..HS−1 pass through unchanged (partial RoPE, Phi-4-mini's
   * partial_rotary_factor; RD = HS rotates the whole head). RD is even and ≤ HS.
   * Row n of x is at position pos[n] (a packed preference row restarts its rejected branch at the prompt's end).
   * cos/sin tables are (maxT, RD/2), built by the model from its config (model/rope.ts); they may carry a factor
   * (LongRoPE's attention scaling multiplies both), which then scales the rotated features only.
   */
  ropeForward(x: Buf /* (N, H·HS) */, cos: Buf, sin: Buf, pos: Int32Array /* (N) */, N: number, H: number, HS: number, RD: number): void;
  /** The transpose, in place on the gradient: rotation by −θ with the same factor; pass-through features untouched. */
  ropeBackward(dx: Buf /* (N, H·HS) */, cos: Buf, sin: Buf, pos: Int32Array /* (N) */, N: number, H: number, HS: number, RD: number): void;

  /**
   * Causal grouped-query attention. Query head h reads KV head floor(h / (NH/NKV)). The score of query i and key j is
   * s = scale · q_i·k_j (callers pass scale = 1/sqrt(HS); Gemma passes 1/sqrt(query_pre_attn_scalar)); with
   * softcap > 0 it becomes softcap · tanh(s / softcap) (Gemma 2's attn_logit_softcapping) before masking and softmax,
   * and the backward multiplies by its derivative 1 − tanh²(s / softcap). softcap 0: no capping.
   *
   * branch (R,2), when given, packs one preference pair per row as prompt ++ chosen ++ rejected: with [P, S] =
   * branch[r], queries at index i ≥ S (the rejected answer) do not see keys P..S−1 (the chosen answer), so both
   * answers attend to one copy of the prompt (see attentionVisible in js/mask.ts). S ≥ T means plain causal.
   * window > 0 limits each query to keys fewer than `window` positions back (Mistral sliding window); positions
   * restart at P for the rejected branch. 0 means no window.
   *
   * Nothing of size (T,T) is kept: lse (R,NH,T) saves each query's log-normaliser, and the backward recomputes the
   * probabilities from q, k and lse.
   */
  attentionForward(
    out: Buf /* (R,T,NH·HS) */, lse: Buf /* (R,NH,T) */, q: Buf /* (R,T,NH·HS) */, k: Buf /* (R,T,NKV·HS) */, v: Buf /* (R,T,NKV·HS) */,
    branch: Int32Array | null /* (R,2) */, R: number, T: number, NH: number, NKV: number, HS: number, window: number,
    scale: number, softcap: number,
  ): void;
  attentionBackward(
    dq: Buf, dk: Buf, dv: Buf, dout: Buf /* (R,T,NH·HS) */, q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf,
    branch: Int32Array | null, R: number, T: number, NH: number, NKV: number, HS: number, window: number,
    scale: number, softcap: number,
  ): void;

  /**
   * Attention of T new queries at positions pos0..pos0+T−1 against a KV cache that already holds positions
   * 0..pos0+T−1 (generation), with the scores of attentionForward (scale, softcap). No probabilities are saved: this
   * path has no backward.
   */
  attentionDecode(
    out: Buf /* (T,NH·HS) */, q: Buf /* (T,NH·HS) */, kCache: Buf /* (maxT,NKV·HS) */, vCache: Buf /* (maxT,NKV·HS) */,
    T: number, pos0: number, NH: number, NKV: number, HS: number, window: number, scale: number, softcap: number,
  ): void;

  /** out = silu(gate) ⊙ up, elementwise (out may alias gate or up) */
  swigluForward(out: Buf /* (n) */, gate: Buf /* (n) */, up: Buf /* (n) */, n: number): void;
  swigluBackward(dgate: Buf, dup: Buf, dout: Buf, gate: Buf, up: Buf, n: number): void;
  /**
   * out = gelu_tanh(gate) ⊙ up, elementwise (out may alias gate or up): Gemma's MLP (HF gelu_pytorch_tanh), with
   * gelu_tanh(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
   */
  gegluForward(out: Buf /* (n) */, gate: Buf /* (n) */, up: Buf /* (n) */, n: number): void;
  gegluBackward(dgate: Buf, dup: Buf, dout: Buf, gate: Buf, up: Buf, n: number): void;
  /**
   * out = gelu_tanh(inp), elementwise (out may alias inp): GPT-2's MLP (HF gelu_new), the same function as GeGLU's,
   * computed the same way, so geluForward(x) equals gegluForward(x, up = 1) bit for bit.
   */
  geluForward(out: Buf /* (n) */, inp: Buf /* (n) */, n: number): void;
  /** dinp += dout · gelu_tanh'(inp) */
  geluBackward(dinp: Buf /* (n) */, dout: Buf /* (n) */, inp: Buf /* (n) */, n: number): void;

  /** out = a + b (the residual stream); its backward is `accumulate` of the same gradient into both branches */
  addForward(out: Buf, a: Buf, b: Buf, n: number): void;
  /** dst += src */
  accumulate(dst: Buf, src: Buf, n: number): void;
  /** x *= s, in place (gradient clipping) */
  scale(x: Buf, s: number, n: number): void;
  /** Σ x², accumulated in double (the gradient norm) */
  sumSquares(x: Buf, n: number): number;

  /**
   * The language-model head fused with log-softmax and gather, over chosen rows of x only: for m < M, with
   * z = x[rows[m],:] · Wᵀ (the V logits of that position), capped to z = softcap · tanh(z / softcap) when softcap > 0
   * (Gemma 2's final_logit_softcapping; 0: no capping),
   *   logp[m] = z[targets[m]] − lse[m],  lse[m] = logsumexp(z),  logitSum[m] = Σ_v z[v] (TRL's `logits/*` metrics,
   *   which see the model's output logits, so the capped ones),
   *   logSumSq[m] = log Σ_v softmax(z)[v]² (WPO's weights; skipped when null),
   *   entropy[m] = H(softmax(z)) = lse[m] − Σ_v softmax(z)[v]·z[v] (TRL's `entropy`; skipped when null or absent),
   *   argmax[m] = the first v with the largest z[v], as torch.argmax (`mean_token_accuracy`; skipped when null or absent).
   * The (M,V) logits are never stored: backends work through the rows in chunks.
   */
  lmHeadLogprobForward(
    logp: Buf /* (M) */, lse: Buf /* (M) */, logitSum: Buf /* (M) */, logSumSq: Buf | null /* (M) */,
    x: Buf /* (N,C) */, rows: Int32Array /* (M) */, targets: Int32Array /* (M) */, W: Buf /* (V,C) */, M: number, C: number, V: number,
    softcap: number, entropy?: Buf | null /* (M) */, argmax?: Int32Array | null /* (M) */,
  ): void;
  /**
   * With dz[v] = dlogp[m] · (1[v = targets[m]] − softmax(z)[v]) · (1 − tanh²(z_raw[v] / softcap)) (the last factor
   * only when softcap > 0), recomputed from x, W and lse:
   * dx[rows[m],:] += dz · W and dW += dzᵀ · x[rows[m],:] (dW null: frozen). Rows may repeat.
   */
  lmHeadLogprobBackward(
    dx: Buf /* (N,C) */, dW: Buf | null /* (V,C) */, dlogp: Buf /* (M) */, x: Buf, rows: Int32Array, targets: Int32Array, W: Buf,
    lse: Buf, M: number, C: number, V: number, softcap: number,
  ): void;

  /**
   * dst (rows, cols) = consecutive rows of a matrix stored in GGML blocks of type `type` (ggml's type number:
   * Q8_0 8, Q4_K 12, …), starting at byte srcOffset of src; cols is a multiple of the type's block size. This is
   * how frozen quantised weights reach the float32 kernels, a panel at a time (src/model/weights.ts).
   */
  dequantizeRows(dst: Float32Array, src: Uint8Array, type: number, srcOffset: number, rows: number, cols: number): void;
  /**
   * Optional fused products with W (OC, IC) in GGML blocks of `type` starting at byte wOffset of w: matmulForward,
   * and the dinp half of matmulBackward (dinp += dout · W). A backend without them gets panels of dequantizeRows
   * and its float matmul (src/model/weights.ts); the native one dequantises a panel and runs its GEMM in one call.
   */
  matmulForwardQuant?(
    out: Buf /* (N,OC) */, inp: Buf /* (N,IC) */, w: Uint8Array, type: number, wOffset: number, bias: Buf | null, N: number, IC: number, OC: number,
  ): void;
  matmulBackwardQuant?(dinp: Buf /* (N,IC) */, dout: Buf /* (N,OC) */, w: Uint8Array, type: number, wOffset: number, N: number, IC: number, OC: number): void;
  /**
   * Optional: the fused LM head (lmHeadLogprobForward / lmHeadLogprobBackward) with a frozen W (V, C) in GGML blocks
   * of `type`, and no dW. A backend without them gets the chunked online log-sum-exp of src/model/weights.ts.
   */
  lmHeadLogprobForwardQuant?(
    logp: Buf, lse: Buf, logitSum: Buf, logSumSq: Buf | null, x: Buf, rows: Int32Array, targets: Int32Array, w: Uint8Array, type: number,
    M: number, C: number, V: number, softcap: number, entropy?: Buf | null, argmax?: Int32Array | null,
  ): void;
  lmHeadLogprobBackwardQuant?(
    dx: Buf, dlogp: Buf, x: Buf, rows: Int32Array, targets: Int32Array, w: Uint8Array, type: number, lse: Buf, M: number, C: number, V: number,
    softcap: number,
  ): void;

  /**
   * One AdamW step (Loshchilov & Hutter, decoupled weight decay), as torch.optim.AdamW computes it:
   * p -= lr·wd·p; m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²; p -= lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps).
   * `step` is t, counted from 1.
   */
  adamwStep(
    params: Buf, grads: Buf, m: Buf, v: Buf, n: number,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number,
  ): void;
}
