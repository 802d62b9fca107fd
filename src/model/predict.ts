// What the last forward predicted at the positions whose log-probs it computed: the entropy of each next-token
// distribution and whether its most likely token is the target. TRL logs these as `entropy` (DPO, KTO, SFT) and
// `mean_token_accuracy` (SFT). The fused LM head (Backend.lmHeadLogprobForward) never stores the (M, V) logits, so
// they are recomputed here from the saved final norm, a chunk of rows at a time, into scratch allocated once per model:
// one more LM-head product over the M positions, with no gradient.

import type { Backend, Buf } from "../backend/contract.js";
import { softcapped } from "../backend/js/softcap.js";
import { decoderOptions } from "./config.js";
import type { Activations, Model } from "./decoder.js";
import { matmulForwardW } from "./weights.js";

/** Rows of logits computed per LM-head product. */
const CHUNK = 64;

interface Scratch {
  x: Buf; // (CHUNK, C) the final norm's rows, gathered
  logits: Buf; // (CHUNK, V)
}
const scratches = new WeakMap<Model, Scratch>();

function scratchFor(model: Model): Scratch {
  let s = scratches.get(model);
  if (!s) scratches.set(model, (s = { x: new model.ctor(CHUNK * model.cfg.C), logits: new model.ctor(CHUNK * model.cfg.V) }));
  return s;
}

/**
 * For each of the last forward's M wanted log-probs m: entropy[m] = H(softmax(z)) = logsumexp(z) − Σ_v softmax(z)_v·z_v
 * of the logits z at position acts.rows[m] (after Gemma's final soft-cap), and correct[m] = 1 when argmax z (the
 * first on a tie, as torch.argmax) is acts.targets[m]. Either output may be null.
 */
export function predictionStats(
  be: Backend, model: Model, acts: Activations,
  entropy: Float64Array | null, // (M)
  correct: Uint8Array | null, // (M)
): void {
  const { C, V } = model.cfg;
  const scratch = scratchFor(model);
  const softcap = decoderOptions(model.cfg).finalSoftcap;
  const M = acts.M;
  for (let m0 = 0; m0 < M; m0 += CHUNK) {
    const n = Math.min(CHUNK, M - m0);
    for (let j = 0; j < n; j++) {
      const row = acts.rows[m0 + j]!;
      scratch.x.set(acts.lnf.subarray(row * C, row * C + C), j * C);
    }
    matmulForwardW(be, scratch.logits, scratch.x, model.p.lmHead, null, n, C, V);
    for (let j = 0; j < n; j++) {
      const z = scratch.logits.subarray(j * V, j * V + V);
      let max = -Infinity;
      let arg = 0;
      for (let v = 0; v < V; v++) {
        const x = softcapped(z[v]!, softcap);
        if (x > max) (max = x), (arg = v);
      }
      if (correct) correct[m0 + j] = arg === acts.targets[m0 + j] ? 1 : 0;
      if (!entropy) continue;
      let s = 0;
      let sz = 0;
      for (let v = 0; v < V; v++) {
        const x = softcapped(z[v]!, softcap) - max;
        const e = Math.exp(x);
        s += e;
        sz += e * x;
      }
      // H = log s − (Σ e·x)/s with x = z − max: the shift cancels
      entropy[m0 + j] = Math.log(s) - sz / s;
    }
  }
}
