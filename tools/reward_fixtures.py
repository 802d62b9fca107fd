#!/usr/bin/python3
"""Reference scores for tsdpo's reward-model judge (src/judge/reward.ts), computed with PyTorch in float64.

Writes two tiny Hugging Face sequence-classification folders and what tsdpo must reproduce from them:
  test/fixtures/reward/llama/   LlamaForSequenceClassification: untied, no chat template, BOS, pad_token_id <pad>
  test/fixtures/reward/qwen2/   Qwen2ForSequenceClassification: q/k/v biases, tied, a ChatML chat template,
                                pad_token_id <|endoftext|>, no BOS
  test/fixtures/reward/expected.json   per folder: the texts, their token ids and float64 scores, one at a time and
                                as one right-padded batch

Each folder holds config.json, model.safetensors (float32 weights, the decoder's tensors plus score.weight (1, C), no
lm_head), tokenizer.json and tokenizer_config.json. The tokenizer is character level (a BPE model with no merges and
no pre-tokenizer: every character is one token), so the ids are reproduced here without a tokenizer library:
special-token strings become their ids, every other character its own id.

The text scored (reward.ts's rule, written out here by hand):
  - no chat template: BOS (when add_bos_token) + the characters of prompt + completion;
  - a chat template: the conversation [user: prompt, assistant: completion] rendered by it (for this ChatML template:
    "<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n{completion}<|im_end|>\\n").

The model is transformers' LlamaForSequenceClassification / Qwen2ForSequenceClassification: the decoder's final-normed
hidden state h (N, T, C), score = h @ score.weight.T, read at the last token that is not pad_token_id (transformers
>= 4.47: the rightmost non-pad token). The decoder is torch_fixtures.py's hand-written float64 Llama/Qwen2 forward,
which ends in logits = h @ lm_head.T; with lm_head the identity (C, C) those logits are h itself, exactly.

The batch: the texts right-padded with pad_token_id to the longest, positions 0..T-1 in every row (as HF's default
position ids), causal attention; the pads come after every real token, so they change nothing the score reads, and
the batch scores equal the single ones (asserted to 1e-12).

Run: /usr/bin/python3 tools/reward_fixtures.py  (float64 throughout: the BLAS library's last bits do not matter at
the tolerances the test uses, so unlike torch_fixtures.py this script does not pin the reference BLAS.)
"""

import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch_fixtures as tf  # noqa: E402 (its forward, param_specs and write_safetensors)

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "reward")
CHARS = " abcdefghijklmnopqrstuvwxyz.,!?'\n"

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

MODELS = {
    "llama": {
        "specials": ["<unk>", "<s>", "</s>", "<pad>"],  # ids 0..3, then the characters
        "specials_first": True,
        "tokenizer_config": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "add_bos_token": True},
        "config": {
            "architectures": ["LlamaForSequenceClassification"],
            "model_type": "llama",
            "vocab_size": 40,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "intermediate_size": 48,
            "hidden_act": "silu",
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "max_position_embeddings": 128,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 3,
            "id2label": {"0": "LABEL_0"},
            "label2id": {"LABEL_0": 0},
            "torch_dtype": "float32",
        },
    },
    "qwen2": {
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],  # after the characters
        "specials_first": False,
        "tokenizer_config": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "add_bos_token": False, "chat_template": CHATML},
        "config": {
            "architectures": ["Qwen2ForSequenceClassification"],
            "model_type": "qwen2",
            "vocab_size": 40,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 56,
            "hidden_act": "silu",
            "rope_theta": 1000000.0,
            "rope_scaling": None,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True,
            "attention_bias": True,  # not a Qwen2Config key (Qwen2 always has q/k/v biases); torch_fixtures reads it
            "max_position_embeddings": 128,
            "use_sliding_window": False,
            "eos_token_id": 35,
            "pad_token_id": 33,
            "id2label": {"0": "LABEL_0"},
            "label2id": {"LABEL_0": 0},
            "torch_dtype": "float32",
        },
    },
}

TEXTS = [
    ("what is two plus two?", "it is four."),
    ("say hi", "hello there!"),
    ("tell me a story\n", "once upon a time, a cat sat on a mat. the end."),
    ("is it 'ok'?", "no"),
]


def vocab_of(m):
    """token -> id: the specials first (Llama) or after the characters (Qwen2), the characters in CHARS order."""
    tokens = m["specials"] + list(CHARS) if m["specials_first"] else list(CHARS) + m["specials"]
    return {t: i for i, t in enumerate(tokens)}


def tokenize(m, text):
    """Special-token strings to their ids, every other character to its own id (the BPE model has no merges)."""
    vocab = vocab_of(m)
    ids = []
    for piece in re.split("(" + "|".join(re.escape(s) for s in m["specials"]) + ")", text):
        if piece in m["specials"]:
            ids.append(vocab[piece])
        else:
            ids.extend(vocab[c] for c in piece)
    return ids


def scored_ids(m, prompt, completion):
    """The ids reward.ts scores for (prompt, completion), by the rule in the module docstring."""
    tc = m["tokenizer_config"]
    if tc.get("chat_template"):
        text = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{completion}<|im_end|>\n"
        return tokenize(m, text)
    bos = [vocab_of(m)[tc["bos_token"]]] if tc.get("add_bos_token") else []
    return bos + tokenize(m, prompt + completion)


def tokenizer_json(m):
    vocab = vocab_of(m)
    added = [
        {"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for s in m["specials"]
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Fuse"},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>" if "<unk>" in vocab else None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": [],
        },
    }


def weights_of(cfg):
    """float32 weights by torch_fixtures' sin formula over its param_specs (lm_head left out: a classifier has
    none), then score.weight (1, C) by the same formula with the next index k."""
    specs = [s for s in tf.param_specs(cfg) if s[0] != "lm_head.weight"]
    C = cfg["hidden_size"]
    specs.append(("score.weight", (1, C), False))
    params = {}
    for k, (name, shape, is_norm) in enumerate(specs):
        n = math.prod(shape)
        base = torch.sin(torch.arange(n, dtype=torch.float64) * 0.37 + 1.3 * k)
        params[name] = (1.0 + 0.1 * base if is_norm else 0.3 * base).reshape(shape).to(torch.float32)
    return params


def scores(weights, cfg, ids_rows, pad_id):
    """Scores of right-padded rows (N, T): score.weight · h at each row's rightmost non-pad token (float64)."""
    C = cfg["hidden_size"]
    P = {n: w.to(torch.float64) for n, w in weights.items()}
    P["lm_head.weight"] = torch.eye(C, dtype=torch.float64)  # logits = h exactly
    hidden_cfg = dict(cfg, tie_word_embeddings=False)
    ids = torch.tensor(ids_rows, dtype=torch.int64)
    h = tf.forward(P, hidden_cfg, ids)  # (N, T, C) final-normed hidden states
    logits = h @ P["score.weight"].T  # (N, T, 1)
    non_pad = (ids != pad_id).to(torch.int64)
    last = (torch.arange(ids.shape[1]) * non_pad).argmax(-1)  # transformers' rightmost non-pad token
    return logits[torch.arange(ids.shape[0]), last, 0]


def build(name, m):
    cfg = m["config"]
    folder = os.path.join(OUT_DIR, name)
    os.makedirs(folder, exist_ok=True)
    weights = weights_of(cfg)
    tf.write_safetensors(os.path.join(folder, "model.safetensors"), weights, {"format": "pt", "generator": "tools/reward_fixtures.py"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({k: v for k, v in cfg.items() if not (name == "qwen2" and k == "attention_bias")}, f, indent=2)
        f.write("\n")
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(m), f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(m["tokenizer_config"], f, indent=2)
        f.write("\n")

    pad = cfg["pad_token_id"]
    items = []
    for prompt, completion in TEXTS:
        ids = scored_ids(m, prompt, completion)
        assert pad not in ids and len(ids) <= cfg["max_position_embeddings"]
        s = scores(weights, cfg, [ids], pad)[0].item()
        items.append({"prompt": prompt, "completion": completion, "ids": ids, "score": s})
    T = max(len(it["ids"]) for it in items)
    padded = [it["ids"] + [pad] * (T - len(it["ids"])) for it in items]
    batch = scores(weights, cfg, padded, pad).tolist()
    worst = max(abs(b - it["score"]) for b, it in zip(batch, items))
    print(f"[{name}] scores {[it['score'] for it in items]}; right-padded batch vs one at a time: {worst:.2e}")
    assert worst < 1e-12
    spread = max(it["score"] for it in items) - min(it["score"] for it in items)
    assert spread > 0.1, "the texts must get clearly different scores, or a test could not tell them apart"
    return {"items": items, "batch": {"ids": padded, "scores": batch}}


def main():
    torch.set_num_threads(1)
    out = {
        "generator": "tools/reward_fixtures.py",
        "torch_version": torch.__version__,
        "notes": "float64 scores of the float32 weights in each folder; batch: the same texts right-padded with pad_token_id",
    }
    for name, m in MODELS.items():
        out[name] = build(name, m)
    path = os.path.join(OUT_DIR, "expected.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
