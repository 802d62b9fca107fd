// A reward model as a judge: a Hugging Face LlamaForSequenceClassification / Qwen2ForSequenceClassification folder
// (also Mistral and Qwen3), run by tsdpo's own decoder. Its score is transformers' sequence-classification head:
// score.weight (1, C), no bias, applied to the final-normed hidden state of the last token that is not padding.
//
// The text scored for (prompt, completion):
//   - when the tokenizer has a chat template: the conversation [user: prompt, assistant: completion] rendered by it
//     without a generation prompt (what a reward model trained on chat data saw, e.g. through TRL's RewardTrainer),
//     tokenised with its special-token strings as special tokens, BOS added when the model uses one and the
//     template did not write it (the data loader's rule, data/tokenize.ts pairEncoder);
//   - otherwise: BOS when the model uses one, then prompt + completion as one plain string (special-token strings
//     in it stay text).
// The last non-padding token is the rightmost token whose id is not config.json's pad_token_id (transformers ≥ 4.47
// finds it this way, so a completion that ends in the pad token is scored at the token before it, as there); a batch
// is right-padded, so padding never reaches a real token through causal attention.
//
// tools/reward_fixtures.py computes the same scores in float64 PyTorch for two tiny folders (test/fixtures/reward),
// which test/judges-model.test.ts compares with.

import { resolve } from "node:path";
import type { Backend, Buf } from "../backend/contract.js";
import { selectBackend } from "../backend/select.js";
import { pairEncoder } from "../data/tokenize.js";
import { inputError } from "../errors.js";
import { type LoadedModel, type ScoreHead, loadModel } from "../io/load.js";
import { decoderOptions } from "../model/config.js";
import { type Activations, type FloatCtor, createActivations, forwardPacked } from "../model/decoder.js";
import { renderChat } from "../tokenizer/chat.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { type Judge, type JudgeContext, located } from "./types.js";

export interface RewardModel {
  loaded: LoadedModel;
  head: ScoreHead;
  be: Backend;
  /** Activations of the last batch, grown when a longer or larger batch comes (forward-only, checkpointed). */
  acts: Activations | null;
}

/**
 * Loads a sequence-classification folder as a reward model. One-line errors: a GGUF file or a causal LM folder (no
 * score head), a folder without score.weight, a head with more than one label.
 */
export function openRewardModel(folder: string, be: Backend, ctor: FloatCtor = Float32Array): RewardModel {
  const loaded = loadModel(folder, ctor, { scoreHead: true });
  const head = loaded.scoreHead!;
  if (head.labels !== 1)
    throw inputError(
      `${folder}: the score head has ${head.labels} labels (score.weight [${head.labels}, ${loaded.model.cfg.C}]); a reward judge needs ` +
        `num_labels 1, one scalar reward per completion`,
    );
  // lnf is the hidden state divided by the logit scale (Granite); the families read here have none
  if (decoderOptions(loaded.model.cfg).logitScale !== 1) throw new Error("internal: a reward model with a logit scale");
  return { loaded, head, be, acts: null };
}

/** The token ids a reward model scores for (prompt, completion); see the header for the rule. */
export function rewardInput(tok: Tokenizer, prompt: string, completion: string, source = "reward model"): number[] {
  if (tok.chatTemplate !== null && tok.chatTemplate !== "") {
    const name = (id: number | null): string | undefined => (id === null ? undefined : tok.idToToken(id));
    const text = renderChat(
      tok.chatTemplate,
      [{ role: "user", content: prompt }, { role: "assistant", content: completion }],
      { addGenerationPrompt: false, bosToken: name(tok.bosId), eosToken: name(tok.eosId), source: `${source} (chat template)` },
    );
    return pairEncoder(tok).prompt(text).ids;
  }
  return [...(tok.addBos && tok.bosId !== null ? [tok.bosId] : []), ...tok.encode(prompt + completion)];
}

/**
 * Scores of token sequences, `batchRows` at a time: each batch right-padded to its longest row, one forward without
 * the LM head (M = 0: acts.lnf holds the final-normed hidden states), then score.weight · h at each row's last
 * non-padding token. Float64 results.
 */
export function rewardScores(rm: RewardModel, rows: readonly (readonly number[])[], batchRows = 8): Float64Array {
  const { model } = rm.loaded;
  const { C } = model.cfg;
  const pad = rm.head.padId;
  const out = new Float64Array(rows.length);
  const w = rm.head.weight; // (1, C)
  const none = new Int32Array(0);
  for (let s = 0; s < rows.length; s += batchRows) {
    const chunk = rows.slice(s, s + batchRows);
    const R = chunk.length;
    const T = Math.max(...chunk.map((r) => r.length));
    if (T === 0) throw new Error("internal: a reward model needs at least one token");
    if (!rm.acts || rm.acts.maxRows < R || rm.acts.maxT < T)
      rm.acts = createActivations(model, Math.max(R, rm.acts?.maxRows ?? 0), Math.max(T, rm.acts?.maxT ?? 0), true);
    const ids = new Int32Array(R * T).fill(pad !== null && pad < model.cfg.V ? pad : 0); // (R, T) right-padded
    const pos = Int32Array.from({ length: R * T }, (_, n) => n % T);
    chunk.forEach((r, i) => ids.set(r, i * T));
    forwardPacked(rm.be, model, rm.acts, { ids, pos, branch: null, rows: none, targets: none, R, T, M: 0 });
    const h: Buf = rm.acts.lnf; // (R, T, C)
    chunk.forEach((r, i) => {
      let t = 0; // transformers: the rightmost non-pad token, or 0 when every token is the pad token
      for (let k = r.length - 1; k >= 0; k--)
        if (r[k] !== pad) {
          t = k;
          break;
        }
      let acc = 0;
      const base = (i * T + t) * C;
      for (let c = 0; c < C; c++) acc += h[base + c]! * w[c]!;
      out[s + i] = acc;
    });
  }
  return out;
}


/**
 * The `score` judge of a reward-model folder (`path` relative to ctx.baseDir), on ctx.backend (the default
 * backend when unset), in float32.
 */
export function loadRewardJudge(path: string, ctx: JudgeContext): Judge {
  const folder = resolve(ctx.baseDir, path);
  const rm = located(ctx, () => openRewardModel(folder, selectBackend(ctx.backend)));
  const tok = rm.loaded.tokenizer;
  let last: Record<string, number> | null = null;
  let warned = false;
  return {
    name: `reward:${path}`,
    async score(prompt: string, completion: string): Promise<number> {
      const ids = rewardInput(tok, prompt, completion, folder);
      if (ids.length > rm.loaded.model.cfg.maxSeqLen && !warned) {
        warned = true; // RoPE runs on past the trained context, but the score is then worth less; said once
        process.stderr.write(`${ctx.where}: ${folder}: a text of ${ids.length} tokens is longer than the reward model's context of ${rm.loaded.model.cfg.maxSeqLen}; its scores there are unreliable\n`);
      }
      const s = rewardScores(rm, [ids])[0]!;
      if (!Number.isFinite(s)) throw new Error(`reward model ${folder} gave a non-finite score (${s})`);
      last = { tokens: ids.length };
      return s;
    },
    lastDetail: () => last,
    close(): void {
      rm.acts = null;
    },
  };
}
